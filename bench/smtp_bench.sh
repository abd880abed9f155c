#!/bin/sh
# Benchmark: postern against a private Postfix instance on this machine,
# same load, same run.  See docs/performance.md.  Run as root (Postfix
# needs it): `make bench`.  Everything stays on 127.0.0.1.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
exec /usr/bin/python3 "$top/bench/smtp_bench.py" "$@"
