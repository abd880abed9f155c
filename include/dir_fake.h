/*
 * dir_fake: an in-memory directory (include/dir.h contract, read and
 * admin ops) for tests only: tests/unit and the policy golden harness
 * link src/dir/dir_fake.c; posternd and posternctl do not.
 */
#ifndef POSTERN_DIR_FAKE_H
#define POSTERN_DIR_FAKE_H

#include <stdbool.h>

#include "dir.h"

/* An empty directory, read and admin ops; close with dir_close. */
struct dir *dir_fake_new(void);
/* While is_failing, every op fails as a temporary error (-1,
 * "directory: simulated failure"), as a backend out of reach would. */
void dir_fake_fail(struct dir *, bool is_failing);

#endif
