"""The directory on the mail path: SMTP to Maildir with the SQLite directory
against the PostgreSQL one (issue 13), same machine, same run.

bench/smtp_bench.py's load (Postfix's smtp-source, 20 sessions, 1 KiB
messages, delivered to Maildirs; posternd answers 250 only once the copies
are synced) against the release posternd twice: `directory = sqlite` (the
default) and `directory = postgresql` on a private cluster
(tests/pg/pgtest.sh: 127.0.0.1, scram-sha-256, a fresh database per run,
schema by `posternctl db init`).  Each RCPT is a directory operation (the
domain, the address, the quota), so 10 recipients is ten of them per
message.  Rounds alternate the backends; medians, the ratio
PostgreSQL/SQLite, and per message the CPU of posternd and of the
PostgreSQL server processes, and the queries (transactions) PostgreSQL ran.

Then (BENCH_ONLY=upsert, or after the loads) the write cost of a lock-out
counter upsert on the same kind of cluster, an UNLOGGED table against a
logged one (and a logged one with synchronous_commit off in the
transaction), with pgbench: first with pgtest.sh's settings (fsync and
synchronous_commit off, as the tests run), then with PostgreSQL's defaults
(fsync, synchronous_commit and full_page_writes on, as a production server
runs).

Bounded: message counts, 600 s per run, 10 s per pgbench run; everything on
127.0.0.1; posternd's DNS points at a closed loopback port.

  /usr/bin/python3 bench/dir_bench.py          # ROUNDS=5 by default
  ROUNDS=3 BENCH_ONLY=smtp /usr/bin/python3 bench/dir_bench.py   # or latency, upsert
  BENCH_LOADS=1024:10:1000 BENCH_CONF="dir_workers = 16" ...      # one load, a setting
                                                                  # for both backends
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtp_bench as sb  # noqa: E402

PGTEST = os.path.join(sb.TOP, "tests/pg/pgtest.sh")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
LOADS = [(1024, 1, 3000), (1024, 10, 1000)]  # (size, recipients, messages)
if os.environ.get("BENCH_LOADS"):  # "SIZE:RCPTS:MSGS,..."
    LOADS = [tuple(int(x) for x in l.split(":")) for l in os.environ["BENCH_LOADS"].split(",")]
TICK = os.sysconf("SC_CLK_TCK")


class Pg:
    """A private cluster (pgtest.sh start), its superuser psql, the CPU
    of its processes."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-pgbench-")
        sb.sh(PGTEST, "start", self.dir, timeout=180)
        with open(os.path.join(self.dir, "conninfo")) as f:
            self.conninfo = f.read().strip()
        self.passfile = os.path.join(self.dir, "passfile")
        self.env = dict(os.environ)
        with open(os.path.join(self.dir, "env")) as f:
            for k, v in re.findall(r"^export (\w+)='?([^'\n]*)'?$", f.read(), re.M):
                self.env[k] = v
        self.bin = self.env["PGBIN"]
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            self.postmaster = int(f.readline())
        self.n = 0

    def createdb(self):
        self.n += 1
        name = f"bench{self.n}"
        sb.sh(PGTEST, "createdb", self.dir, name, timeout=60)
        return name

    def psql(self, sql, db="postgres"):
        return subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                               "-v", "ON_ERROR_STOP=1", "-d", db], input=sql, env=self.env,
                              check=True, capture_output=True, text=True,
                              timeout=120).stdout.strip()

    def cpu(self):
        """Seconds of CPU of every server process so far: the live ones
        and, through the postmaster's children times, those gone."""
        total = 0
        for pid in sb.descendants(self.postmaster):
            st = proc_stat(pid)
            if st:
                total += st[0] + st[1] + (st[2] + st[3] if pid == self.postmaster else 0)
        return total / TICK

    def stats(self, db):
        """(transactions, sessions) of db so far: one transaction per
        autocommit query; sessions = connections made (this query's own
        psql is one, its transaction another)."""
        x, n = self.psql(f"SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database "
                         f"WHERE datname = '{db}'", db).split("|")
        return int(x), int(n)

    def tcp_env(self):
        """libpq settings of the daemon's own way in: role postern over
        127.0.0.1 with its password."""
        env = dict(self.env, PGUSER="postern", PGHOST="127.0.0.1")
        with open(self.passfile) as f:
            env["PGPASSWORD"] = f.read().strip()
        return env

    def stop(self):
        subprocess.run([PGTEST, "stop", self.dir], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def proc_stat(pid):
    """(utime, stime, cutime, cstime) in ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return tuple(int(x) for x in fields[11:15])


class DirPostern(sb.Postern):
    """smtp_bench's postern with the directory given; counts the CPU
    (posternd's, PostgreSQL's) and the PostgreSQL transactions between
    the start and the stop of each run."""

    def __init__(self, base, pg=None):
        super().__init__(base)
        self.pg, self.db = pg, None
        self.name = "postgresql" if pg else "sqlite"
        self.runs = []  # (posternd cpu s, pg cpu s, pg transactions, pg sessions)

    def prepare(self):
        if self.pg:
            sb.sh(sb.POSTERNCTL, "-c", self.conf, "db", "init", timeout=60)

    def start(self, run):
        self.extra_conf = os.environ.get("BENCH_CONF", "").replace(";", "\n") + "\n"
        if self.pg:
            self.db = self.pg.createdb()
            self.extra_conf += (f"directory = postgresql\n"
                               f"pg_conninfo = {self.pg.conninfo} dbname={self.db}\n"
                               f"pg_passfile = {self.pg.passfile}\n")
        super().start(run)
        self.cpu0 = self.pg.cpu() if self.pg else 0
        self.x0 = self.pg.stats(self.db) if self.pg else (0, 0)

    def stop(self):
        st = proc_stat(self.proc.pid)
        super().stop()
        pg_cpu = xacts = sessions = 0
        if self.pg:
            # After posternd's connections closed: their server
            # processes have exited (CPU in the postmaster's children
            # times) and flushed their statistics.
            sb.time.sleep(0.5)
            pg_cpu = self.pg.cpu() - self.cpu0
            x, n = self.pg.stats(self.db)
            xacts, sessions = x - self.x0[0] - 1, n - self.x0[1] - 1
        self.runs.append(((st[0] + st[1]) / TICK, pg_cpu, xacts, sessions))
        if self.pg:
            self.pg.psql(f"DROP DATABASE {self.db} WITH (FORCE)")


def smtp_loads(base, pg):
    s, p = DirPostern(base), DirPostern(base, pg)
    print(f"# SMTP to Maildir, {sb.SESSIONS} sessions, {ROUNDS} rounds alternating, "
          "msg/s = messages durably in the Maildirs per second (median)")
    print(f"{'size':>5} {'rcpt':>4} {'msgs':>5} {'sqlite':>7} {'pgsql':>7} {'ratio':>6}"
          "  cpu ms/msg posternd sqlite/pgsql, postgres  pg xacts/msg  pg conns"
          "   rounds sqlite/pgsql")
    for size, rcpts, count in LOADS:
        sr, pr = [], []
        s.runs, p.runs = [], []
        for _ in range(ROUNDS):
            sr.append(sb.load(s, sb.P_PORT, size, rcpts, count)[0])
            pr.append(sb.load(p, sb.P_PORT, size, rcpts, count)[0])
        sm, pm = statistics.median(sr), statistics.median(pr)

        def per_msg(runs, i, scale=1000):
            return statistics.median(r[i] for r in runs) * scale / count

        each = " ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(sr, pr))
        print(f"{size:>5} {rcpts:>4} {count:>5} {sm:>7.0f} {pm:>7.0f} {pm / sm:>6.3f}"
              f"  {per_msg(s.runs, 0):>8.3f} / {per_msg(p.runs, 0):.3f}, {per_msg(p.runs, 1):.3f}"
              f"  {per_msg(p.runs, 2, 1):>12.1f}  {max(r[3] for r in p.runs):>8}"
              f"   {each}", flush=True)


def rcpt_latency(server, n=3000):
    """One session, one RCPT at a time (MAIL and RSET every 50): the
    median and 90th percentile time of a RCPT answer, in ms.  The
    directory's round trips, without the load's competition."""
    import smtplib
    import time
    sb.settle()
    server.start(f"lat-{time.time_ns()}")
    try:
        c = smtplib.SMTP("127.0.0.1", sb.P_PORT, timeout=30)
        c.ehlo("bench.example")
        times = []
        for i in range(n):
            if i % 50 == 0:
                c.rset()
                c.mail("bench@remote.example")
            t0 = time.perf_counter()
            code = c.rcpt(sb.USERS[i % len(sb.USERS)] + "@example.test")[0]
            times.append(time.perf_counter() - t0)
            assert code == 250, code
        c.quit()
    finally:
        server.stop()
    times.sort()
    return statistics.median(times) * 1000, times[len(times) * 9 // 10] * 1000


def latencies(base, pg):
    s, p = DirPostern(base), DirPostern(base, pg)
    print("# RCPT latency, one session, one RCPT at a time, 3000 RCPTs, ms: median / p90")
    for _ in range(min(ROUNDS, 3)):
        (sm, s9), (pm, p9) = rcpt_latency(s), rcpt_latency(p)
        print(f"  sqlite {sm:.3f} / {s9:.3f}   postgresql {pm:.3f} / {p9:.3f}   "
              f"difference {pm - sm:+.3f} ms per RCPT (pg xacts per RCPT "
              f"{p.runs[-1][2] / 3000:.2f})", flush=True)


UPSERT = """\\set k random(1, 10000)
INSERT INTO {t}(k, failures, first_at) VALUES ('ip:' || :k, 1, now())
  ON CONFLICT (k) DO UPDATE SET failures = {t}.failures + 1;
"""


def pgbench(pg, db, table, clients, seconds=int(os.environ.get("UPSERT_SECONDS", "10")),
            is_async=False):
    """is_async: the third way, a logged table whose commits do not wait
    for their WAL flush (synchronous_commit off for the session, as a
    connection that writes only counters would set it): a crash loses the
    last few hundred ms of counts, not the table (UNLOGGED: all of it)."""
    script = os.path.join(pg.dir, f"upsert-{table}.sql")
    env = pg.tcp_env()
    if is_async:
        env["PGOPTIONS"] = "-c synchronous_commit=off"
    with open(script, "w") as f:
        f.write(UPSERT.format(t=table))
    os.chmod(script, 0o644)
    out = subprocess.run([os.path.join(pg.bin, "pgbench"), "-n", "-f", script,
                          "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
                          db], env=env, check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    return tps, lat


def upserts(pg):
    db = pg.createdb()
    for t, kind in (("lo_logged", ""), ("lo_unlogged", "UNLOGGED ")):
        pg.psql(f"CREATE {kind}TABLE {t}(k text PRIMARY KEY, failures integer NOT NULL, "
                f"first_at timestamptz NOT NULL); ALTER TABLE {t} OWNER TO postern", db)
    print("# lock-out counter upsert (INSERT ... ON CONFLICT DO UPDATE, 10,000 keys, one "
          "transaction each), pgbench as role postern over 127.0.0.1, 10 s each: "
          "tps and mean latency")
    print(f"{'settings':>34} {'clients':>7} {'logged tps':>10} {'ms':>6} "
          f"{'unlogged tps':>12} {'ms':>6} {'ratio':>6}  {'logged, async commit tps':>24} {'ms':>6}")
    for label, settings in (("pgtest.sh: fsync, sync_commit off", None),
                            ("defaults: fsync, sync_commit on",
                             {"fsync": "on", "synchronous_commit": "on",
                              "full_page_writes": "on"})):
        if settings:
            for k, v in settings.items():
                pg.psql(f"ALTER SYSTEM SET {k} = {v}")
            pg.psql("SELECT pg_reload_conf()")
            got = pg.psql("SELECT current_setting('fsync') || current_setting('synchronous_commit')")
            assert got == "onon", got
        for clients in (1, 20):
            lt, ll = pgbench(pg, db, "lo_logged", clients)
            ut, ul = pgbench(pg, db, "lo_unlogged", clients)
            at, al = pgbench(pg, db, "lo_logged", clients, is_async=True)
            print(f"{label:>34} {clients:>7} {lt:>10.0f} {ll:>6.2f} {ut:>12.0f} {ul:>6.2f}"
                  f" {ut / lt:>6.2f}  {at:>24.0f} {al:>6.2f}", flush=True)


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (the PostgreSQL harness and smtp-source's users)")
    for f in (sb.POSTERND, sb.POSTERNCTL):
        if not os.access(f, os.X_OK):
            raise SystemExit(f"{f}: missing (make all)")
    base = tempfile.mkdtemp(prefix="postern-dirbench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    pg = Pg()
    only = os.environ.get("BENCH_ONLY", "")
    try:
        print(f"# {os.cpu_count()} cores; posternd {sb.POSTERND}; PostgreSQL "
              f"{pg.psql('SHOW server_version')} on 127.0.0.1")
        if only in ("", "smtp"):
            smtp_loads(base, pg)
        if only in ("", "latency"):
            latencies(base, pg)
        if only in ("", "upsert"):
            upserts(pg)
    finally:
        pg.stop()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
