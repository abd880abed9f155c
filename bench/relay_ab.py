#!/usr/bin/python3
"""A/B of two posternd builds on the relay load of smtp_bench.py.

    bench/relay_ab.py OLD_POSTERND NEW_POSTERND [SIZE COUNT ROUNDS]

Runs the relay load (smtp-source -> posternd -> queue -> smtp-sink) with
each binary in turn, alternating, ROUNDS times, and prints every round and
the medians.  Postfix is not involved: this is for telling whether a
change to postern helps, on a machine too noisy for single runs.  Same
bounds as smtp_bench.py: loopback only, a message count, a timeout.
Run as root (smtp-sink drops to nobody).  Defaults: 102400 1500 5.
"""
import os
import resource
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtp_bench  # noqa: E402


def main():
    if len(sys.argv) not in (3, 6):
        raise SystemExit(__doc__)
    bins = sys.argv[1:3]
    size, count, rounds = (int(a) for a in sys.argv[3:6]) if len(sys.argv) == 6 \
        else (102400, 1500, 5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = tempfile.mkdtemp(prefix="postern-ab-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    rates = {b: [] for b in bins}
    try:
        for _ in range(rounds):
            for b in bins:
                smtp_bench.POSTERND = os.path.abspath(b)
                server = smtp_bench.Postern(base)
                rates[b].append(smtp_bench.relay_load(server, smtp_bench.P_PORT, 2727,
                                                      size, count))
                print(f"{b}: {rates[b][-1]:.0f} msg/s", flush=True)
    finally:
        # Removed only at the end: deleting makes file creation slow here.
        shutil.rmtree(base, ignore_errors=True)
    for b in bins:
        print(f"{b}: median {statistics.median(rates[b]):.0f} msg/s "
              f"({' '.join(f'{r:.0f}' for r in rates[b])})")


if __name__ == "__main__":
    main()
