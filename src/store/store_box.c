/*
 * store_box: an open folder (include/store.h): its index read from the
 * snapshot and the change log, synced with new/ and cur/, and the
 * operations IMAP needs (append, copy, move, expunge, flag changes,
 * changes since a MODSEQ).  Order of durable steps: the message file
 * (and its directory) first, the index record after, so a crash in
 * between leaves a file the next sync finds (a new UID) rather than an
 * index entry without a file; UIDs and MODSEQs only ever grow, also when
 * a damaged log loses records (a gap bounded by the bytes lost).  Never
 * follows a link: every name is opened under the folder's descriptors
 * with O_NOFOLLOW.  Blocking I/O for storage-pool workers only.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_cache.h"
#include "store_index.h"
#include "store_priv.h"
#include "xmalloc.h"

static const char index_file[] = "postern-index";
static const char log_file[] = "postern-index.log";
/* Bounds of what open reads: a snapshot of STORE_MSGS_MAX records. */
#define INDEX_FILE_MAX ((size_t)1 << 31)
#define LOG_FILE_MAX ((size_t)1 << 28)
/* Dovecot's UID list (about 80 bytes a message: 10 million fit). */
#define UIDLIST_FILE_MAX ((size_t)1 << 30)
static const char uidlist_file[] = "dovecot-uidlist";
static const char uidlist_done_file[] = "dovecot-uidlist.postern-imported";

const struct store_msg *
store_msg_by_uid(const struct store_box *box, uint32_t uid)
{
	return store_index_find(box, uid, NULL);
}

static int
msg_name(const struct store_msg *m, char *out, size_t outlen)
{
	return store_flags_name(
	    m->base, strlen(m->base), &m->flags, out, outlen);
}

int
store_msg_path(const struct store_box *box, size_t i, char *out, size_t outlen)
{
	char name[300];

	if (i >= box->n || msg_name(&box->msgs[i], name, sizeof(name)) == -1)
		return -1;
	return snprintf(out, outlen, "cur/%s", name) >= (int)outlen ? -1 : 0;
}

int
store_msg_open(struct store_box *box, uint32_t uid, bool *synced_out)
{
	for (int pass = 0; pass < 2; pass++) {
		const struct store_msg *m = store_msg_by_uid(box, uid);
		char path[320], err[256];
		bool is_changed = false;
		struct stat st;
		int fd;

		if (m == NULL || store_msg_path(box, (size_t)(m - box->msgs),
		                     path, sizeof(path)) == -1) {
			errno = ENOENT;
			return -1;
		}
		fd = openat(box->dir_fd, path,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd != -1 &&
		    (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		if (fd != -1 || errno != ENOENT || pass == 1)
			return fd;
		if (store_sync(box, &is_changed, err, sizeof(err)) == -1) {
			errno = EIO;
			return -1;
		}
		if (synced_out != NULL)
			*synced_out |= is_changed;
	}
	errno = ENOENT;
	return -1;
}

/* ---- the log ---------------------------------------------------------- */

void
store_pend(struct store_box *box, const uint8_t *rec, size_t len)
{
	if (box->npending + len > box->pending_cap) {
		box->pending_cap = (box->npending + len) * 2 + 4096;
		box->pending = xreallocarray(box->pending, box->pending_cap, 1);
	}
	memcpy(box->pending + box->npending, rec, len);
	box->npending += len;
	box->pending_records++;
}

static void
pend_add(struct store_box *box, const struct store_msg *m)
{
	uint8_t rec[STORE_LOG_REC_MAX];

	store_pend(box, rec, store_log_add(rec, m));
}

static void
pend_flags(struct store_box *box, const struct store_msg *m)
{
	uint8_t rec[STORE_LOG_REC_MAX];

	store_pend(box, rec, store_log_flags(rec, m));
}

static void
pend_expunge(struct store_box *box, uint32_t uid, uint64_t modseq)
{
	uint8_t rec[STORE_LOG_REC_MAX];

	store_pend(box, rec, store_log_expunge(rec, uid, modseq));
}

/* Opens the log for appending, with a fresh header when is_new. */
static int
log_open(struct store_box *box, bool is_new, char *err, size_t errlen)
{
	uint8_t hdr[STORE_LOG_HDR];
	struct stat st;

	if (box->log_fd != -1)
		close(box->log_fd);
	box->log_fd = -1;
	if (is_new) {
		store_log_header(hdr, box->uidvalidity, box->log_gen);
		if (store_write_atomic(box->dir_fd, log_file, hdr, sizeof(hdr),
		        err, errlen) == -1)
			return -1;
		box->log_records = 0;
	}
	/* O_NONBLOCK: a FIFO planted there fails (ENXIO) or is refused,
	 * never a worker waiting for a reader. */
	box->log_fd = openat(box->dir_fd, log_file,
	    O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (box->log_fd != -1 &&
	    (fstat(box->log_fd, &st) == -1 || !S_ISREG(st.st_mode))) {
		close(box->log_fd);
		box->log_fd = -1;
		return store_fail(
		    err, errlen, "%s: not a regular file", log_file);
	}
	if (box->log_fd == -1)
		return store_fail(
		    err, errlen, "%s: %s", log_file, strerror(errno));
	if (is_new)
		box->log_end = STORE_LOG_HDR;
	return 0;
}

/*
 * Takes the log's lock and checks that nobody else wrote the index since
 * this box last did: the same file (compaction replaces it) and the
 * length this box left.  0 (locked), or -1 (unlocked).
 */
static int
log_lock(struct store_box *box, char *err, size_t errlen)
{
	struct stat a, b;

	if (flock(box->log_fd, LOCK_EX) == -1)
		return store_fail(
		    err, errlen, "%s: %s", log_file, strerror(errno));
	if (fstat(box->log_fd, &a) == -1 ||
	    fstatat(box->dir_fd, log_file, &b, AT_SYMLINK_NOFOLLOW) == -1 ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev ||
	    (uint64_t)a.st_size != box->log_end) {
		flock(box->log_fd, LOCK_UN);
		return store_fail(err, errlen,
		    "folder index changed by another writer: reopen the "
		    "folder");
	}
	return 0;
}

int
store_compact(struct store_box *box, char *err, size_t errlen)
{
	uint8_t *img;
	size_t len;
	int r;

	if (box->log_fd != -1 && log_lock(box, err, errlen) == -1)
		return -1;
	/* Snapshot first: a crash before the new log leaves a stale log
	 * (older generation), which open ignores.  The old log stays
	 * locked until log_open closes it: a writer waiting on it then
	 * finds it replaced. */
	box->log_gen++;
	img = store_index_encode(box, &len);
	r = store_write_atomic(box->dir_fd, index_file, img, len, err, errlen);
	free(img);
	if (r == -1) {
		if (box->log_fd != -1)
			flock(box->log_fd, LOCK_UN);
		return -1;
	}
	box->npending = box->pending_records = 0;
	return log_open(box, true, err, errlen);
}

int
store_flush(struct store_box *box, char *err, size_t errlen)
{
	size_t at = 0;

	if (box->npending == 0)
		return 0;
	if (box->log_fd == -1 ||
	    box->log_records + box->pending_records > STORE_COMPACT_RECORDS)
		return store_compact(box, err, errlen);
	if (log_lock(box, err, errlen) == -1)
		return -1;
	while (at < box->npending) {
		ssize_t w =
		    write(box->log_fd, box->pending + at, box->npending - at);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		at += (size_t)w;
	}
	/* A short write leaves a torn record: the next open drops it. */
	box->log_end += at;
	if (at < box->npending || fdatasync(box->log_fd) == -1) {
		flock(box->log_fd, LOCK_UN);
		return store_fail(
		    err, errlen, "%s: %s", log_file, strerror(errno));
	}
	flock(box->log_fd, LOCK_UN);
	box->log_records += box->pending_records;
	box->npending = box->pending_records = 0;
	return 0;
}

/* ---- sync ------------------------------------------------------------- */

struct found {
	char *name; /* the file name in its directory */
	size_t base_len;
	struct store_flags flags;
	bool is_new; /* in new/ */
	int64_t mtime;
	uint32_t import_uid; /* Dovecot's UID for it (box->import), or 0 */
};

static int
found_cmp(const void *a, const void *b)
{
	const struct found *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Files with Dovecot's UIDs first, in UID order, then the rest in
 * delivery order. */
static int
found_import_cmp(const void *a, const void *b)
{
	const struct found *x = a, *y = b;

	if ((x->import_uid != 0) != (y->import_uid != 0))
		return x->import_uid != 0 ? -1 : 1;
	if (x->import_uid != y->import_uid)
		return x->import_uid < y->import_uid ? -1 : 1;
	return found_cmp(a, b);
}

static int
scan_dir(int fd, bool is_new, struct found **v, size_t *n, size_t *cap)
{
	int dfd = dup(fd);
	struct dirent *de;
	DIR *d;

	if (dfd == -1 || (d = fdopendir(dfd)) == NULL) {
		if (dfd != -1)
			close(dfd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		struct found f;

		if (de->d_name[0] == '.')
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		/* Every field set: store_sync reads import_uid also when not
		 * importing (UINT32_MAX, "added in pass 0", skips the file). */
		memset(&f, 0, sizeof(f));
		store_flags_parse(de->d_name, &f.flags, &f.base_len);
		if (f.base_len == 0 || f.base_len > STORE_BASE_MAX)
			continue;
		if (*n == *cap) {
			*cap = *cap == 0 ? 256 : *cap * 2;
			*v = xreallocarray(*v, *cap, sizeof(**v));
		}
		f.name = xstrdup(de->d_name);
		f.is_new = is_new;
		(*v)[(*n)++] = f;
	}
	closedir(d);
	return 0;
}

/* Open addressing over the index's base names: slot i holds msg + 1. */
struct base_map {
	size_t *slot, mask;
};

static uint64_t
hash_base(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
	/* FNV's low bits barely differ between names that differ in a
	 * digit or two (Maildir names do): mix the high bits down, as the
	 * table is indexed by the low ones. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static void
map_build(struct base_map *m, const struct store_box *box)
{
	size_t size = 16;

	while (size < box->n * 2)
		size *= 2;
	m->slot = xcalloc(size, sizeof(*m->slot));
	m->mask = size - 1;
	for (size_t i = 0; i < box->n; i++) {
		const char *b = box->msgs[i].base;
		size_t h = hash_base(b, strlen(b)) & m->mask;

		while (m->slot[h] != 0)
			h = (h + 1) & m->mask;
		m->slot[h] = i + 1;
	}
}

/* The index of the message with this base, or -1. */
static long
map_find(const struct base_map *m, const struct store_box *box, const char *b,
    size_t n)
{
	size_t h = hash_base(b, n) & m->mask;

	for (; m->slot[h] != 0; h = (h + 1) & m->mask) {
		const char *mb = box->msgs[m->slot[h] - 1].base;

		if (strncmp(mb, b, n) == 0 && mb[n] == '\0')
			return (long)(m->slot[h] - 1);
	}
	return -1;
}

/* ",W=n" in a base name (the CRLF size postern and Dovecot write). */
static bool
base_vsize(const char *b, size_t n, uint64_t *out)
{
	for (size_t i = 0; i + 3 < n; i++) {
		if (b[i] == ',' && b[i + 1] == 'W' && b[i + 2] == '=') {
			uint64_t v = 0;
			size_t j = i + 3;

			if (j >= n || b[j] < '0' || b[j] > '9')
				return false;
			for (; j < n && b[j] >= '0' && b[j] <= '9'; j++) {
				v = v * 10 + (uint64_t)(b[j] - '0');
				if (v > STORE_MSG_SIZE_MAX)
					return false; /* planted: count it */
			}
			*out = v;
			return true;
		}
	}
	return false;
}

/* A file the index lacks: into cur/ (from new/), then a new UID. */
static int
sync_add(struct store_box *box, struct found *f)
{
	char name[300];
	struct store_msg m;
	struct stat st;
	int fd;

	memset(&m, 0, sizeof(m));
	if (store_flags_name(
	        f->name, f->base_len, &f->flags, name, sizeof(name)) == -1)
		return 0;
	if (f->is_new) {
		if (renameat(box->new_fd, f->name, box->cur_fd, name) == -1)
			return errno == ENOENT ? 0 : -1;
	} else if (strcmp(name, f->name) != 0 &&
	           renameat(box->cur_fd, f->name, box->cur_fd, name) == -1) {
		return errno == ENOENT ? 0 : -1;
	}
	fd = openat(
	    box->cur_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	if (!base_vsize(f->name, f->base_len, &m.size) &&
	    store_crlf_size(fd, &m.size) == -1) {
		close(fd);
		return -1;
	}
	close(fd);
	/* What the index can hold (store.h): an absurd mtime or size is
	 * clamped, never a record the next load calls corrupt. */
	if (m.size > STORE_MSG_SIZE_MAX)
		m.size = STORE_MSG_SIZE_MAX;
	m.uid = box->uidnext++;
	m.flags = f->flags;
	m.modseq = ++box->highestmodseq;
	m.internaldate = store_time_clamp((int64_t)st.st_mtime);
	m.base = xstrndup(f->name, f->base_len);
	store_index_push(box, &m);
	pend_add(box, &m);
	return 0;
}

/* Stamps the mtimes of the files to add (for delivery order). */
static void
stamp(struct store_box *box, struct found *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (fstatat(v[i].is_new ? box->new_fd : box->cur_fd, v[i].name,
		        &st, AT_SYMLINK_NOFOLLOW) == 0)
			v[i].mtime = (int64_t)st.st_mtime;
	}
}

/* Index entries with no file (seen[i] false) are expunged. */
static void
sync_vanish(struct store_box *box, const bool *seen, bool *changed)
{
	size_t w = 0, n = box->n;
	uint64_t modseq = 0;

	for (size_t i = 0; i < n; i++) {
		if (seen[i]) {
			box->msgs[w++] = box->msgs[i];
			continue;
		}
		if (modseq == 0)
			modseq = ++box->highestmodseq;
		store_vanished_push(box, box->msgs[i].uid, modseq);
		pend_expunge(box, box->msgs[i].uid, modseq);
		store_base_free(box, box->msgs[i].base);
		*changed = true;
	}
	box->n = w;
}

/* A file the index has: flags changed by another program? */
static void
sync_known(
    struct store_box *box, struct store_msg *m, struct found *f, bool *changed)
{
	char name[300];

	if (f->is_new) {
		/* Put back in new/ by someone: into cur/ again. */
		if (msg_name(m, name, sizeof(name)) == 0)
			renameat(box->new_fd, f->name, box->cur_fd, name);
		return;
	}
	/* A name not in canonical form (letters unsorted, no ":2,") is
	 * renamed to it: store_msg_path builds names that way. */
	if (store_flags_name(
	        f->name, f->base_len, &f->flags, name, sizeof(name)) == 0 &&
	    strcmp(name, f->name) != 0)
		renameat(box->cur_fd, f->name, box->cur_fd, name);
	if (m->flags.sys == f->flags.sys &&
	    m->flags.keywords == f->flags.keywords)
		return;
	m->flags = f->flags;
	m->modseq = ++box->highestmodseq;
	pend_flags(box, m);
	*changed = true;
}

static void
found_free(struct found *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* -1 also when an mtime has no int64_t nanoseconds (a directory touched
 * to 2300) or is before 1970 (-1 means "none"): such a folder is read
 * in full at every sync. */
static int
dir_mtimes(const struct store_box *box, int64_t *cur_ns, int64_t *new_ns)
{
	struct stat a, b;

	if (fstat(box->cur_fd, &a) == -1 || fstat(box->new_fd, &b) == -1 ||
	    !store_ts_ns(&a.st_mtim, cur_ns) ||
	    !store_ts_ns(&b.st_mtim, new_ns) || *cur_ns < 0 || *new_ns < 0)
		return -1;
	return 0;
}

/*
 * After a full sync: the mtimes it saw, unless one is too recent to be
 * trusted (a file added in the same clock tick leaves the mtime as it
 * was), in which case the next sync reads the directories again.
 */
static void
remember_mtimes(struct store_box *box)
{
	struct timespec now;
	int64_t cur_ns, new_ns, settled;

	box->seen_cur_ns = box->seen_new_ns = -1;
	if (clock_gettime(CLOCK_REALTIME, &now) == -1 ||
	    !store_ts_ns(&now, &settled) ||
	    dir_mtimes(box, &cur_ns, &new_ns) == -1)
		return;
	settled -= (int64_t)STORE_SYNC_SETTLE * 1000000000;
	if (cur_ns < settled && new_ns < settled) {
		box->seen_cur_ns = cur_ns;
		box->seen_new_ns = new_ns;
	}
}

int
store_sync(struct store_box *box, bool *changed_out, char *err, size_t errlen)
{
	struct found *v = NULL, *add = NULL;
	size_t n = 0, cap = 0, nadd = 0, known = box->n;
	struct base_map map;
	bool changed = false, *seen;
	int64_t cur_ns, new_ns;
	int r = 0;

	if (changed_out != NULL)
		*changed_out = false;
	if (dir_mtimes(box, &cur_ns, &new_ns) == 0 &&
	    cur_ns == box->seen_cur_ns && new_ns == box->seen_new_ns &&
	    box->npending == 0)
		return 0;
	if (scan_dir(box->cur_fd, false, &v, &n, &cap) == -1 ||
	    scan_dir(box->new_fd, true, &v, &n, &cap) == -1) {
		found_free(v, n);
		return store_fail(
		    err, errlen, "cannot read folder: %s", strerror(errno));
	}
	map_build(&map, box);
	seen = xcalloc(known + 1, sizeof(*seen));
	add = xreallocarray(NULL, n + 1, sizeof(*add));
	for (size_t i = 0; i < n; i++) {
		long at = map_find(&map, box, v[i].name, v[i].base_len);

		if (at >= 0 && !seen[at]) {
			seen[at] = true;
			sync_known(box, &box->msgs[at], &v[i], &changed);
		} else if (at < 0) {
			add[nadd++] = v[i];
		}
		/* A second file with a known base (at >= 0, seen): left
		 * alone; it is the same message to Maildir readers. */
	}
	free(map.slot);
	sync_vanish(box, seen, &changed);
	free(seen);
	stamp(box, add, nadd);
	for (size_t i = 0; box->import != NULL && i < nadd; i++)
		add[i].import_uid = store_uidlist_find(
		    box->import, add[i].name, add[i].base_len);
	if (nadd > 1)
		qsort(add, nadd, sizeof(*add),
		    box->import != NULL ? found_import_cmp : found_cmp);
	/* Two passes when importing: the files Dovecot numbered, at their
	 * UIDs (ascending); then, past Dovecot's next UID, the others (and a
	 * second file with a numbered base), in delivery order. */
	for (int pass = box->import != NULL ? 0 : 1; pass < 2; pass++) {
		if (pass == 1 && box->import != NULL &&
		    box->uidnext < box->import->uidnext)
			box->uidnext = box->import->uidnext;
		for (size_t i = 0; i < nadd && r == 0; i++) {
			bool is_numbered = add[i].import_uid != 0 &&
			                   add[i].import_uid >= box->uidnext;

			if (pass == 0 && !is_numbered)
				continue;
			if (pass == 1 && add[i].import_uid == UINT32_MAX)
				continue; /* added in pass 0 */
			if (pass == 0)
				box->uidnext = add[i].import_uid;
			if (box->n >= STORE_MSGS_MAX ||
			    box->uidnext == UINT32_MAX)
				break;
			r = sync_add(box, &add[i]);
			if (pass == 0)
				add[i].import_uid = UINT32_MAX; /* done */
			changed = true;
		}
	}
	if (box->import != NULL) {
		store_uidlist_free(box->import);
		free(box->import);
		box->import = NULL;
	}
	free(add);
	found_free(v, n);
	if (r == -1)
		return store_fail(
		    err, errlen, "cannot sync folder: %s", strerror(errno));
	if (nadd > 0 && fsync(box->cur_fd) == -1)
		return store_fail(err, errlen, "fsync: %s", strerror(errno));
	if (changed_out != NULL)
		*changed_out = changed;
	if (store_flush(box, err, errlen) == -1)
		return -1;
	remember_mtimes(box);
	if (box->seen_cur_ns != -1) {
		/* So that the next open trusts them too (SELECT of an idle
		 * folder then reads only the index). */
		uint8_t rec[STORE_LOG_REC_MAX];

		store_pend(box, rec,
		    store_log_stamp(rec, box->seen_cur_ns, box->seen_new_ns));
		return store_flush(box, err, errlen);
	}
	return 0;
}

int
store_set_first_recent(
    struct store_box *box, uint32_t uid, char *err, size_t errlen)
{
	uint8_t rec[STORE_LOG_REC_MAX];

	if (uid <= box->first_recent)
		return 0;
	box->first_recent = uid;
	store_pend(box, rec, store_log_recent(rec, uid));
	return store_flush(box, err, errlen);
}

/* ---- open ------------------------------------------------------------- */

static struct store_box *
box_new(struct store *st, const char *name)
{
	struct store_box *box = xcalloc(1, sizeof(*box));

	box->store = st;
	box->dir_fd = box->cur_fd = box->new_fd = box->tmp_fd = -1;
	box->log_fd = -1;
	box->seen_cur_ns = box->seen_new_ns = -1;
	box->name = xstrdup(name);
	return box;
}

void
store_box_close(struct store_box **bp)
{
	struct store_box *box = *bp;

	if (box == NULL)
		return;
	if (box->npending > 0) {
		char err[256];

		if (store_flush(box, err, sizeof(err)) == -1)
			log_warn("event=store_flush result=fail reason=\"%s\"",
			    log_esc(err));
	}
	store_cache_free(box);
	store_box_clear(box);
	if (box->import != NULL) {
		store_uidlist_free(box->import);
		free(box->import);
	}
	for (int *fd = &box->dir_fd; fd <= &box->log_fd; fd++)
		if (*fd != -1)
			close(*fd);
	free(box->pending);
	free(box->name);
	free(box);
	*bp = NULL;
}

/* A new UIDVALIDITY, never the one a lost index had (old, if known). */
static uint32_t
new_uidvalidity(uint32_t old)
{
	uint32_t v = (uint32_t)time(NULL);

	if (v <= old)
		v = old + 1;
	return v == 0 ? 1 : v;
}

/*
 * A folder with no index yet: Dovecot's dovecot-uidlist, if it has one,
 * gives the UIDVALIDITY and, at the first sync, the UIDs.  The file is
 * renamed out of the way first (dovecot-uidlist.postern-imported): it is
 * read once, so if this index is lost later, the next one gets a new
 * UIDVALIDITY instead of Dovecot's old UIDs, which postern may have
 * given to other messages since (a crash before the index is written
 * loses the import the same safe way).  True when imported.
 */
static bool
import_uidlist(struct store_box *box)
{
	struct store_uidlist u;
	const char *why = NULL;
	uint8_t *img = NULL;
	size_t len = 0;
	int r = store_read_file(
	    box->dir_fd, uidlist_file, UIDLIST_FILE_MAX, &img, &len);

	if (r == 1)
		return false;
	if (r == -1 || store_uidlist_parse(img, len, &u, &why) == -1) {
		free(img);
		log_warn("event=store_index folder=%s result=not-imported "
		         "file=dovecot-uidlist reason=\"%s\"",
		    log_esc(box->name), why != NULL ? why : "unreadable");
		return false;
	}
	free(img);
	if (renameat(box->dir_fd, uidlist_file, box->dir_fd,
	        uidlist_done_file) == -1) {
		store_uidlist_free(&u);
		log_warn("event=store_index folder=%s result=not-imported "
		         "file=dovecot-uidlist reason=\"rename: %s\"",
		    log_esc(box->name), strerror(errno));
		return false;
	}
	(void)fsync(box->dir_fd);
	box->import = xmalloc(sizeof(*box->import));
	*box->import = u;
	box->uidvalidity = u.uidvalidity;
	box->highestmodseq = STORE_IMPORT_MODSEQ;
	box->vanished_floor = box->highestmodseq;
	box->rebuilt |= STORE_REBUILT_IMPORT;
	return true;
}

/* Reads the snapshot and log into box; sets box->rebuilt. */
static void
load_index(struct store_box *box)
{
	const uint8_t *snap = NULL;
	uint8_t *img = NULL;
	size_t len = 0, slen = 0;
	const char *why = NULL;
	bool is_damaged = false;
	uint32_t old = 0;
	long good;
	int r;

	/* Mapped, not read: no copy of a 6 MB snapshot into fresh pages;
	 * the names are copied out (box->names), so the mapping ends with
	 * the parse. */
	r = store_map_file(
	    box->dir_fd, index_file, INDEX_FILE_MAX, &snap, &slen);
	if (r == 0 && store_index_parse(box, snap, slen, &why) == 0) {
		store_unmap_file(snap, slen);
		r = store_read_file(
		    box->dir_fd, log_file, LOG_FILE_MAX, &img, &len);
		good = r == 0
		           ? store_log_apply(box, img, len, &is_damaged, &why)
		           : 0;
		box->log_end = good > 0 ? (uint64_t)good : 0;
		if (r == -1 || is_damaged) {
			/* Records lost: UIDs and MODSEQs skip past any they
			 * could have given out, never reusing one. */
			size_t lost =
			    r == -1 ? LOG_FILE_MAX : len - (size_t)good;

			uint64_t next = (uint64_t)box->uidnext +
			                lost / STORE_LOG_ADD_MIN + 1;

			box->uidnext = next >= UINT32_MAX ? UINT32_MAX - 1
			                                  : (uint32_t)next;
			box->highestmodseq += lost / STORE_LOG_MIN + 1;
			box->vanished_floor = box->highestmodseq;
			box->rebuilt |= STORE_REBUILT_LOG;
			log_warn("event=store_index folder=%s result=repaired "
			         "reason=\"%s\" dropped=%zu",
			    log_esc(box->name),
			    why != NULL ? why : "unreadable", lost);
		} else if (r == 1) {
			/* The log is gone with whatever it held: the UIDs
			 * kept are valid only under a new UIDVALIDITY. */
			box->uidvalidity = new_uidvalidity(box->uidvalidity);
			box->vanished_floor = box->highestmodseq;
			box->rebuilt |= STORE_REBUILT_CORRUPT;
			log_warn("event=store_index folder=%s result=rebuilt "
			         "reason=\"log missing\" uidvalidity=%u",
			    log_esc(box->name), box->uidvalidity);
		} else if (good == -1) {
			box->rebuilt |= STORE_REBUILT_LOG; /* stale: compact */
		}
		free(img);
		return;
	}
	if (r == 0 && slen >= 20)
		old = store_get32(snap + 16);
	if (r == 0)
		store_unmap_file(snap, slen);
	store_box_clear(box);
	box->rebuilt |= r == 1 ? STORE_REBUILT_NEW : STORE_REBUILT_CORRUPT;
	box->uidvalidity = new_uidvalidity(old);
	box->uidnext = 1;
	box->highestmodseq = 1;
	box->vanished_floor = 0;
	box->log_gen = 0;
	if (r == 1 && import_uidlist(box))
		log_info("event=store_index folder=%s result=imported "
		         "uidvalidity=%u messages=%zu uidnext=%u",
		    log_esc(box->name), box->uidvalidity, box->import->n,
		    box->import->uidnext);
	else if (r == 1)
		log_info("event=store_index folder=%s result=created "
		         "uidvalidity=%u",
		    log_esc(box->name), box->uidvalidity);
	else
		log_warn("event=store_index folder=%s result=rebuilt "
		         "reason=\"%s\" uidvalidity=%u",
		    log_esc(box->name), why != NULL ? why : "unreadable",
		    box->uidvalidity);
}

int
store_box_open(struct store *st, const char *name, struct store_box **out,
    char *err, size_t errlen)
{
	char dir[STORE_NAME_MAX + 8];
	const char *why;
	struct store_box *box;

	*out = NULL;
	if (store_name_to_dir(name, dir, sizeof(dir), &why) == -1)
		return store_fail(err, errlen, "%s", why);
	box = box_new(st, name);
	box->dir_fd = dir[0] == '\0' ? dup(st->root_fd)
	                             : store_open_dir(st->root_fd, dir, false);
	if (box->dir_fd == -1) {
		int saved = errno;

		store_box_close(&box);
		if (saved == ENOENT)
			return 1;
		return store_fail(err, errlen, "cannot open folder: %s",
		    saved == ELOOP ? "symbolic link" : strerror(saved));
	}
	box->cur_fd = store_open_dir(box->dir_fd, "cur", true);
	box->new_fd = store_open_dir(box->dir_fd, "new", true);
	box->tmp_fd = store_open_dir(box->dir_fd, "tmp", true);
	if (box->cur_fd == -1 || box->new_fd == -1 || box->tmp_fd == -1 ||
	    store_keywords_load(box->dir_fd, &box->keywords, err, errlen) ==
	        -1) {
		store_fail(
		    err, errlen, "cannot open folder: %s", strerror(errno));
		store_box_close(&box);
		return -1;
	}
	load_index(box);
	/* After any repair the directories are read again in full. */
	if (box->rebuilt != 0)
		box->seen_cur_ns = box->seen_new_ns = -1;
	if ((box->rebuilt == 0 && log_open(box, false, err, errlen) == -1) ||
	    store_sync(box, NULL, err, errlen) == -1 ||
	    ((box->rebuilt != 0 || box->log_records > STORE_COMPACT_RECORDS ||
	         box->log_records > box->n / 4 + 64) &&
	        store_compact(box, err, errlen) == -1)) {
		store_box_close(&box);
		return -1;
	}
	*out = box;
	return 0;
}
