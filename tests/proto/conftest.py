"""Fixtures for protocol tests: each test gets a real posternd (the
ASan+UBSan build from `make test`) on loopback ports chosen by the kernel,
with its own data_dir, SQLite directory and TLS certificate.  At teardown
the daemon is stopped with SIGTERM and its log must hold no sanitizer
report.

PostgreSQL: make_server(directory="postgresql") (or pg=CLUSTER) gives the
server a fresh database of its own on a private cluster (tests/pg/pgtest.sh,
one per session, the `pg` fixture), schema made by `posternctl db init`;
make_server(db=other.dbname, pg=...) shares another server's database (two
nodes, one directory).  POSTERN_TEST_DIRECTORY=postgresql makes that every
server's default, so any test file runs against PostgreSQL; tests that only
mean something for SQLite's file are marked @sqlite_only(why)."""
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSTERND = os.environ.get("POSTERND", os.path.join(ROOT, "build/asan/posternd"))
POSTERNCTL = os.environ.get("POSTERNCTL", os.path.join(ROOT, "build/asan/posternctl"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

PGTEST = os.path.join(ROOT, "tests/pg/pgtest.sh")
# The directory a Server gets unless the test asks for one.
DIRECTORY = os.environ.get("POSTERN_TEST_DIRECTORY", "sqlite")
if DIRECTORY not in ("sqlite", "postgresql"):
    raise SystemExit("POSTERN_TEST_DIRECTORY: sqlite or postgresql, not %r" % DIRECTORY)

os.environ.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


def run_user():
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def sqlite_only(why):
    """Marks a test that is about SQLite's own file (corrupting it, old
    schemas, its locks): skipped when the run is against PostgreSQL."""
    return pytest.mark.skipif(DIRECTORY != "sqlite", reason="SQLite directory only: " + why)


class PgCluster:
    """A private PostgreSQL cluster made by tests/pg/pgtest.sh in a temp
    dir: databases for servers, a superuser psql over its socket, and a
    stop and start of the same cluster (an outage) for the tests that
    need one."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-pg-")
        self.n = 0
        r = subprocess.run([PGTEST, "start", self.dir], capture_output=True, text=True,
                           timeout=180)
        if r.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AssertionError("pgtest.sh start: " + r.stderr)
        with open(os.path.join(self.dir, "conninfo")) as f:
            self.conninfo = f.read().strip()
        self.passfile = os.path.join(self.dir, "passfile")
        self.env = dict(os.environ)
        with open(os.path.join(self.dir, "env")) as f:
            for k, v in re.findall(r"^export (\w+)='?([^'\n]*)'?$", f.read(), re.M):
                self.env[k] = v
        self.bin = self.env["PGBIN"]

    def createdb(self):
        self.n += 1
        name = f"t{os.getpid()}_{self.n}"
        r = subprocess.run([PGTEST, "createdb", self.dir, name], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "pgtest.sh createdb: " + r.stderr
        return name

    def config(self, dbname):
        """The config keys of a server whose directory is database dbname."""
        return {"directory": "postgresql",
                "pg_conninfo": f"{self.conninfo} dbname={dbname}",
                "pg_passfile": self.passfile}

    def psql(self, sql, db="postgres", check=True):
        """Runs sql as the superuser (over the cluster's socket); its
        output, unaligned, tuples only."""
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-d", db],
                           input=sql, env=self.env, capture_output=True, text=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {r.stderr}")
        return r.stdout

    @contextlib.contextmanager
    def locked(self, db, tables):
        """Holds an ACCESS EXCLUSIVE lock on tables of database db (a
        psql session in a transaction) until the block ends: every
        query on them waits."""
        p = subprocess.Popen([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                              "-v", "ON_ERROR_STOP=1", "-d", db],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=self.env, text=True)
        try:
            p.stdin.write(f"BEGIN;\nLOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE;\n"
                          "\\echo locked\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "locked", "psql could not lock"
            yield
        finally:
            try:
                p.stdin.write("ROLLBACK;\n")
                p.stdin.close()
            except BrokenPipeError:
                pass
            p.wait(60)

    def dropdb(self, name):
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)

    def pg_ctl(self, *args):
        cmd = [os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postern-pgtest", "--"] + cmd
        r = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"pg_ctl {args}: {r.stdout} {r.stderr}"

    def down(self, mode="fast"):
        """Stops the server (the cluster stays): an outage."""
        self.pg_ctl("-m", mode, "-w", "stop")

    def up(self):
        """Starts the same cluster again, same port."""
        self.pg_ctl("-l", os.path.join(self.dir, "log"), "-w", "-t", "60", "start")

    def stop(self):
        subprocess.run([PGTEST, "stop", self.dir], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    """The session's PostgreSQL cluster (started on first use)."""
    c = PgCluster()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    key, crt = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "30", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def free_port(ip="127.0.0.1", kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Test DNS: every name the tests use, served by dnsmasq on loopback.  Each
# posternd under test queries only this server (dns_servers), never the
# machine's resolver.
DNS_HOSTS = {
    "mx1.remote.example": "127.0.0.2",
    "mx1.backup.example": "127.0.0.3",   # nothing listens: refused
    "mx2.backup.example": "127.0.0.4",
    "mx1.tempmx.example": "127.0.0.5",   # answers 451 to MAIL
    "mx2.tempmx.example": "127.0.0.6",
    "implicit.example": "127.0.0.7",     # no MX: its A record is used
    "mx1.refuse.example": "127.0.0.8",   # 550 to RCPT
    "mx1.retry.example": "127.0.0.9",    # 451 once, then accepts
    "mx1.down.example": "127.0.0.10",    # nothing listens
    "mx1.tls.example": "127.0.0.14",     # offers STARTTLS
}
DNS_MX = [
    ("remote.example", "mx1.remote.example", 10),
    ("backup.example", "mx1.backup.example", 10),
    ("backup.example", "mx2.backup.example", 20),
    ("tempmx.example", "mx1.tempmx.example", 10),
    ("tempmx.example", "mx2.tempmx.example", 20),
    ("refuse.example", "mx1.refuse.example", 10),
    ("retry.example", "mx1.retry.example", 10),
    ("down.example", "mx1.down.example", 10),
    ("tls.example", "mx1.tls.example", 10),
]


@pytest.fixture(scope="session")
def dns():
    port = free_port(kind=socket.SOCK_DGRAM)
    args = ["dnsmasq", "-k", "-p", str(port), "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/example/",
            "--dns-rr=nullmx.example,15,000000", "--log-facility=-"]
    if os.geteuid() == 0:
        args.append("--user=root")
    for name, host, pref in DNS_MX:
        args.append(f"--mx-host={name},{host},{pref}")
    for name, ip in DNS_HOSTS.items():
        args.append(f"--host-record={name},{ip}")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise AssertionError("dnsmasq failed: " + proc.stderr.read().decode())
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def sink_port():
    return free_port("127.0.0.2")


class Server:
    """One posternd instance and helpers to inspect what it stored."""

    def __init__(self, base, cert, extra, dns="", sink_port=25, pg=None, dbname=None):
        self.base = base
        # PostgreSQL: the cluster and this server's database (shared by
        # the servers given the same dbname); None for SQLite.
        self.pg, self.dbname = pg, dbname
        self.data = os.path.join(base, "data")
        self.conf = os.path.join(base, "postern.conf")
        self.logpath = os.path.join(base, "posternd.log")
        self.cert, self.key = cert
        self.extra = dict(extra)
        self.dns, self.sink_port = dns, sink_port
        self.proc = None
        self.ports = {}
        self.log_offset = 0
        self.write_conf()

    def write_conf(self):
        conf = {
            "hostname": "mx.example.test",
            "data_dir": self.data,
            "user": run_user(),
            "smtp_listen": "127.0.0.1:0",
            "submission_listen": "127.0.0.1:0",
            "submissions_listen": "127.0.0.1:0",
            "pop3_listen": "127.0.0.1:0",
            "pop3s_listen": "127.0.0.1:0",
            "tls_cert": self.cert,
            "tls_key": self.key,
            "log_level": "debug",
            "shutdown_timeout": "10s",
            "dns_servers": self.dns,
            "smtp_port": str(self.sink_port),
        }
        if self.pg is not None:
            conf.update(self.pg.config(self.dbname))
        conf.update(self.extra)
        with open(self.conf, "w") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def ctl(self, *args, input=None, check=True):
        r = subprocess.run([POSTERNCTL, "-c", self.conf, *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"posternctl {args}: {r.returncode} {r.stderr}")
        return r

    def db_init(self):
        """PostgreSQL: the schema, which only `posternctl db init` makes."""
        if self.pg is not None:
            self.ctl("db", "init")

    def psql(self, sql, check=True):
        """PostgreSQL: sql run as the superuser in this server's database."""
        assert self.pg is not None, "not a PostgreSQL directory"
        return self.pg.psql(sql, db=self.dbname, check=check)

    @contextlib.contextmanager
    def directory_locked(self):
        """Holds a lock that makes every directory lookup wait until the
        block ends (SQLite: an exclusive transaction on the file;
        PostgreSQL: the tables locked).  The lookup's own timeout still
        applies: directory_timeout (and pg_query_timeout)."""
        if self.pg is not None:
            with self.pg.locked(self.dbname, ("domains", "host_aliases", "users")):
                yield
            return
        db = sqlite3.connect(os.path.join(self.data, "postern.db"), isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()

    def populate(self):
        self.ctl("domain", "add", "example.test")
        self.ctl("domain", "alias", "add", "mail.example.test", "example.test")
        for u in ("alice", "bob", "carol", "postmaster"):
            self.ctl("user", "add", f"{u}@example.test", input="secret-" + u + "\n")
        self.ctl("alias", "add", "info@example.test", "alice@example.test", "bob@example.test")
        self.ctl("alias", "add", "fwd@example.test", "someone@remote.example")
        self.ctl("list", "add", "team@example.test")
        self.ctl("list", "member-add", "team@example.test", "alice@example.test",
                 "carol@example.test", "info@example.test")

    def start(self, foreground=True, wait=True):
        self.logf = open(self.logpath, "ab")
        self.log_offset = self.logf.tell()
        args = [POSTERND, "-c", self.conf] + (["-f"] if foreground else [])
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=self.logf)
        if wait:
            self.wait_started()
        return self.proc

    def wait_started(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = self.log()[self.log_offset:]
            if "event=start " in log:
                self.ports = {}
                for kind, port in re.findall(r"event=listen kind=(\w+) addr=127\.0\.0\.1:(\d+)", log):
                    self.ports[kind] = int(port)
                return
            if self.proc.poll() is not None:
                raise AssertionError("posternd exited:\n" + log)
            time.sleep(0.05)
        raise AssertionError("posternd did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("posternd did not stop on SIGTERM:\n" + self.log())
        self.logf.close()
        return self.proc.returncode

    def maildir(self, user, domain="example.test"):
        return os.path.join(self.data, "mail", domain, user, "Maildir")

    def messages(self, user, domain="example.test"):
        """Contents of new/ (bytes), oldest name first."""
        d = os.path.join(self.maildir(user, domain), "new")
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
        return out

    def all_files(self):
        """Every file under mail/ (tmp, new and cur), as paths."""
        found = []
        for root, _dirs, files in os.walk(os.path.join(self.data, "mail")):
            found += [os.path.join(root, f) for f in files]
        return found

    def check_sanitizers(self):
        log = self.log()
        for m in SANITIZER_MARKERS:
            assert m not in log, "sanitizer report in posternd log:\n" + log


def new_server(tmp_path_factory, cert, extra=None, populate=True, start=True,
               dns="", sink_port=25, pg=None, dbname=None, db_init=True):
    """pg (a PgCluster) with dbname: that database, whose schema `db init`
    makes first unless db_init is False (a second node on a database
    another server set up)."""
    base = tempfile.mkdtemp(prefix="postern-test-")
    os.chmod(base, 0o755)  # the daemon runs as an unprivileged user
    s = Server(base, cert, extra or {}, dns, sink_port, pg, dbname)
    if db_init:
        s.db_init()
    if populate:
        s.populate()
    if start:
        s.start()
    return s


@pytest.fixture
def make_server(request, tmp_path_factory, cert, dns, sink_port):
    """factory(extra, populate, start, directory=None, pg=None, db=None):
    directory "sqlite" or "postgresql" (None: POSTERN_TEST_DIRECTORY's);
    pg a PgCluster other than the session's (implies postgresql); db the
    name of an existing database to share (no db init: the server that
    made it did that; populate it only if asked)."""
    made, dbs = [], []

    def factory(extra=None, populate=True, start=True, directory=None, pg=None, db=None):
        if pg is not None or db is not None:
            directory = "postgresql"
        directory = directory or DIRECTORY
        assert directory in ("sqlite", "postgresql"), directory
        dbname, db_init = None, False
        if directory == "postgresql":
            pg = pg or request.getfixturevalue("pg")
            if db is None:
                dbname, db_init = pg.createdb(), True
                dbs.append((pg, dbname))
            else:
                dbname = db
        s = new_server(tmp_path_factory, cert, extra, populate, start, dns, sink_port,
                       pg, dbname, db_init)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()
        s.check_sanitizers()
        if s.pg is not None:  # it really ran on PostgreSQL
            assert not os.path.exists(os.path.join(s.data, "postern.db")), s.data
        shutil.rmtree(s.base, ignore_errors=True)
    for pg, name in dbs:
        pg.dropdb(name)


@pytest.fixture
def server(make_server):
    return make_server()


class Raw:
    """A plain socket SMTP client that sends exactly the bytes it is given."""

    def __init__(self, port, host="127.0.0.1", greet=True, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if greet:
            self.greeting = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply as text; lines joined by \\n."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closed the connection (after any data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def starttls(self, ctx):
        """Wraps the socket after a 220 to STARTTLS (or for port 465)."""
        assert self.buf == b"", "server sent data after the 220"
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def close(self):
        self.sock.close()


def tls_context(cert):
    ctx = ssl.create_default_context(cafile=cert[0])
    return ctx


class Sink:
    """A capture SMTP server (aiosmtpd) on one loopback address."""

    mails, first_mail = 0, None

    def _note(self, name, value):
        self.__dict__.setdefault(name, []).append(value)

    def __init__(self, ip, port, mode="ok", hostname=None, tls=None, fail_first=0,
                 data_delay=0):
        from aiosmtpd.controller import Controller
        self.messages = []
        self.data_delay, self.in_data = data_delay, False
        self.ehlos, self.active, self.max_active = 0, 0, 0
        # What peers did, in order: "EHLO"/"HELO" per greeting, MAIL
        # commands seen (and when the first came), and per message
        # whether it came over ESMTP (subclasses may skip __init__).
        self.greetings, self.sessions_esmtp = [], []
        self.mode, self.fail_first, self.attempts = mode, fail_first, 0
        kw = {}
        if tls is not None:
            kw["tls_context"] = tls
            kw["require_starttls"] = False
        self.controller = Controller(self, hostname=ip, port=port,
                                     server_hostname=hostname or f"sink-{ip}", **kw)
        self.controller.start()

    async def handle_HELO(self, server, session, envelope, hostname):
        self._note("greetings", "HELO")
        self._note("greeting_peers", session.peer)
        session.host_name = hostname
        return "250 " + server.hostname

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        self._note("greetings", "EHLO")
        self._note("greeting_peers", session.peer)
        if self.mode == "noehlo":
            return ["502 5.5.1 EHLO not implemented"]
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mails += 1
        if self.first_mail is None:
            self.first_mail = time.monotonic()
        if self.mode == "mail451":
            return "451 4.3.0 MAIL temporarily refused"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if self.mode == "rcpt550":
            return "550 5.1.1 <%s>: no such user here" % address
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return "451 4.2.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.data_delay:
            import asyncio
            self.in_data = True
            await asyncio.sleep(self.data_delay)
        self.active -= 1
        self._note("sessions_esmtp", session.extended_smtp)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "data": envelope.original_content,
                              "tls": session.ssl is not None})
        return "250 2.0.0 OK captured"

    def stop(self):
        if self.controller._thread is not None:
            self.controller.stop()


@pytest.fixture
def sinks(sink_port):
    made = []

    def factory(ip, **kw):
        s = Sink(ip, sink_port, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def fifo_cert(cert):
    """A copy of the test certificate in a directory the run user can
    reach, and a way to make the certificate a FIFO that blocks whoever
    opens it until release() writes the real one into it."""
    d = tempfile.mkdtemp(prefix="postern-pools-")
    os.chmod(d, 0o755)
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    shutil.copy(cert[0], crt)
    shutil.copy(cert[1], key)
    os.chmod(crt, 0o644)
    os.chmod(key, 0o644)
    with open(crt, "rb") as f:
        pem = f.read()

    class Fifo:
        paths = {"tls_cert": crt, "tls_key": key}

        def block(self):
            os.unlink(crt)
            os.mkfifo(crt, 0o644)

        def release(self, wait=10):
            # The reader (the reload) is waiting in open(): a
            # non-blocking open for writing succeeds once it is there.
            # wait=0: one try (the reader may be gone); True if it was
            # there.
            deadline = time.time() + wait
            while True:
                try:
                    fd = os.open(crt, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:
                    if time.time() >= deadline:
                        assert wait == 0, "nobody reads the FIFO"
                        os.unlink(crt)
                        with open(crt, "wb") as f:
                            f.write(pem)
                        return False
                    time.sleep(0.05)
            os.set_blocking(fd, True)
            os.write(fd, pem)
            os.close(fd)
            os.unlink(crt)
            with open(crt, "wb") as f:
                f.write(pem)
            return True

    yield Fifo()
    shutil.rmtree(d, ignore_errors=True)


# ---- the web admin (src/admin) ------------------------------------------

ADMIN_PASSWORD = "admin-secret-1"


class Admin:
    """An HTTPS client of posternd's admin listener (http.client, the
    test certificate trusted), keeping the session cookie like a browser
    and reading each page's CSRF token for the next POST."""

    def __init__(self, server, port=None):
        self.server = server
        self.port = port or server.ports["admin"]
        self.ctx = ssl.create_default_context(cafile=server.cert)
        self.cookie = None
        self.csrf = None

    def request(self, method, path, body=None, headers=None, cookie=True):
        import http.client
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                        timeout=30)
        h = dict(headers or {})
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        if isinstance(body, dict):
            import urllib.parse
            body = urllib.parse.urlencode(body)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read().decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in r.getheaders()}
        set_cookie = r.getheader("Set-Cookie")
        c.close()
        if set_cookie and set_cookie.startswith("postern_session="):
            value = set_cookie.split(";", 1)[0]
            self.cookie = None if value == "postern_session=" else value
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', data)
        if m:
            self.csrf = m.group(1)
        return r.status, headers, data

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, fields, csrf=True):
        if csrf and self.csrf is None:
            self.get("/")
        f = dict(fields)
        if csrf:
            f.setdefault("csrf", self.csrf)
        return self.request("POST", path, f)

    def login(self, name="boss", password=ADMIN_PASSWORD, home=None):
        st, h, body = self.request("POST", "/login", {"name": name, "password": password})
        if home is None:  # a domain admin's ("dom"): its users
            home = "/users" if name == "dom" else "/"
        assert st == 303 and h.get("location") == home, (st, h, body)
        self.get(home)
        return self

    def follow(self, result):
        """After a 303: the page it points to."""
        st, h, body = result
        assert st == 303, (st, body)
        return self.get(h["location"])

    def api(self, method, path, token, body=None):
        import json
        h = {"Authorization": "Bearer " + token}
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        st, hd, data = self.request(method, path, body, h, cookie=False)
        try:
            return st, json.loads(data) if data else None
        except ValueError:
            return st, data


@pytest.fixture
def admin_server(make_server):
    """A server with the admin listener on a free loopback port, a full
    admin "boss" and a domain admin "dom" of example.test."""
    def factory(extra=None, **kw):
        e = {"admin_listen": "127.0.0.1:0"}
        e.update(extra or {})
        s = make_server(extra=e, start=False, **kw)
        s.ctl("admin", "add", "boss", input=ADMIN_PASSWORD + "\n")
        s.ctl("admin", "add", "dom", "--domain", "example.test", input=ADMIN_PASSWORD + "\n")
        s.start()
        return s
    return factory


class BlackHole:
    """A UDP socket on loopback that reads DNS queries and never answers
    (a resolver or a list that does not answer); counts what it read."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                self.sock.recv(4096)
                self.queries += 1
            except socket.timeout:
                pass
            except OSError:
                return

    @property
    def port(self):
        return self.sock.getsockname()[1]

    @property
    def server(self):
        """As dns_servers takes it."""
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


class ScriptMilter:
    """A libmilter milter (python3-milter, milter_script.py) that follows
    plan, on a Unix socket under base; seen() reads what it was told."""

    def __init__(self, base, plan, name="m"):
        self.sock = os.path.join(base, name + ".sock")
        self.logpath = os.path.join(base, name + ".jsonl")
        script = os.path.join(base, name + ".json")
        with open(script, "w") as f:
            json.dump(plan, f)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "milter_script.py"), self.sock,
             script, self.logpath], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.exists(self.sock), 10, "milter socket")
        os.chmod(self.sock, 0o777)  # posternd runs as the unprivileged user
        os.chmod(base, 0o755)

    def spec(self):
        return "unix:" + self.sock

    def seen(self, stage=None):
        try:
            with open(self.logpath) as f:
                recs = [json.loads(l) for l in f]
        except FileNotFoundError:
            return []
        return [r for r in recs if stage is None or r["stage"] == stage]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def milters():
    made = []
    # Not pytest's tmp_path: its parents are root's 0700, and posternd
    # runs as the unprivileged user.
    base = tempfile.mkdtemp(prefix="postern-milter-")
    os.chmod(base, 0o755)

    def factory(plan=None, name="m"):
        m = ScriptMilter(base, plan or {}, name)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.stop()
    shutil.rmtree(base, ignore_errors=True)


def port_open(port):
    """Does something accept TCP on 127.0.0.1:port?"""
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False
