/*
 * posternctl's dkim commands (issue 15 part 1, posternctl_dkim.c).  Each
 * takes data_dir and the command's arguments (NULL-terminated), runs as
 * the run user, prints what it did, and returns the exit status: 0, 1
 * (an error, said on stderr) or 2 (a usage error, not yet said).
 */
#ifndef POSTERN_POSTERNCTL_DKIM_H
#define POSTERN_POSTERNCTL_DKIM_H

/* posternctl.c: says "posternctl: ..." on stderr; returns 1. */
int ctl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* DOMAIN [--selector S] [--type rsa|ed25519] [--bits N] */
int ctl_dkim_keygen(const char *data_dir, char **args);
/* DOMAIN<tab>SELECTOR<tab>rsa|ed25519<tab>active|inactive lines */
int ctl_dkim_list(const char *data_dir, char **args);
/* DOMAIN SELECTOR */
int ctl_dkim_activate(const char *data_dir, char **args);
int ctl_dkim_retire(const char *data_dir, char **args);
int ctl_dkim_txt(const char *data_dir, char **args);

#endif
