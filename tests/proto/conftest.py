"""Fixtures for protocol tests: each test gets a real posternd (the
ASan+UBSan build from `make test`) on loopback ports chosen by the kernel,
with its own data_dir, SQLite directory and TLS certificate.  At teardown
the daemon is stopped with SIGTERM and its log must hold no sanitizer
report."""
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSTERND = os.environ.get("POSTERND", os.path.join(ROOT, "build/asan/posternd"))
POSTERNCTL = os.environ.get("POSTERNCTL", os.path.join(ROOT, "build/asan/posternctl"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

os.environ.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


def run_user():
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


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


class Server:
    """One posternd instance and helpers to inspect what it stored."""

    def __init__(self, base, cert, extra):
        self.base = base
        self.data = os.path.join(base, "data")
        self.conf = os.path.join(base, "postern.conf")
        self.logpath = os.path.join(base, "posternd.log")
        self.cert, self.key = cert
        self.extra = dict(extra)
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
            "tls_cert": self.cert,
            "tls_key": self.key,
            "log_level": "debug",
            "shutdown_timeout": "10s",
        }
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


def new_server(tmp_path_factory, cert, extra=None, populate=True, start=True):
    base = tempfile.mkdtemp(prefix="postern-test-")
    os.chmod(base, 0o755)  # the daemon runs as an unprivileged user
    s = Server(base, cert, extra or {})
    if populate:
        s.populate()
    if start:
        s.start()
    return s


@pytest.fixture
def make_server(tmp_path_factory, cert):
    made = []

    def factory(extra=None, populate=True, start=True):
        s = new_server(tmp_path_factory, cert, extra, populate, start)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()
        s.check_sanitizers()
        shutil.rmtree(s.base, ignore_errors=True)


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
