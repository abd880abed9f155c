"""postern vs Postfix: durable SMTP-to-Maildir throughput and memory.

For each load (20 sessions; 1 KiB and 100 KiB messages; 1 and 10
recipients) both servers get the same smtp-source run.  postern answers
250 only after every copy is fsync'd in the Maildirs, so its rate is
messages / smtp-source time.  Postfix answers 250 once the message is in
its queue, so its rate is messages / time until every copy is in the
Maildirs.  Each load runs ROUNDS times, alternating servers; medians are
printed with the ratio.  Then 1,000 idle sessions are opened against each
server and the memory (PSS) of all its processes is compared.

Bounded: every run has a message count and a timeout; all traffic goes to
127.0.0.1; DNS lookups are off in both servers.
"""
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTERND = os.path.join(TOP, "bin/posternd")
POSTERNCTL = os.path.join(TOP, "bin/posternctl")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SESSIONS = 20
USERS = ["alice"] + [f"{i}alice" for i in range(1, 11)]
LOADS = [  # (message size, recipients, messages)
    (1024, 1, 3000),
    (1024, 10, 1000),
    (102400, 1, 1000),
    (102400, 10, 300),
]
# Relay: (message size, messages); long enough that start-up and the last
# poll are a small part of each run.
RELAY_LOADS = [(1024, 5000), (102400, 1500)]
P_PORT, F_PORT = 2725, 2726


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def count_files(root):
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        if dirpath.endswith("/new"):
            n += len(files)
    return n


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def descendants(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children = {}
    for line in out.split("\n"):
        if line.strip():
            p, pp = map(int, line.split())
            children.setdefault(pp, []).append(p)
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children.get(p, [])
    return seen


class Postern:
    name = "postern"
    # For subclasses (bench/dir_bench.py): config lines added to every
    # run's file, and a step before the users are added.
    extra_conf = ""

    def __init__(self, base):
        self.base = base
        self.proc = None
        self.relay_sink = None

    def prepare(self):
        pass

    def ready(self):
        """After the domain and users exist, before posternd starts."""

    def start(self, run):
        port_free(P_PORT)
        self.data = os.path.join(self.base, f"p{run}")
        os.makedirs(self.data)
        os.chmod(self.data, 0o755)
        self.conf = os.path.join(self.data, "postern.conf")
        with open(self.conf, "w") as f:
            f.write(f"hostname = postern-bench.example\ndata_dir = {self.data}/d\n"
                    f"user = nobody\nsmtp_listen = 127.0.0.1:{P_PORT}\nsubmission_listen =\n"
                    "max_sessions = 2000\nmax_sessions_per_ip = 2000\nlog_level = warn\n"
                    "message_size_limit = 20M\n")
            if getattr(self, "relay_sink", None):
                f.write(f"relayhost = [127.0.0.1]:{self.relay_sink}\n"
                        "relay = addresses\nrelay_addresses = 127.0.0.0/8\n"
                        "smtp_max_connections_per_domain = 20\n"
                        "dns_servers = 127.0.0.1:9\n")
            else:
                f.write("dns_servers = 127.0.0.1:9\n")
            f.write(self.extra_conf)
        self.prepare()
        sh(POSTERNCTL, "-c", self.conf, "domain", "add", "example.test")
        for u in USERS:
            sh(POSTERNCTL, "-c", self.conf, "user", "add", f"{u}@example.test", input="pw\n")
        self.ready()
        self.log = open(os.path.join(self.data, "log"), "w")
        self.proc = subprocess.Popen([POSTERND, "-f", "-c", self.conf], stderr=self.log)
        wait_port(P_PORT)

    def delivered(self):
        return count_files(os.path.join(self.data, "d/mail"))

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


class Postfix:
    name = "postfix"

    def __init__(self, base):
        self.base = base

    def start(self, run):
        port_free(F_PORT)
        self.dir = os.path.join(self.base, f"f{run}")
        sh(os.path.join(TOP, "bench/postfix_instance.sh"), self.dir, str(F_PORT), *USERS)
        wait_port(F_PORT)

    def delivered(self):
        return count_files(os.path.join(self.dir, "mail"))

    def pids(self):
        with open(os.path.join(self.dir, "queue/pid/master.pid")) as f:
            return descendants(int(f.read()))

    def stop(self):
        subprocess.run(["postfix", "-c", os.path.join(self.dir, "etc"), "stop"],
                       capture_output=True)
        time.sleep(1)


def port_free(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return
    raise SystemExit(f"port {port} is busy: a server from an earlier run is still there")


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


def settle():
    """Lets the previous run's writes and discards finish, so that each
    server starts on a quiet disk (both get the same treatment)."""
    os.sync()
    time.sleep(2)


def load(server, port, size, rcpts, count):
    settle()
    server.start(f"{size}-{rcpts}-{time.time_ns()}")
    expect = count * rcpts
    t0 = time.monotonic()
    subprocess.run(["smtp-source", "-s", str(SESSIONS), "-m", str(count), "-l", str(size),
                    "-r", str(rcpts), "-f", "bench@remote.example", "-t", "alice@example.test",
                    f"127.0.0.1:{port}"], check=True, timeout=600)
    t_sent = time.monotonic()
    deadline = t0 + 600
    while server.delivered() < expect and time.monotonic() < deadline:
        time.sleep(0.02)
    t_done = time.monotonic()
    got = server.delivered()
    peak = server.peak_rss_kib() if hasattr(server, "peak_rss_kib") else 0
    server.stop()
    if got < expect:
        raise SystemExit(f"{server.name}: only {got} of {expect} copies delivered")
    return count / (t_done - t0), peak


def queue_files_postern(server):
    d = os.path.join(server.data, "d/queue/entries")
    return len([f for f in os.listdir(d) if f.endswith(".msg")]) if os.path.isdir(d) else 0


def queue_files_postfix(server):
    n = 0
    for sub in ("maildrop", "incoming", "active", "deferred"):
        for _dp, _dn, files in os.walk(os.path.join(server.dir, "queue", sub)):
            n += len(files)
    return n


def relay_load(server, port, sink_port, size, count, sender="bench@remote.example",
               sessions=None, accepted=None):
    """Remote mail: accepted, queued, relayed to smtp-sink, dequeued.
    sender: the envelope sender and From: (bench/auth_bench.py signs).
    sessions: smtp-source's sessions (default SESSIONS); accepted, a list:
    gets the seconds smtp-source took (the client's view, every message
    acknowledged)."""
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(sink_port)
    os.environ["RELAYHOST"] = f"[127.0.0.1]:{sink_port}"
    server.relay_sink = sink_port
    settle()
    server.start(f"relay-{size}-{time.time_ns()}")
    t0 = time.monotonic()
    subprocess.run(["smtp-source", "-s", str(sessions or SESSIONS), "-m", str(count),
                    "-l", str(size), "-f", sender, "-t", "someone@elsewhere.example",
                    f"127.0.0.1:{port}"], check=True, timeout=600)
    if accepted is not None:
        accepted.append(time.monotonic() - t0)
    count_fn = (queue_files_postern if server.name.startswith("postern")
                else queue_files_postfix)
    deadline = t0 + 600
    t_done = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if count_fn(server) > 0:
            t_done = None
        elif t_done is None:
            t_done = now  # empty; confirmed by the next look (Postfix
        else:             # renames files between its queue directories)
            break
        time.sleep(0.01)
    t_done = t_done or time.monotonic()
    left = count_fn(server)
    server.stop()
    server.relay_sink = None
    del os.environ["RELAYHOST"]
    sink.terminate()
    sink.wait()
    if left:
        raise SystemExit(f"{server.name}: {left} messages still queued")
    return count / (t_done - t0)


def idle_sessions(server, port, n=1000):
    server.start(f"idle-{time.time_ns()}")
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        socks.append(s)
    for s in socks:
        s.recv(512)
        s.sendall(b"EHLO idle.example\r\nMAIL FROM:<a@remote.example>\r\n")
    time.sleep(3)
    mem = pss_kib(server.pids())
    nproc = len(server.pids())
    for s in socks:
        s.close()
    server.stop()
    return mem, nproc


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (Postfix needs it): sudo make bench")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = tempfile.mkdtemp(prefix="postern-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    p, f = Postern(base), Postfix(base)
    print(f"# {ROUNDS} rounds per load, {SESSIONS} sessions; msg/s = messages fully "
          "delivered to Maildir per second (median)")
    print(f"{'size':>7} {'rcpt':>4} {'msgs':>5} {'postern':>9} {'postfix':>9} {'ratio':>6}"
          f" {'postern peak RSS':>17}")
    only = os.environ.get("BENCH_ONLY", "")
    for size, rcpts, count in LOADS if only in ("", "maildir") else []:
        pr, fr, peaks = [], [], []
        for _ in range(ROUNDS):
            rate, peak = load(p, P_PORT, size, rcpts, count)
            pr.append(rate)
            peaks.append(peak)
            fr.append(load(f, F_PORT, size, rcpts, count)[0])
        pm, fm = statistics.median(pr), statistics.median(fr)
        print(f"{size:>7} {rcpts:>4} {count:>5} {pm:>9.0f} {fm:>9.0f} {pm / fm:>6.2f}"
              f" {max(peaks) / 1024:>13.1f} MiB", flush=True)
    print("# relay: accepted for a remote domain, queued, delivered to a local "
          "smtp-sink, removed from the queue (msg/s, median)")
    print(f"{'size':>7} {'msgs':>5} {'postern':>9} {'postfix':>9} {'ratio':>6}"
          "  rounds: postern / postfix")
    for size, count in RELAY_LOADS if only in ("", "relay") else []:
        pr, fr = [], []
        for _ in range(ROUNDS):
            pr.append(relay_load(p, P_PORT, 2727, size, count))
            fr.append(relay_load(f, F_PORT, 2727, size, count))
        pm, fm = statistics.median(pr), statistics.median(fr)
        each = " ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(pr, fr))
        print(f"{size:>7} {count:>5} {pm:>9.0f} {fm:>9.0f} {pm / fm:>6.2f}  {each}", flush=True)
    if only:
        subprocess.run(["rm", "-rf", base])
        return
    pm, pn = idle_sessions(p, P_PORT)
    fm, fn = idle_sessions(f, F_PORT)
    print(f"# 1,000 idle sessions: postern {pm / 1024:.1f} MiB PSS in {pn} process(es); "
          f"postfix {fm / 1024:.1f} MiB PSS in {fn} processes; ratio {fm / max(pm, 1):.1f}x")
    subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
