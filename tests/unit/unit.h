/* Unit test groups (cmocka); each test_*.c exports one runner. */
#ifndef POSTERN_UNIT_H
#define POSTERN_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <time.h>

/* unit_fs.c: a fresh "/tmp/postern-unit-XXXXXX/Maildir" path (not made),
 * its removal with the parent, and a file of text with its mtime set. */
void unit_fresh_maildir(char *out, size_t len);
void unit_rm_maildir(const char *maildir);
void unit_put(const char *path, const char *text, time_t mtime);

int run_addr_tests(void);
int run_smtp_parse_tests(void);
int run_smtp_data_tests(void);
int run_config_tests(void);
int run_config_edit_tests(void);
int run_maildir_tests(void);
int run_dir_tests(void);
int run_dir_json_tests(void);
int run_admin_json_tests(void);
int run_admin_html_tests(void);
int run_passwd_tests(void);
int run_queue_tests(void);
int run_base64_tests(void);
int run_pop3_tests(void);
int run_buf_tests(void);
int run_counter_tests(void);
int run_authfail_tests(void);
int run_safefs_tests(void);
int run_log_tests(void);
int run_human_tests(void);
int run_span_tests(void);
int run_milter_tests(void); /* issue 15 part 2 */
/* issue 15 part 1 */
int run_dkim_tests(void);
int run_dnsbl_tests(void); /* issue 15 part 3 */
/* issue 15 part 4 */
int run_sendlimit_tests(void);
int run_worker_tests(void);
int run_pop3_read_tests(void);
int run_committer_tests(void);
int run_core_tests(void);
int run_core_seen_tests(void);
int run_imap_parse_tests(void);
int run_mime_tests(void);
int run_store_tests(void);
int run_store_cache_tests(void);
int run_imap_view_tests(void);
int run_imap_folder_tests(void);
int run_mailnotify_tests(void);
int run_deflate_tests(void);
int run_imap_sort_tests(void);
int run_stats_tests(void);
int run_metrics_tests(void);
int run_log_ring_tests(void);
int run_chart_tests(void);

#endif
