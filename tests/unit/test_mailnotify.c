/* mailnotify: the loop-side listener table (src/lib/mailnotify.c). */
#include <string.h>

#include "mailnotify.h"
#include "unit.h"

static int calls[10];
static size_t last_n;

static void
heard(void *arg, const char *const *users, size_t n)
{
	calls[(int)(intptr_t)arg]++;
	last_n = n;
	assert_string_equal(users[0], "alice@example.test");
}

static void
test_listen_once_unlisten_and_bound(void **state)
{
	const char *one[] = {"alice@example.test"};
	const char *two[] = {"alice@example.test", "bob@example.test"};

	(void)state;
	memset(calls, 0, sizeof(calls));
	mailnotify_listen(heard, (void *)1);
	mailnotify_listen(heard, (void *)1); /* the same pair: once */
	mailnotify_changed(one, 1);
	assert_int_equal(calls[1], 1);
	mailnotify_changed(two, 2); /* one call for the whole delivery */
	assert_int_equal(calls[1], 2);
	assert_int_equal(last_n, 2);
	mailnotify_changed(one, 0); /* nobody to tell: no call */
	assert_int_equal(calls[1], 2);
	/* Nine listeners: the table keeps eight; the ninth is not called
	 * (its IMAP sessions would still see the change at their poll). */
	for (intptr_t i = 2; i <= 9; i++)
		mailnotify_listen(heard, (void *)i);
	mailnotify_changed(one, 1);
	assert_int_equal(calls[1], 3);
	for (int i = 2; i <= 8; i++)
		assert_int_equal(calls[i], 1);
	assert_int_equal(calls[9], 0);
	for (intptr_t i = 1; i <= 9; i++)
		mailnotify_unlisten(heard, (void *)i);
	mailnotify_unlisten(heard, (void *)1); /* absent: no-op */
	mailnotify_changed(one, 1);
	assert_int_equal(calls[1], 3);
	assert_int_equal(calls[2], 1);
}

int
run_mailnotify_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_listen_once_unlisten_and_bound),
	};

	return cmocka_run_group_tests_name("mailnotify", tests, NULL, NULL);
}
