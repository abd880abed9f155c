"""IMAP: postern against Dovecot on the same machine, same run, each over
its own fresh copy of the same Maildir.

  fetch    FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE) of FETCH_N messages
           (a client's first sync of a folder), the second run of it in
           the same session (what a server keeps cached), seconds
  search   SEARCH TEXT of a word in one message in FETCH_N (full-text
           over every body, no FTS index on either side), seconds
  select   SELECT of a SELECT_N-message folder whose index exists (the
           folder was opened once before), seconds
  append   APPEND of APPEND_N 2 KiB messages (LITERAL+, one at a time),
           messages per second
  idle     memory per logged-in session with INBOX selected, at
           SESSIONS sessions: the growth of the sum of every server
           process's PSS, divided by SESSIONS, KiB

Medians over ROUNDS (these machines are noisy) and the ratio
postern/Dovecot (for times, Dovecot/postern: above 1 means postern is
faster).  Loopback only; run as root (Dovecot needs it): make bench.
"""
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests/proto"))
import imapdiff  # noqa: E402

POSTERND = os.path.join(TOP, "bin/posternd")
POSTERNCTL = os.path.join(TOP, "bin/posternctl")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
FETCH_N = int(os.environ.get("IMAP_FETCH_N", "10000"))
SELECT_N = int(os.environ.get("IMAP_SELECT_N", "100000"))
APPEND_N = int(os.environ.get("IMAP_APPEND_N", "1000"))
SESSIONS = int(os.environ.get("IMAP_SESSIONS", "1000"))
USER, PASSWORD = "alice@example.test", "pw"
# the one message (a multipart one: i % 3 != 0) whose body has the word
NEEDLE = next(i for i in range(FETCH_N // 2, FETCH_N) if i % 3)
P_PORT, D_PORT = 2820, 2821
DOVECOT_EXTRA = f"""mail_max_userip_connections = {SESSIONS + 100}
service imap {{
  process_limit = {SESSIONS + 100}
}}
service imap-login {{
  process_limit = {SESSIONS + 100}
}}
default_client_limit = {SESSIONS + 100}
service auth {{
  client_limit = {3 * SESSIONS + 400}
}}
service anvil {{
  client_limit = {3 * SESSIONS + 400}
}}
"""

BODY = "".join(f"line {i} of a message body, some words to fill it up\r\n" for i in range(30))


def message(i):
    if i % 3 == 0:
        return (f"From: Sender {i} <s{i}@remote.example>\r\nTo: alice@example.test\r\n"
                f"Subject: message {i}\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                f"Message-ID: <{i}@bench>\r\n\r\n{BODY}").encode()
    return (f"From: Sender {i} <s{i}@remote.example>\r\nTo: alice@example.test\r\n"
            f"Subject: message {i}\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
            f"Message-ID: <{i}@bench>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n"
            f"--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY}"
            f"{'needle' if i == NEEDLE else ''}\r\n"
            f"--b{i}\r\nContent-Type: application/pdf; name=\"f{i}.pdf\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29ybGQ=\r\n--b{i}--\r\n").encode()


def make_maildir(path, n):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    t0 = 1700000000
    for i in range(n):
        data = message(i)
        p = os.path.join(path, "cur", f"{t0 + i}.M{i:06d}P1.bench,S={len(data)}:2,S")
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (t0 + i, t0 + i))


def start_postern(base, master):
    d = os.path.join(base, f"p{time.time_ns()}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    conf = os.path.join(d, "postern.conf")
    with open(conf, "w") as f:
        f.write(f"hostname = bench.example\ndata_dir = {d}/data\nuser = nobody\n"
                f"smtp_listen = 127.0.0.1:{P_PORT + 10}\nsubmission_listen =\n"
                f"imap_listen = 127.0.0.1:{P_PORT}\nimap_allow_plaintext = yes\n"
                f"max_sessions = {SESSIONS + 100}\nmax_sessions_per_ip = {SESSIONS + 100}\n"
                f"imap_max_sessions_per_ip = {SESSIONS + 100}\n"
                f"imap_max_sessions_per_user = {SESSIONS + 100}\n"
                "log_level = warn\ndns_servers = 127.0.0.1:9\n")
    subprocess.run([POSTERNCTL, "-c", conf, "domain", "add", "example.test"], check=True,
                   capture_output=True)
    subprocess.run([POSTERNCTL, "-c", conf, "user", "add", USER],
                   input=PASSWORD.encode() + b"\n", check=True, capture_output=True)
    md = os.path.join(d, "data/mail/example.test/alice/Maildir")
    os.makedirs(os.path.dirname(md))
    shutil.copytree(master, md)
    subprocess.run(["chown", "-R", "nobody", os.path.join(d, "data")], check=True)
    p = subprocess.Popen([POSTERND, "-f", "-c", conf], stderr=open(os.path.join(d, "log"), "w"))
    imapdiff.wait_port(P_PORT)
    return p, d


class Server:
    def __init__(self, kind, base, master):
        self.kind = kind
        if kind == "postern":
            self.proc, self.dir = start_postern(base, master)
            self.port = P_PORT
        else:
            self.dv = imapdiff.Dovecot(base, master, USER, PASSWORD, DOVECOT_EXTRA, D_PORT)
            self.port = D_PORT
            self.dir = self.dv.dir

    def pids(self):
        if self.kind == "postern":
            return [self.proc.pid]
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        return [int(l.split()[0]) for l in out.splitlines()[1:]
                if "dovecot" in l or re.search(r"\bimap(-login)?\b", l)]

    def pss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for l in f:
                        if l.startswith("Pss:"):
                            total += int(l.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        if self.kind == "postern":
            self.proc.terminate()
            self.proc.wait(60)
        else:
            self.dv.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def login(port):
    c = imapdiff.Conn(port, timeout=300)
    r = c.command(f'LOGIN "{USER}" "{PASSWORD}"')
    assert r[-1].split(b" ")[1] == b"OK", r
    return c


def ok(lines):
    assert lines[-1].split(b" ")[1] == b"OK", lines[-1]
    return lines


def timed(c, cmd):
    t0 = time.monotonic()
    r = ok(c.command(cmd))
    return time.monotonic() - t0, r


def bench_fetch(srv):
    c = login(srv.port)
    ok(c.command("SELECT INBOX"))
    t1, r = timed(c, "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)")
    assert len(r) == FETCH_N + 1, len(r)
    t2, _ = timed(c, "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)")
    t3, r = timed(c, "SEARCH TEXT needle")
    assert r[0] == b"* SEARCH %d" % (NEEDLE + 1), r[0]
    c.close()
    return t1, t2, t3


def bench_select(srv):
    c = login(srv.port)
    ok(c.command("SELECT INBOX"))  # builds the index
    c.close()
    c = login(srv.port)
    t, r = timed(c, "SELECT INBOX")
    assert b"* %d EXISTS" % SELECT_N in r, r
    c.close()
    return t


def bench_append(srv):
    c = login(srv.port)
    ok(c.command("CREATE Bench"))
    data = message(1)
    t0 = time.monotonic()
    for _ in range(APPEND_N):
        ok(c.command(b"APPEND Bench {%d+}\r\n" % len(data) + data))
    t = time.monotonic() - t0
    c.close()
    return APPEND_N / t


def bench_idle(srv):
    time.sleep(1)
    before = srv.pss_kib()
    conns = []
    for _ in range(SESSIONS):
        c = login(srv.port)
        ok(c.command("SELECT INBOX"))
        conns.append(c)
    time.sleep(2)
    after = srv.pss_kib()
    for c in conns:
        c.close()
    return (after - before) / SESSIONS


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (Dovecot needs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    base = tempfile.mkdtemp(prefix="postern-imap-bench-",
                            dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    small, big = os.path.join(base, "small"), os.path.join(base, "big")
    make_maildir(small, FETCH_N)
    make_maildir(big, SELECT_N)
    res = {k: {"postern": [], "dovecot": []} for k in
           ("fetch", "fetch2", "search", "select", "append", "idle")}
    try:
        for _ in range(ROUNDS):
            for kind in ("postern", "dovecot"):
                os.sync()
                srv = Server(kind, base, small)
                try:
                    f1, f2, s = bench_fetch(srv)
                    res["fetch"][kind].append(f1)
                    res["fetch2"][kind].append(f2)
                    res["search"][kind].append(s)
                    res["append"][kind].append(bench_append(srv))
                    res["idle"][kind].append(bench_idle(srv))
                finally:
                    srv.stop()
                os.sync()
                srv = Server(kind, base, big)
                try:
                    res["select"][kind].append(bench_select(srv))
                finally:
                    srv.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"# IMAP, postern vs Dovecot, {ROUNDS} rounds, medians")
    rows = [("fetch", f"FETCH (FLAGS ENVELOPE BODYSTRUCTURE) x{FETCH_N}, first, s", True),
            ("fetch2", "the same FETCH again, s", True),
            ("search", f"SEARCH TEXT over {FETCH_N}, s", True),
            ("select", f"SELECT of {SELECT_N}, index exists, s", True),
            ("append", "APPEND, messages/s", False),
            ("idle", f"PSS per selected session at {SESSIONS}, KiB", True)]
    for key, what, lower_is_better in rows:
        p = statistics.median(res[key]["postern"])
        d = statistics.median(res[key]["dovecot"])
        ratio = (d / p if lower_is_better else p / d) if p and d else float("nan")
        print(f"{what:50s} postern {p:10.3f}  dovecot {d:10.3f}  postern better by {ratio:.2f}x")


if __name__ == "__main__":
    main()
