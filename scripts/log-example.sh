#!/bin/sh
# Regenerates the log example in docs/admin.md from a real run of the
# ASan build (tests/proto/test_log_doc.py); `make test` fails while the
# example differs from what the daemon writes.
set -eu
cd "$(dirname "$0")/.."
make asan >/dev/null
POSTERN_WRITE_DOCS=1 POSTERND=$PWD/build/asan/posternd \
	POSTERNCTL=$PWD/build/asan/posternctl \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/proto/test_log_doc.py
git --no-pager diff --stat -- docs/admin.md
