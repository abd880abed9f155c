/*
 * admin_ops: the directory operations of the web admin's pages and API
 * (admin_ops.c).  A job carries the op in n1 and its inputs in a (the
 * address or domain), b (a target, member, alias's domain or the
 * password, wiped once hashed), c and d (quota bytes and messages); the
 * op sets e to the audit's old value where there is one.
 */
#ifndef POSTERN_ADMIN_OPS_H
#define POSTERN_ADMIN_OPS_H

struct admin_job;
struct dir;

enum admin_opcode {
	AOP_DOMAIN_ADD,
	AOP_DOMAIN_DEL,
	AOP_HALIAS_ADD,
	AOP_HALIAS_DEL,
	AOP_USER_ADD,
	AOP_USER_DEL,
	AOP_USER_PASSWD,
	AOP_USER_QUOTA,
	AOP_USER_DISABLE,
	AOP_USER_ENABLE,
	AOP_ALIAS_ADD,
	AOP_ALIAS_DEL,
	AOP_LIST_ADD,
	AOP_LIST_DEL,
	AOP_MEMBER_ADD,
	AOP_MEMBER_DEL,
};

const char *admin_op_name(enum admin_opcode);
/* -1: no such op */
int admin_op_by_name(const char *name);
const char *admin_op_done_text(enum admin_opcode);
/* Worker: runs j's op (j->rc a dir_admin_result, j->status HTTP). */
void admin_op_run(struct admin_job *j, struct dir *d);
/* Loop: the audit line of a successful op. */
void admin_op_audit(struct admin_job *j);

#endif
