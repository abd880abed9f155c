"""A/B of two posternd builds (and Dovecot) on two IMAP loads of
bench/imap_bench.py, alternating servers each round, medians:

  select   SELECT of a SELECT_N-message folder whose index exists (a
           fresh session after the one that built it closed), seconds
  select2  the same SELECT while another session has the folder
           selected (the folder is open: no reopen), seconds
  search   SEARCH TEXT of a word in one message in FETCH_N (the first
           in a fresh session after SELECT), seconds

  /usr/bin/python3 bench/imap_ab.py OLD/posternd NEW/posternd [ROUNDS]

Each posternd needs its posternctl beside it.  Dovecot runs too unless
NO_DOVECOT=1.  Run as root (Dovecot needs it); loopback only.
"""
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imap_bench as ib  # noqa: E402

REPEAT = int(os.environ.get("IMAP_AB_REPEAT", "3"))


def bench_search(srv):
    """The first SEARCH in a fresh session, then REPEAT-1 more."""
    c = ib.login(srv.port)
    ib.ok(c.command("SELECT INBOX"))
    times = []
    for _ in range(REPEAT):
        t, r = ib.timed(c, "SEARCH TEXT needle")
        assert r[0] == b"* SEARCH %d" % (ib.NEEDLE + 1), r[0]
        times.append(t)
    c.close()
    return times


def bench_select(srv):
    """SELECT in fresh sessions after the first closed, REPEAT times."""
    c = ib.login(srv.port)
    ib.ok(c.command("SELECT INBOX"))  # builds the index
    c.close()
    times = []
    for _ in range(REPEAT):
        c = ib.login(srv.port)
        t, r = ib.timed(c, "SELECT INBOX")
        assert b"* %d EXISTS" % ib.SELECT_N in r, r
        times.append(t)
        c.close()
    return times


def bench_select_open(srv):
    """SELECT in fresh sessions while one keeps the folder selected."""
    keep = ib.login(srv.port)
    ib.ok(keep.command("SELECT INBOX"))
    times = []
    for _ in range(REPEAT):
        c = ib.login(srv.port)
        t, r = ib.timed(c, "SELECT INBOX")
        assert b"* %d EXISTS" % ib.SELECT_N in r, r
        times.append(t)
        c.close()
    keep.close()
    return times


def run(kind, binary, base, master, fn):
    if binary is not None:
        ib.POSTERND = binary
        ib.POSTERNCTL = os.path.join(os.path.dirname(binary), "posternctl")
    os.sync()
    srv = ib.Server(kind, base, master)
    try:
        return fn(srv)
    finally:
        srv.stop()


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    old, new = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else ib.ROUNDS
    only = os.environ.get("BENCH_ONLY", "select,search").split(",")
    servers = [("old", "postern", old), ("new", "postern", new)]
    if os.environ.get("NO_DOVECOT") != "1":
        servers.append(("dovecot", "dovecot", None))
    base = tempfile.mkdtemp(prefix="postern-imap-ab-",
                            dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    small, big = os.path.join(base, "small"), os.path.join(base, "big")
    loads = {"search": (small, ib.FETCH_N, bench_search),
             "select": (big, ib.SELECT_N, bench_select),
             "select2": (big, ib.SELECT_N, bench_select_open)}
    res = {(load, name): [] for load in only for name, _, _ in servers}
    try:
        for load in only:
            if not os.path.exists(loads[load][0]):
                ib.make_maildir(loads[load][0], loads[load][1])
        for r in range(rounds):
            for load in only:
                master, _, fn = loads[load]
                for name, kind, binary in servers:
                    t = run(kind, binary, base, master, fn)
                    res[(load, name)].extend(t)
                    print(f"round {r + 1} {load} {name}: "
                          + " ".join(f"{x * 1000:.2f}" for x in t) + " ms",
                          flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"# {rounds} rounds x {REPEAT}, medians (ms)")
    for load in only:
        med = {name: statistics.median(res[(load, name)]) for name, _, _ in servers}
        line = f"{load:8s} " + "  ".join(f"{n} {m * 1000:8.2f}" for n, m in med.items())
        if "dovecot" in med:
            line += (f"  dovecot/old {med['dovecot'] / med['old']:.2f}"
                     f"  dovecot/new {med['dovecot'] / med['new']:.2f}")
        line += f"  old/new {med['old'] / med['new']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
