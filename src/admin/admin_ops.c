/*
 * admin_ops: the directory changes the pages and the API make, one
 * table of operations (struct admin_op) run on the admin pool with that
 * thread's admin handle.  Each checks its input the way posternctl does
 * (names normalised, a mailbox a plain dot-atom, a password hashed on
 * the worker), refuses a domain admin anything outside its domain, and
 * audits what changed.  The web's done redirects back with a message;
 * the API's answers JSON (admin_api.c).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "admin_ops.h"
#include "admin_priv.h"
#include "dir.h"
#include "log.h"
#include "passwd.h"
#include "xmalloc.h"

static const struct {
	enum admin_opcode op;
	const char *name; /* the audit's "what" and the API's */
	bool server_only; /* full admins only */
	const char *done; /* what the flash says, after the object */
} ops[] = {
    {AOP_DOMAIN_ADD, "domain-add", true, "added"},
    {AOP_DOMAIN_DEL, "domain-del", true, "removed"},
    {AOP_HALIAS_ADD, "host-alias-add", true, "added"},
    {AOP_HALIAS_DEL, "host-alias-del", true, "removed"},
    {AOP_USER_ADD, "user-add", false, "added"},
    {AOP_USER_DEL, "user-del", false, "removed"},
    {AOP_USER_PASSWD, "user-passwd", false, "has a new password"},
    {AOP_USER_QUOTA, "user-quota", false, "quota set"},
    {AOP_USER_DISABLE, "user-disable", false, "disabled"},
    {AOP_USER_ENABLE, "user-enable", false, "enabled"},
    {AOP_ALIAS_ADD, "alias-add", false, "added"},
    {AOP_ALIAS_DEL, "alias-del", false, "removed"},
    {AOP_LIST_ADD, "list-add", false, "added"},
    {AOP_LIST_DEL, "list-del", false, "removed"},
    {AOP_MEMBER_ADD, "member-add", false, "member added"},
    {AOP_MEMBER_DEL, "member-del", false, "member removed"},
};

const char *
admin_op_name(enum admin_opcode op)
{
	return ops[op].name;
}

int
admin_op_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, name) == 0)
			return (int)ops[i].op;
	return -1;
}

/* "local@domain" -> parts, normalised; a domain admin only its own. */
static int
split_for(struct admin_job *j, const char *in, char *l, char *d)
{
	const char *why = NULL;

	if (dir_split_address(in, l, ADDR_LOCAL_MAX + 1, d, ADDR_DOMAIN_MAX + 1,
	        &why) == -1) {
		snprintf(j->err, sizeof(j->err), "%.200s: %s", in,
		    why ? why : "bad address");
		return -1;
	}
	/* Listed and removed by the same text: a quoted local part (its
	 * quotes gone in the directory's spelling) is posternctl's. */
	if (!addr_local_is_dot_string(l)) {
		snprintf(j->err, sizeof(j->err),
		    "%.200s: only plain local parts here (a quoted one: "
		    "posternctl)",
		    in);
		return -1;
	}
	if (!admin_may_domain(&j->who, d)) {
		snprintf(j->err, sizeof(j->err),
		    "%.200s: not in your domain (%.200s)", in, j->who.domain);
		j->status = 403;
		return -1;
	}
	return 0;
}

static int
domain_for(struct admin_job *j, const char *in, char *d)
{
	if (addr_domain_normalize(in, d, ADDR_DOMAIN_MAX + 1) == -1) {
		snprintf(j->err, sizeof(j->err), "bad domain name: %.200s", in);
		return -1;
	}
	return 0;
}

static int
hash_for(struct admin_job *j, char *h, size_t hlen)
{
	int r;

	if (j->b[0] == '\0') {
		snprintf(j->err, sizeof(j->err), "empty password");
		return -1;
	}
	r = passwd_hash(j->b, h, hlen);
	explicit_bzero(j->b, sizeof(j->b));
	if (r == -1) {
		snprintf(j->err, sizeof(j->err), "password hashing failed");
		return -1;
	}
	return 0;
}

/* Digits with an optional k, M or G (powers of 1024), as config's sizes. */
static int
size_parse(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'M')
		mult = 1024 * 1024, end++;
	else if (*end == 'G')
		mult = 1024ull * 1024 * 1024, end++;
	if (*end != '\0' || v > UINT64_MAX / mult / 1024)
		return -1;
	*out = v * mult;
	return 0;
}

/* A quota: "" or "none" back to the default; else digits (k, M, G for
 * bytes), as posternctl user quota takes them. */
static int
quota_for(struct admin_job *j, struct dir_quota *q, bool *is_default)
{
	const char *bytes = j->c, *msgs = j->d;
	uint64_t b = 0, m = 0;
	char *end;

	*is_default = (bytes[0] == '\0' || strcmp(bytes, "none") == 0) &&
	              (msgs[0] == '\0' || strcmp(msgs, "none") == 0);
	if (*is_default)
		return 0;
	if (bytes[0] != '\0' && size_parse(bytes, &b) == -1) {
		snprintf(j->err, sizeof(j->err),
		    "bad size %.40s (want a number, k, M or G)", bytes);
		return -1;
	}
	if (msgs[0] != '\0') {
		m = strtoull(msgs, &end, 10);
		if (!isdigit((unsigned char)msgs[0]) || *end != '\0' ||
		    m > 100000000) {
			snprintf(j->err, sizeof(j->err),
			    "bad message count %.40s", msgs);
			return -1;
		}
	}
	*q = (struct dir_quota){.is_set = true, .bytes = b, .messages = m};
	return 0;
}

void
admin_op_run(struct admin_job *j, struct dir *d)
{
	enum admin_opcode op = (enum admin_opcode)j->n1;
	char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
	char l2[ADDR_LOCAL_MAX + 1], dom2[ADDR_DOMAIN_MAX + 1], h[256];
	const struct dir_admin_ops *a = d != NULL ? d->admin : NULL;
	char *e = j->err;
	size_t el = sizeof(j->err);
	int r = DIR_ADMIN_REFUSED;

	j->status = 400;
	if (a == NULL) {
		snprintf(e, el, "directory unavailable");
		j->status = 503;
		j->rc = DIR_ADMIN_ERROR;
		return;
	}
	if (ops[op].server_only && j->who.domain[0] != '\0') {
		snprintf(e, el, "only a full admin may do that");
		j->status = 403;
		j->rc = DIR_ADMIN_REFUSED;
		return;
	}
	switch (op) {
	case AOP_DOMAIN_ADD:
		if (domain_for(j, j->a, dom) == 0)
			r = a->domain_add(d, dom, e, el);
		break;
	case AOP_DOMAIN_DEL:
		if (domain_for(j, j->a, dom) == 0)
			r = a->domain_del(d, dom, e, el);
		break;
	case AOP_HALIAS_ADD:
		if (domain_for(j, j->a, dom) == 0 &&
		    domain_for(j, j->b, dom2) == 0)
			r = a->host_alias_add(d, dom, dom2, e, el);
		break;
	case AOP_HALIAS_DEL:
		if (domain_for(j, j->a, dom) == 0)
			r = a->host_alias_del(d, dom, e, el);
		break;
	case AOP_USER_ADD:
		if (split_for(j, j->a, l, dom) == -1)
			break;
		/* The name becomes a directory: a plain dot-atom. */
		if (!addr_local_is_dot_string(l) || strchr(l, '/') != NULL) {
			snprintf(e, el,
			    "%.200s: a user name must be a plain "
			    "dot-atom without '/'",
			    j->a);
			break;
		}
		if (hash_for(j, h, sizeof(h)) == 0)
			r = a->user_add(d, l, dom, h, e, el);
		break;
	case AOP_USER_DEL:
		if (split_for(j, j->a, l, dom) == 0)
			r = a->user_del(d, l, dom, e, el);
		break;
	case AOP_USER_PASSWD:
		if (split_for(j, j->a, l, dom) == 0 &&
		    hash_for(j, h, sizeof(h)) == 0)
			r = a->user_passwd(d, l, dom, h, e, el);
		break;
	case AOP_USER_QUOTA: {
		struct dir_quota q;
		bool is_default;

		if (split_for(j, j->a, l, dom) == 0 &&
		    quota_for(j, &q, &is_default) == 0) {
			struct dir_quota old;
			char oe[128];

			/* The audit's old value: what is stored now. */
			if (d->ops->user_quota(
			        d, l, dom, &old, oe, sizeof(oe)) == 1) {
				if (old.is_set)
					snprintf(j->e, sizeof(j->e),
					    "bytes %llu, messages %llu",
					    (unsigned long long)old.bytes,
					    (unsigned long long)old.messages);
				else
					snprintf(j->e, sizeof(j->e), "default");
			}
			r = a->user_quota_set(
			    d, l, dom, is_default ? NULL : &q, e, el);
		}
		break;
	}
	case AOP_USER_DISABLE:
	case AOP_USER_ENABLE:
		if (split_for(j, j->a, l, dom) == 0) {
			bool was;
			char oe[128];

			if (d->ops->user_disabled != NULL &&
			    d->ops->user_disabled(
			        d, l, dom, &was, oe, sizeof(oe)) == 1)
				snprintf(j->e, sizeof(j->e), "%s",
				    was ? "disabled" : "enabled");
			r = a->user_disable(
			    d, l, dom, op == AOP_USER_DISABLE, e, el);
		}
		break;
	case AOP_ALIAS_ADD:
	case AOP_ALIAS_DEL:
		if (split_for(j, j->a, l, dom) == -1)
			break;
		if (j->b[0] != '\0') {
			const char *why = NULL;

			/* The target as it is stored: normalised. */
			if (dir_split_address(j->b, l2, sizeof(l2), dom2,
			        sizeof(dom2), &why) == -1 ||
			    !addr_local_is_dot_string(l2)) {
				snprintf(e, el, "%.200s: %s", j->b,
				    why ? why
				        : "only plain local parts here (a "
				          "quoted one: posternctl)");
				break;
			}
			snprintf(j->b, sizeof(j->b), "%s@%s", l2, dom2);
		} else if (op == AOP_ALIAS_ADD) {
			snprintf(e, el, "an alias needs a target");
			break;
		}
		r = op == AOP_ALIAS_ADD
		        ? a->alias_add(d, l, dom, j->b, e, el)
		        : a->alias_del(d, l, dom, j->b[0] ? j->b : NULL, e, el);
		break;
	case AOP_LIST_ADD:
		if (split_for(j, j->a, l, dom) == 0)
			r = a->list_add(d, l, dom, e, el);
		break;
	case AOP_LIST_DEL:
		if (split_for(j, j->a, l, dom) == 0)
			r = a->list_del(d, l, dom, e, el);
		break;
	case AOP_MEMBER_ADD:
	case AOP_MEMBER_DEL: {
		const char *why = NULL;

		if (split_for(j, j->a, l, dom) == -1)
			break;
		if (dir_split_address(
		        j->b, l2, sizeof(l2), dom2, sizeof(dom2), &why) == -1 ||
		    !addr_local_is_dot_string(l2)) {
			snprintf(e, el, "%.200s: %s", j->b,
			    why ? why
			        : "only plain local parts here (a quoted "
			          "one: posternctl)");
			break;
		}
		snprintf(j->b, sizeof(j->b), "%s@%s", l2, dom2);
		r = a->list_member(
		    d, l, dom, j->b, op == AOP_MEMBER_ADD, e, el);
		break;
	}
	}
	j->rc = r;
	j->status = r == DIR_ADMIN_OK      ? 200
	            : r == DIR_ADMIN_ERROR ? 503
	            : j->status == 403     ? 403
	                                   : 422;
	if (r == DIR_ADMIN_OK)
		e[0] = '\0';
}

/* The audit line of a done op: the password is never in it. */
void
admin_op_audit(struct admin_job *j)
{
	enum admin_opcode op = (enum admin_opcode)j->n1;
	const char *nv = NULL;
	char q[256];

	if (j->rc != DIR_ADMIN_OK)
		return;
	switch (op) {
	case AOP_HALIAS_ADD:
	case AOP_ALIAS_ADD:
	case AOP_MEMBER_ADD:
		nv = j->b;
		break;
	case AOP_ALIAS_DEL:
	case AOP_MEMBER_DEL:
		nv = j->b[0] ? j->b : "(all)";
		break;
	case AOP_USER_PASSWD:
	case AOP_USER_ADD:
		nv = "(password set)";
		break;
	case AOP_USER_QUOTA:
		/* As quota_for read them: both empty the default, one
		 * empty (or 0) no limit. */
		if (j->c[0] == '\0' && j->d[0] == '\0')
			snprintf(q, sizeof(q), "default");
		else
			snprintf(q, sizeof(q), "bytes %.40s, messages %.40s",
			    j->c[0] ? j->c : "0", j->d[0] ? j->d : "0");
		nv = q;
		break;
	case AOP_USER_DISABLE:
	case AOP_USER_ENABLE:
		nv = op == AOP_USER_DISABLE ? "disabled" : "enabled";
		break;
	default:
		break;
	}
	/* The old value where there is one (j->e, read before the change:
	 * a quota, a user's state); "-" for what was added or removed. */
	admin_audit(&j->who, ops[op].name, j->a, j->e[0] ? j->e : NULL, nv);
}

const char *
admin_op_done_text(enum admin_opcode op)
{
	return ops[op].done;
}
