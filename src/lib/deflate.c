/*
 * deflate.c: COMPRESS=DEFLATE (RFC 4978) as a libevent filter; see
 * include/deflate.h.  It must never inflate past the limit the filter is
 * given (the session's input bound) nor keep input it could not use.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <zlib.h>

#include "deflate.h"
#include "net.h"

/* Output window 2^12 and memLevel 5: about 32 KiB for the compressor
 * (zlib's default is 256 KiB) for a little less compression; input must
 * take any window a client uses (2^15: 32 KiB plus state). */
#define OUT_WBITS 12
#define OUT_MEMLEVEL 5
#define IN_WBITS 15
/* One filter call inflates at most this much when it is given no limit. */
#define IN_STEP_MAX (256u * 1024)

struct deflate_ctx {
	z_stream in, out;
	struct bufferevent *bev; /* deflate_wrap's filter, once made */
};

struct deflate_ctx *
deflate_ctx_new(void)
{
	struct deflate_ctx *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if (inflateInit2(&c->in, -IN_WBITS) != Z_OK) {
		free(c);
		return NULL;
	}
	if (deflateInit2(&c->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -OUT_WBITS,
	        OUT_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&c->in);
		free(c);
		return NULL;
	}
	return c;
}

void
deflate_ctx_free(struct deflate_ctx *c)
{
	if (c == NULL)
		return;
	inflateEnd(&c->in);
	deflateEnd(&c->out);
	free(c);
}

int
deflate_in(struct deflate_ctx *c, struct evbuffer *src, struct evbuffer *dst,
    size_t limit)
{
	size_t made = 0;

	while (evbuffer_get_length(src) > 0 && (limit == 0 || made < limit)) {
		struct evbuffer_iovec in, out;
		size_t want = 16384, used, got;
		int r;

		if (limit != 0 && limit - made < want)
			want = limit - made;
		if (evbuffer_peek(src, -1, NULL, &in, 1) < 1)
			break;
		if (evbuffer_reserve_space(dst, (ev_ssize_t)want, &out, 1) < 1)
			return -1;
		if (out.iov_len > want)
			out.iov_len = want;
		c->in.next_in = in.iov_base;
		c->in.avail_in =
		    (uInt)(in.iov_len < UINT32_MAX ? in.iov_len : UINT32_MAX);
		c->in.next_out = out.iov_base;
		c->in.avail_out = (uInt)out.iov_len;
		r = inflate(&c->in, Z_SYNC_FLUSH);
		used = in.iov_len - c->in.avail_in;
		got = out.iov_len - c->in.avail_out;
		out.iov_len = got;
		evbuffer_commit_space(dst, &out, 1);
		evbuffer_drain(src, used);
		made += got;
		if (r == Z_STREAM_END) {
			/* A client that ended its stream may start another. */
			if (inflateReset(&c->in) != Z_OK)
				return -1;
		} else if (r != Z_OK && r != Z_BUF_ERROR) {
			return -1; /* Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR */
		}
		if (used == 0 && got == 0)
			break; /* a partial block: wait for more */
	}
	return 0;
}

/* Runs deflate over avail_in with flush until it needs no more room. */
static int
out_step(struct deflate_ctx *c, struct evbuffer *dst, int flush)
{
	do {
		struct evbuffer_iovec out;
		int r;

		if (evbuffer_reserve_space(dst, 16384, &out, 1) < 1)
			return -1;
		c->out.next_out = out.iov_base;
		c->out.avail_out =
		    (uInt)(out.iov_len < 65536 ? out.iov_len : 65536);
		out.iov_len = c->out.avail_out;
		r = deflate(&c->out, flush);
		out.iov_len -= c->out.avail_out;
		evbuffer_commit_space(dst, &out, 1);
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -1;
	} while (c->out.avail_out == 0 ||
	         (flush == Z_NO_FLUSH && c->out.avail_in > 0));
	return 0;
}

/* Deflates up to max bytes of src (0: all) into dst; flushed when src is
 * then empty. */
static int
out_some(struct deflate_ctx *c, struct evbuffer *src, struct evbuffer *dst,
    size_t max)
{
	size_t done = 0;

	while (evbuffer_get_length(src) > 0 && (max == 0 || done < max)) {
		struct evbuffer_iovec in;
		size_t n;

		if (evbuffer_peek(src, -1, NULL, &in, 1) < 1)
			break;
		n = in.iov_len;
		if (max != 0 && max - done < n)
			n = max - done;
		if (n > 65536)
			n = 65536;
		c->out.next_in = in.iov_base;
		c->out.avail_in = (uInt)n;
		if (out_step(c, dst, Z_NO_FLUSH) == -1)
			return -1;
		evbuffer_drain(src, n);
		done += n;
	}
	c->out.avail_in = 0;
	if (evbuffer_get_length(src) == 0 && done > 0)
		return out_step(c, dst, Z_SYNC_FLUSH);
	return 0;
}

int
deflate_out(struct deflate_ctx *c, struct evbuffer *src, struct evbuffer *dst)
{
	return out_some(c, src, dst, 0);
}

static enum bufferevent_filter_result
filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	size_t before = evbuffer_get_length(dst);

	struct deflate_ctx *c = arg;

	(void)mode;
	if (limit == 0)
		return BEV_NEED_MORE;
	if (deflate_in(c, src, dst, limit > 0 ? (size_t)limit : IN_STEP_MAX) ==
	    -1) {
		/* libevent drops a filter's error on the read path: the
		 * session hears of it as a read error, after this call. */
		evbuffer_drain(src, evbuffer_get_length(src));
		if (c->bev != NULL)
			bufferevent_trigger_event(c->bev,
			    BEV_EVENT_READING | BEV_EVENT_ERROR,
			    BEV_TRIG_DEFER_CALLBACKS);
		return BEV_ERROR;
	}
	/* Nothing made: NEED_MORE, so libevent does not call again at once
	 * (and a flush reports that nothing was processed). */
	return evbuffer_get_length(dst) > before ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result
filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	(void)mode;
	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	if (out_some(arg, src, dst, limit > 0 ? (size_t)limit : 0) == -1)
		return BEV_ERROR;
	return BEV_OK;
}

static void
ctx_free(void *arg)
{
	deflate_ctx_free(arg);
}

struct bufferevent *
deflate_wrap(struct bufferevent *under)
{
	struct deflate_ctx *c = deflate_ctx_new();
	struct bufferevent *f;

	if (c == NULL)
		return NULL;
	/* Deferred callbacks: a filter runs its write callback inside the
	 * evbuffer_add that fills it, so the session's on_write would run
	 * in the middle of a reply (and send its updates twice). */
	f = bufferevent_filter_new(under, filter_in, filter_out,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, ctx_free, c);
	if (f == NULL) {
		deflate_ctx_free(c);
		return NULL;
	}
	c->bev = f;
	bufferevent_set_timeouts(under, NULL, NULL);
	/* Compressed output waits in f's buffer past this (the protocol's
	 * back-pressure measures f), and compressed input stops being read
	 * past the same amount until f took it. */
	bufferevent_setwatermark(under, EV_WRITE, 0, NET_OUTPUT_MAX);
	bufferevent_setwatermark(under, EV_READ, 0, NET_OUTPUT_MAX);
	bufferevent_enable(under, EV_READ | EV_WRITE);
	return f;
}
