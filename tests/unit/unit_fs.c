/* Files for the unit tests that work on real Maildirs (unit.h). */
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

void
unit_fresh_maildir(char *out, size_t len)
{
	char tmpl[] = "/tmp/postern-unit-XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(out, len, "%s/Maildir", tmpl);
}

void
unit_rm_maildir(const char *maildir)
{
	char cmd[PATH_MAX + 32];

	/* The parent mkdtemp made; paths are ours, no shell metacharacters. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'",
	    (int)(strrchr(maildir, '/') - maildir), maildir);
	if (system(cmd) != 0)
		fail_msg("cleanup failed: %s", cmd);
}

void
unit_put(const char *path, const char *text, time_t mtime)
{
	struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1)
		fail_msg("create %s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail_msg("write %s", path);
	close(fd);
	if (utimes(path, tv) == -1)
		fail_msg("utimes %s", path);
}
