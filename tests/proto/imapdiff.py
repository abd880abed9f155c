"""Differential IMAP testing: the same scripted dialogue against Dovecot
(Debian's dovecot-imapd, started here on loopback over a copy of a Maildir)
and against posternd, compared after masking what may differ between two
correct servers (tags, UIDVALIDITY, human-readable response text, the
capability list, timings, the order of LIST replies).

A script is a list of steps.  A step is a command without its tag
("SELECT INBOX"), sent with a fresh tag; the runner answers "+"
continuations for synchronising literals ({N}) by sending the literal's
bytes, and reads until the tagged reply.  Two connections are written as
("a", "NOOP") / ("b", "SELECT INBOX") tuples; a step ("a", "@IDLE") opens
an IDLE, ("a", "@DONE") ends it, and ("a", "@WAIT") collects what the
server sent unasked for up to a second.
"""
import os
import re
import shutil
import socket
import subprocess
import time

DOVECOT = "/usr/sbin/dovecot"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Dovecot:
    """A Dovecot IMAP server for one user over a copy of a Maildir.

    Configured like postern's store: Maildir++ on disk, '/' as the
    hierarchy delimiter shown to clients, the special-use folders
    postern creates for a new user, plaintext logins on loopback.
    """

    def __init__(self, base, maildir, user, password, extra="", port=None):
        self.dir = os.path.join(base, f"dovecot{time.time_ns()}")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.maildir = os.path.join(self.dir, "Maildir")
        shutil.copytree(maildir, self.maildir, symlinks=True)
        subprocess.run(["chown", "-R", "nobody:nogroup", self.dir], check=True)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write(f"{user}:{{PLAIN}}{password}:65534:65534::{self.dir}::"
                    f"userdb_mail=maildir:{self.maildir}\n")
        boxes = "".join(
            f"  mailbox {name} {{\n    special_use = \\{name}\n"
            f"    auto = subscribe\n  }}\n"
            for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"))
        with open(self.conf, "w") as f:
            f.write(f"""base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.maildir}
first_valid_uid = 1
namespace inbox {{
  inbox = yes
  separator = /
{boxes}}}
passdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
{extra}
""")
        subprocess.run([DOVECOT, "-c", self.conf], check=True)
        wait_port(self.port)

    def stop(self):
        subprocess.run(["doveadm", "-c", self.conf, "stop"], capture_output=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(0.1)
            except OSError:
                break

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def make_maildir(path, messages, folders=()):
    """A Maildir++ tree: messages are (bytes, flags) delivered to cur/ in
    order, with ascending time-stamped names and mtimes, so that both
    servers give them UIDs in the same order; folders are empty
    Maildir++ folders (client names, '/' delimited)."""
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    t0 = 1700000000
    for i, (data, flags) in enumerate(messages):
        name = f"{t0 + i}.M{i}P1.diff:2,{flags}"
        p = os.path.join(path, "cur", name)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (t0 + i, t0 + i))
    # INBOX subscribed (postern subscribes it and the special-use folders
    # for a new user; Dovecot's auto = subscribe does the latter)
    with open(os.path.join(path, "subscriptions"), "w") as f:
        f.write("V\t2\n\nINBOX\n")
    for name in folders:
        d = os.path.join(path, "." + name.replace("/", "."))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        open(os.path.join(d, "maildirfolder"), "w").close()


class Conn:
    """One raw IMAP connection: sends exactly the script's bytes."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.seq = 0
        self.greeting = self.line()

    def line(self):
        """One response line, literals included (as raw bytes)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % (out + self.buf))
                self.buf += chunk
            ln, self.buf = self.buf.split(b"\r\n", 1)
            out += ln + b"\r\n"
            m = re.search(rb"\{(\d+)\}$", ln)
            if not m:
                return out[:-2]
            n = int(m.group(1))
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed inside a literal")
                self.buf += chunk
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def command(self, text):
        """Sends text (bytes or str) with a new tag; returns every line up
        to and including the tagged reply."""
        if isinstance(text, str):
            text = text.encode()
        self.seq += 1
        tag = b"t%d" % self.seq
        parts = re.split(rb"(\{\d+\}\r\n)", tag + b" " + text)
        lines = []
        out = parts[0]
        i = 1
        while i < len(parts):
            lit = parts[i]
            self.sock.sendall(out + lit)
            while True:
                ln = self.line()
                lines.append(ln)
                if ln.startswith(b"+"):
                    break
                if ln.startswith(tag + b" "):
                    return lines
            out = parts[i + 1]  # the literal's bytes and what follows
            i += 2
        self.sock.sendall(out + b"\r\n")
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + b" "):
                return lines

    def idle(self):
        self.seq += 1
        self.idle_tag = b"t%d" % self.seq
        self.sock.sendall(self.idle_tag + b" IDLE\r\n")
        return [self.line()]

    def done(self):
        self.sock.sendall(b"DONE\r\n")
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(self.idle_tag + b" "):
                return lines

    def wait(self, seconds=1.0):
        """What the server sends unasked within seconds."""
        lines = []
        deadline = time.time() + seconds
        while True:
            if b"\r\n" in self.buf:
                lines.append(self.line())
                continue
            left = deadline - time.time()
            if left <= 0:
                return lines
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return lines
            finally:
                self.sock.settimeout(10)
            if not chunk:
                lines.append(b"<closed>")
                return lines
            self.buf += chunk

    def close(self):
        self.sock.close()


def ok(lines):
    """lines (a command's, tagged reply last) if it answered OK; else fails."""
    assert lines[-1].split(b" ")[1] == b"OK", lines
    return lines


def login(server, user="alice@example.test", password="secret-alice", timeout=60):
    """A Conn to server's plaintext imap port, logged in."""
    c = Conn(server.ports["imap"], timeout=timeout)
    ok(c.command(f'LOGIN "{user}" "{password}"'))
    return c


def run(port, user, password, script):
    """Runs script (after a LOGIN on connection "a") and returns the
    transcript: one (connection, step, lines) per step."""
    conns = {}

    def conn(name):
        if name not in conns:
            c = Conn(port)
            r = c.command(f'LOGIN "{user}" "{password}"')
            assert r[-1].split(b" ")[1] == b"OK", r
            conns[name] = c
        return conns[name]

    out = []
    for step in script:
        name, text = step if isinstance(step, tuple) else ("a", step)
        c = conn(name)
        if text == "@IDLE":
            lines = c.idle()
        elif text == "@DONE":
            lines = c.done()
        elif text == "@WAIT":
            lines = c.wait()
        else:
            lines = c.command(text)
        out.append((name, text, lines))
    for c in conns.values():
        c.close()
    return out


# What two correct servers may say differently.
_CODE = re.compile(rb"^(\S+ (?:OK|NO|BAD|BYE|PREAUTH))( \[[^\]]*\])?(.*)$")
_SORTED = (b"LIST", b"LSUB", b"STATUS")


# A mailbox name may be sent as an atom or as a quoted string (RFC 3501
# astring): both are the same name.
_ATOM = rb'[^\x00-\x20\x7f(){%*"\\\]]+'
# (a quoted name and an atom are the same name; LIST-EXTENDED may add
# an extended item such as CHILDINFO after it)
_LIST_NAME = re.compile(rb'^(\* (?:LIST|LSUB) \([^)]*\) (?:NIL|"[^"]*") )"(' + _ATOM +
                        rb')"((?: \(CHILDINFO \([^)]*\)\))?)$')
_STATUS_NAME = re.compile(rb'^(\* STATUS )"(' + _ATOM + rb')"( \(.*)$')


_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def unliteral(ln):
    """Every literal in a response line as a quoted string: a server may
    send a string either way (RFC 3501 4.3)."""
    out, pos = b"", 0
    while True:
        m = _LITERAL.search(ln, pos)
        if not m:
            return out + ln[pos:]
        n = int(m.group(1))
        data = ln[m.end():m.end() + n]
        out += ln[pos:m.start()] + b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        pos = m.end() + n


_INTERNALDATE = re.compile(rb'INTERNALDATE "([ 0-9]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [-+]\d{4})"')


def _mask_now(m):
    """An INTERNALDATE given by the server at APPEND (no date in the
    command) is the time of the run: within a day of now, it is NOW."""
    import datetime
    t = datetime.datetime.strptime(m.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    if abs(t.timestamp() - time.time()) < 86400:
        return b'INTERNALDATE NOW'
    return m.group(0)


def normalise_line(ln):
    ln = unliteral(ln)
    if ln.startswith(b"+"):
        return b"+"  # the continuation's text is the server's own words
    ln = _LIST_NAME.sub(rb"\1\2\3", ln)
    ln = _STATUS_NAME.sub(rb"\1\2\3", ln)
    ln = re.sub(rb"^t\d+ ", b"TAG ", ln)
    ln = _INTERNALDATE.sub(_mask_now, ln)
    m = _CODE.match(ln)
    if m:
        code = m.group(2) or b""
        code = re.sub(rb"^ \[CAPABILITY [^\]]*\]", b" [CAPABILITY]", code)
        code = re.sub(rb"^ \[UIDVALIDITY \d+\]", b" [UIDVALIDITY N]", code)
        code = re.sub(rb"^ \[HIGHESTMODSEQ \d+\]", b" [HIGHESTMODSEQ N]", code)
        code = re.sub(rb"^ \[(APPENDUID|COPYUID) \d+", rb" [\1 N", code)
        code = re.sub(rb"^ \[BADCHARSET \([^)]*\)\]", b" [BADCHARSET]", code)
        # RFC 5530 3: NONEXISTENT is the code for a missing mailbox
        # (postern sends it); Dovecot 2.3 sends a plain NO for SELECT and
        # STATUS: both mean the same to a client, so the code is dropped
        code = re.sub(rb"^ \[NONEXISTENT\]$", b"", code)
        # the NO text is the server's own words; the code is the contract
        return m.group(1) + code
    ln = re.sub(rb"^\* CAPABILITY .*", b"* CAPABILITY", ln)
    ln = re.sub(rb"^\* ID .*", b"* ID", ln)
    ln = re.sub(rb"UIDVALIDITY \d+", b"UIDVALIDITY N", ln)
    ln = re.sub(rb"\[(APPENDUID|COPYUID) \d+", rb"[\1 N", ln)
    # MODSEQ values are each server's own counter (RFC 7162 only asks
    # that they grow): their presence and place are compared, not them
    ln = re.sub(rb"MODSEQ \(\d+\)", b"MODSEQ (N)", ln)
    ln = re.sub(rb"(HIGHESTMODSEQ|MODSEQ) \d+", rb"\1 N", ln)
    # A flags update with MODSEQ: RFC 7162 3.1 wants UID in every FETCH
    # once CONDSTORE is on (postern sends it; Dovecot 2.3 only for UID
    # commands and QRESYNC) and the items' order is free: compared as
    # the sorted items without UID
    m = re.match(rb"^(\* \d+ FETCH )\((.*)\)$", ln)
    if m and b"MODSEQ (N)" in m.group(2):
        items = re.findall(rb"UID \d+|MODSEQ \(N\)|FLAGS \([^)]*\)", m.group(2))
        if b" ".join(items) == m.group(2) or len(b" ".join(items)) == len(m.group(2)):
            ln = m.group(1) + b"(" + b" ".join(
                sorted(i for i in items if not i.startswith(b"UID "))) + b")"
    return ln


def expunge_originals(lines):
    """A run of untagged EXPUNGE lines as the sequence numbers they remove,
    counted before the run: "5, 4" and "4, 4" both remove 4 and 5."""
    out, run = [], []

    def flush():
        removed = []
        for n in run:
            o = 0
            while True:
                o += 1
                if o in removed:
                    continue
                if o - sum(1 for r in removed if r < o) == n:
                    break
            removed.append(o)
        if removed:
            out.append(b"* EXPUNGE " + b",".join(b"%d" % r for r in sorted(removed)))
        run.clear()

    for ln in lines:
        m = re.match(rb"^\* (\d+) EXPUNGE$", ln)
        if m:
            run.append(int(m.group(1)))
            continue
        flush()
        out.append(ln)
    flush()
    return out


def normalise(transcript):
    out = []
    for name, text, lines in transcript:
        lines = [normalise_line(ln) for ln in lines]
        # RFC 7162 3.1.2.1: a server with persistent mod-sequences sends
        # HIGHESTMODSEQ at every SELECT; Dovecot only once CONDSTORE is on
        lines = [ln for ln in lines if not ln.startswith(b"* OK [HIGHESTMODSEQ ")]
        lines = expunge_originals(lines)
        # a "+" is flow control: a server may refuse an APPEND before it
        # (Dovecot, for a missing folder) or after reading the literal
        lines = [ln for ln in lines if ln != b"+"]
        # LIST/LSUB/STATUS replies in a block may come in any order
        head = [ln for ln in lines if ln.split(b" ")[1:2] and
                ln.split(b" ")[1] in _SORTED and ln.startswith(b"* ")]
        rest = [ln for ln in lines if ln not in head]
        out.append((name, text, sorted(head) + rest))
    return out


def diff(a, b):
    """A readable difference of two normalised transcripts, or ""."""
    lines = []
    for (n, t, x), (_, _, y) in zip(a, b):
        if x != y:
            lines.append(f"[{n}] {t}")
            lines += ["  dovecot: " + ln.decode("utf-8", "replace") for ln in x]
            lines += ["  postern: " + ln.decode("utf-8", "replace") for ln in y]
    if len(a) != len(b):
        lines.append(f"step counts differ: {len(a)} vs {len(b)}")
    return "\n".join(lines)
