/*
 * store_ops: what IMAP does to an open folder (include/store.h): APPEND
 * in pieces, COPY/MOVE with new UIDs in the target (hard links when the
 * filesystem allows), EXPUNGE, flag changes with MODSEQ bumps, and the
 * CONDSTORE/QRESYNC changes-since query.  Each step is durable in the
 * order store_box.c explains: message file and directory first, index
 * record after.  Never follows a link; never writes outside the folder's
 * directories.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_index.h"
#include "store_priv.h"
#include "xmalloc.h"

/* The file size Maildir++ quota counts: ",S=" in the name, else fstatat. */
static int64_t
phys_size(const struct store_box *box, const struct store_msg *m)
{
	const char *s = strstr(m->base, ",S=");
	char name[300];
	struct stat st;

	if (s != NULL && s[3] >= '0' && s[3] <= '9')
		return (int64_t)strtoll(s + 3, NULL, 10);
	if (store_flags_name(
	        m->base, strlen(m->base), &m->flags, name, sizeof(name)) == 0 &&
	    fstatat(box->cur_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return (int64_t)st.st_size;
	return (int64_t)m->size;
}

void
store_quota_size(struct store_box *box, const uint32_t *uids, size_t n,
    uint64_t *bytes_out, uint64_t *messages_out)
{
	*bytes_out = *messages_out = 0;
	for (size_t i = 0; i < n; i++) {
		const struct store_msg *m = store_msg_by_uid(box, uids[i]);

		if (m == NULL)
			continue;
		*bytes_out += (uint64_t)phys_size(box, m);
		(*messages_out)++;
	}
}

/* A new unique base name (Maildir: time, microseconds, pid, counter). */
static void
new_base(struct store_box *box, char *out, size_t outlen)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, outlen, "%lld.M%ldP%ldT%ldQ%u.postern",
	    (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(),
	    (long)gettid(), ++box->name_seq);
}

int
store_append_begin(
    struct store_box *box, struct store_append *ap, char *err, size_t errlen)
{
	memset(ap, 0, sizeof(*ap));
	new_base(box, ap->tmpname, sizeof(ap->tmpname));
	ap->fd = openat(box->tmp_fd, ap->tmpname,
	    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (ap->fd == -1)
		return store_fail(
		    err, errlen, "cannot create message: %s", strerror(errno));
	return 0;
}

int
store_append_write(struct store_append *ap, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (ap->has_failed || ap->bytes + len > STORE_APPEND_MAX) {
		ap->has_failed = true;
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && !ap->was_cr)
			ap->crlf_size++;
		ap->was_cr = p[i] == '\r';
	}
	ap->crlf_size += len;
	ap->bytes += len;
	while (len > 0) {
		ssize_t w = write(ap->fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ap->has_failed = true;
			return -1;
		}
		p += w; /* UNSAFE: w <= len */
		len -= (size_t)w;
	}
	return 0;
}

void
store_append_abort(struct store_box *box, struct store_append *ap)
{
	if (ap->fd != -1) {
		close(ap->fd);
		unlinkat(box->tmp_fd, ap->tmpname, 0);
	}
	ap->fd = -1;
}

/* Adds message m (its file is in cur/ already) and logs it. */
static uint32_t
index_add(struct store_box *box, struct store_msg *m)
{
	m->uid = box->uidnext++;
	m->modseq = ++box->highestmodseq;
	store_index_push(box, m);
	{
		uint8_t rec[STORE_LOG_REC_MAX];

		store_pend(box, rec, store_log_add(rec, m));
	}
	return m->uid;
}

int
store_append_commit(struct store_box *box, struct store_append *ap,
    const struct store_flags *flags, time_t internaldate, uint32_t *uid_out,
    char *err, size_t errlen)
{
	char base[200], name[300];
	struct store_msg m;
	struct timespec tv[2];

	/* 1970 to 9999 (store.h): an APPEND date outside is clamped. */
	internaldate = (time_t)store_time_clamp((int64_t)internaldate);
	tv[0] = tv[1] = (struct timespec){internaldate, 0};
	if (ap->has_failed || fsync(ap->fd) == -1 ||
	    futimens(ap->fd, tv) == -1) {
		store_append_abort(box, ap);
		return store_fail(err, errlen, "cannot write message");
	}
	if (box->n >= STORE_MSGS_MAX || box->uidnext >= UINT32_MAX - 1) {
		store_append_abort(box, ap);
		return store_fail(err, errlen, "folder is full");
	}
	snprintf(base, sizeof(base), "%s,S=%llu,W=%llu", ap->tmpname,
	    (unsigned long long)ap->bytes, (unsigned long long)ap->crlf_size);
	memset(&m, 0, sizeof(m));
	m.flags = *flags;
	m.flags.keywords &= (1u << STORE_KEYWORDS_MAX) - 1;
	m.size = ap->crlf_size;
	m.internaldate = (int64_t)internaldate;
	if (store_flags_name(
	        base, strlen(base), &m.flags, name, sizeof(name)) == -1 ||
	    linkat(box->tmp_fd, ap->tmpname, box->cur_fd, name, 0) == -1) {
		store_fail(
		    err, errlen, "cannot store message: %s", strerror(errno));
		store_append_abort(box, ap);
		return -1;
	}
	store_append_abort(box, ap); /* closes and unlinks the tmp name */
	if (fsync(box->cur_fd) == -1)
		return store_fail(err, errlen, "fsync: %s", strerror(errno));
	m.base = xstrdup(base);
	*uid_out = index_add(box, &m);
	store_quota_add(box->store, (int64_t)ap->bytes, 1);
	return store_flush(box, err, errlen);
}

/* Copies the file at (sfd, sname) to (dfd, dname) through tmp/. */
static int
copy_file(int sfd, const char *sname, struct store_box *dst, const char *dname)
{
	char buf[65536], tmp[128];
	struct stat ist;
	int in, out;
	ssize_t r;

	in = openat(sfd, sname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in == -1)
		return -1;
	if (fstat(in, &ist) == -1 || !S_ISREG(ist.st_mode)) {
		close(in); /* a planted FIFO or device: no message */
		errno = ENOENT;
		return -1;
	}
	new_base(dst, tmp, sizeof(tmp));
	out = openat(dst->tmp_fd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out == -1) {
		close(in);
		return -1;
	}
	while ((r = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)r) != r) {
			r = -1;
			break;
		}
	{
		struct stat st;

		if (r == 0 && fstat(in, &st) == 0) {
			struct timespec tv[2] = {st.st_mtim, st.st_mtim};

			futimens(out, tv);
		}
	}
	close(in);
	if (r != 0 || fsync(out) == -1 ||
	    linkat(dst->tmp_fd, tmp, dst->cur_fd, dname, 0) == -1) {
		close(out);
		unlinkat(dst->tmp_fd, tmp, 0);
		return -1;
	}
	close(out);
	unlinkat(dst->tmp_fd, tmp, 0);
	return 0;
}

/* src's keywords as dst's letters (created in dst's file as needed). */
static uint32_t
map_keywords(struct store_box *src, struct store_box *dst, uint32_t kw)
{
	uint32_t out = 0;
	char err[128];

	if (src == dst)
		return kw;
	for (int i = 0; i < STORE_KEYWORDS_MAX; i++) {
		int j;

		if ((kw & (1u << i)) == 0 || src->keywords.names[i][0] == '\0')
			continue;
		j = store_keyword_index(dst->dir_fd, &dst->keywords,
		    src->keywords.names[i], true, err, sizeof(err));
		if (j >= 0)
			out |= 1u << j;
	}
	return out;
}

/*
 * Puts src's file into dst's cur/: a hard link (COPY) or a rename (MOVE:
 * one atomic step, so a crash leaves the message in exactly one folder,
 * which the next sync of each finds); across filesystems a copy, then
 * (MOVE) the source removed.  -1 with errno.
 */
static int
put_file(struct store_box *src, const char *sname, struct store_box *dst,
    const char *dname, bool is_move)
{
	if ((is_move ? renameat(src->cur_fd, sname, dst->cur_fd, dname)
	             : linkat(src->cur_fd, sname, dst->cur_fd, dname, 0)) == 0)
		return 0;
	if (errno == ENOENT)
		return -1; /* expunged meanwhile */
	/* EXDEV, EMLINK, EPERM: a real copy. */
	if (copy_file(src->cur_fd, sname, dst, dname) == -1)
		return -1;
	if (is_move)
		unlinkat(src->cur_fd, sname, 0);
	return 0;
}

static int
transfer(struct store_box *src, const uint32_t *uids, size_t n,
    struct store_box *dst, uint32_t *uid_out, bool is_move, char *err,
    size_t errlen)
{
	char sname[300], dname[300], base[200];
	uint64_t bytes = 0, count = 0;

	/* Every slot answered, also when an error stops the loop. */
	memset(uid_out, 0, n * sizeof(*uid_out));
	for (size_t i = 0; i < n; i++) {
		const struct store_msg *sm = store_msg_by_uid(src, uids[i]);
		struct store_msg m;

		uid_out[i] = 0;
		if (sm == NULL)
			continue;
		if (dst->n >= STORE_MSGS_MAX || dst->uidnext >= UINT32_MAX - 1)
			return store_fail(err, errlen, "folder is full");
		memset(&m, 0, sizeof(m));
		m.flags = sm->flags;
		m.flags.keywords = map_keywords(src, dst, sm->flags.keywords);
		m.size = sm->size;
		m.internaldate = sm->internaldate;
		new_base(dst, base, sizeof(base));
		snprintf(base + strlen(base), sizeof(base) - strlen(base),
		    ",W=%llu", (unsigned long long)sm->size);
		if (store_flags_name(sm->base, strlen(sm->base), &sm->flags,
		        sname, sizeof(sname)) == -1 ||
		    store_flags_name(base, strlen(base), &m.flags, dname,
		        sizeof(dname)) == -1)
			continue;
		if (put_file(src, sname, dst, dname, is_move) == -1) {
			if (errno == ENOENT)
				continue;
			return store_fail(err, errlen, "cannot %s message: %s",
			    is_move ? "move" : "copy", strerror(errno));
		}
		m.base = xstrdup(base);
		uid_out[i] = index_add(dst, &m);
		bytes += (uint64_t)phys_size(dst, &m);
		count++;
	}
	if (count > 0 &&
	    (fsync(dst->cur_fd) == -1 || (is_move && fsync(src->cur_fd) == -1)))
		return store_fail(err, errlen, "fsync: %s", strerror(errno));
	/* A move keeps the user's usage as it was. */
	if (count > 0 && !is_move)
		store_quota_add(dst->store, (int64_t)bytes, (int64_t)count);
	return store_flush(dst, err, errlen);
}

int
store_copy(struct store_box *src, const uint32_t *uids, size_t n,
    struct store_box *dst, uint32_t *uid_out, char *err, size_t errlen)
{
	return transfer(src, uids, n, dst, uid_out, false, err, errlen);
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int
store_expunge(struct store_box *box, const uint32_t *uids, size_t n,
    uint32_t **out_uids, uint32_t **out_seqs, size_t *n_out, char *err,
    size_t errlen)
{
	uint32_t *want = NULL, *out, *seqs;
	size_t nout = 0, w = 0;
	uint64_t modseq = box->highestmodseq + 1;
	int64_t bytes = 0;
	char name[300];

	if (uids != NULL && n > 0) {
		want = xreallocarray(NULL, n, sizeof(*want));
		memcpy(want, uids, n * sizeof(*want));
		qsort(want, n, sizeof(*want), uid_cmp);
	}
	out = xreallocarray(NULL, box->n + 1, sizeof(*out));
	seqs = xreallocarray(NULL, box->n + 1, sizeof(*seqs));
	for (size_t i = 0; i < box->n; i++) {
		struct store_msg *m = &box->msgs[i];
		bool is_hit =
		    uids == NULL
		        ? (m->flags.sys & STORE_F_DELETED) != 0
		        : want != NULL && bsearch(&m->uid, want, n,
		                              sizeof(*want), uid_cmp) != NULL;
		int64_t phys = is_hit ? phys_size(box, m) : 0;

		if (is_hit &&
		    store_flags_name(m->base, strlen(m->base), &m->flags, name,
		        sizeof(name)) == 0 &&
		    (unlinkat(box->cur_fd, name, 0) == 0 || errno == ENOENT)) {
			/* Earlier removals moved this one down by nout. */
			seqs[nout] = (uint32_t)(i + 1 - nout);
			out[nout++] = m->uid;
			bytes += phys;
			store_vanished_push(box, m->uid, modseq);
			{
				uint8_t rec[STORE_LOG_REC_MAX];

				store_pend(box, rec,
				    store_log_expunge(rec, m->uid, modseq));
			}
			store_base_free(box, m->base);
			continue;
		}
		box->msgs[w++] = *m;
	}
	box->n = w;
	free(want);
	*out_uids = out;
	*n_out = nout;
	if (out_seqs != NULL)
		*out_seqs = seqs;
	else
		free(seqs);
	if (nout == 0)
		return 0;
	box->highestmodseq = modseq;
	if (fsync(box->cur_fd) == -1)
		return store_fail(err, errlen, "fsync: %s", strerror(errno));
	store_quota_add(box->store, -bytes, -(int64_t)nout);
	return store_flush(box, err, errlen);
}

/* Drops uids[0..n) (sorted) from box's index: their files are gone. */
static void
drop_uids(struct store_box *box, const uint32_t *uids, size_t n)
{
	uint64_t modseq = ++box->highestmodseq;
	size_t w = 0;

	for (size_t i = 0; i < box->n; i++) {
		struct store_msg *m = &box->msgs[i];
		uint8_t rec[STORE_LOG_REC_MAX];

		if (bsearch(&m->uid, uids, n, sizeof(*uids), uid_cmp) == NULL) {
			box->msgs[w++] = *m;
			continue;
		}
		store_vanished_push(box, m->uid, modseq);
		store_pend(box, rec, store_log_expunge(rec, m->uid, modseq));
		store_base_free(box, m->base);
	}
	box->n = w;
}

int
store_move(struct store_box *src, const uint32_t *uids, size_t n,
    struct store_box *dst, uint32_t *uid_out, char *err, size_t errlen)
{
	uint32_t *moved;
	size_t nm = 0;
	int r;

	r = transfer(src, uids, n, dst, uid_out, true, err, errlen);
	moved = xreallocarray(NULL, n + 1, sizeof(*moved));
	for (size_t i = 0; i < n; i++)
		if (uid_out[i] != 0)
			moved[nm++] = uids[i];
	/* Even after an error: what moved is gone from src. */
	if (nm > 0) {
		qsort(moved, nm, sizeof(*moved), uid_cmp);
		drop_uids(src, moved, nm);
		if (store_flush(src, err, errlen) == -1)
			r = -1;
	}
	free(moved);
	return r;
}

int
store_set_flags(struct store_box *box, uint32_t uid, enum store_flag_mode mode,
    const struct store_flags *f, uint64_t unchangedsince, uint64_t *modseq_out,
    char *err, size_t errlen)
{
	struct store_msg *m = store_index_find(box, uid, NULL);
	struct store_flags nf;
	char from[300], to[300];

	if (m == NULL)
		return 2;
	if (modseq_out != NULL)
		*modseq_out = m->modseq;
	if (unchangedsince != 0 && m->modseq > unchangedsince)
		return 1;
	nf = m->flags;
	if (mode == STORE_FLAGS_SET) {
		/* 'P' has no IMAP flag: a client cannot clear it. */
		nf.sys = (uint8_t)((f->sys & ~STORE_F_PASSED) |
		                   (m->flags.sys & STORE_F_PASSED));
		nf.keywords = f->keywords;
	} else if (mode == STORE_FLAGS_ADD) {
		nf.sys |= f->sys;
		nf.keywords |= f->keywords;
	} else {
		nf.sys &= (uint8_t)~f->sys;
		nf.keywords &= ~f->keywords;
	}
	nf.keywords &= (1u << STORE_KEYWORDS_MAX) - 1;
	if (nf.sys == m->flags.sys && nf.keywords == m->flags.keywords)
		return 0;
	if (store_flags_name(m->base, strlen(m->base), &m->flags, from,
	        sizeof(from)) == -1 ||
	    store_flags_name(m->base, strlen(m->base), &nf, to, sizeof(to)) ==
	        -1)
		return store_fail(err, errlen, "message name too long");
	if (renameat(box->cur_fd, from, box->cur_fd, to) == -1)
		return store_fail(
		    err, errlen, "cannot change flags: %s", strerror(errno));
	m->flags = nf;
	m->modseq = ++box->highestmodseq;
	if (modseq_out != NULL)
		*modseq_out = m->modseq;
	{
		uint8_t rec[STORE_LOG_REC_MAX];

		store_pend(box, rec, store_log_flags(rec, m));
	}
	return 0;
}

int
store_changes_since(const struct store_box *box, uint64_t modseq,
    size_t **changed_out, size_t *nchanged_out, uint32_t **vanished_out,
    size_t *nvanished_out)
{
	size_t *c = xreallocarray(NULL, box->n + 1, sizeof(*c)), nc = 0;
	uint32_t *v = xreallocarray(NULL, box->nvanished + 1, sizeof(*v));
	size_t nv = 0;

	for (size_t i = 0; i < box->n; i++)
		if (box->msgs[i].modseq > modseq)
			c[nc++] = i;
	for (size_t i = 0; i < box->nvanished; i++)
		if (box->vanished[i].modseq > modseq)
			v[nv++] = box->vanished[i].uid;
	if (nv > 1)
		qsort(v, nv, sizeof(*v), uid_cmp);
	*changed_out = c;
	*nchanged_out = nc;
	*vanished_out = v;
	*nvanished_out = nv;
	return modseq < box->vanished_floor ? 1 : 0;
}
