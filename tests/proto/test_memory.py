"""Memory and time bounds an unauthenticated client cannot get around:
pipelined commands whose replies are never read (SMTP and POP3), messages
held open in DATA, a DATA phase that never ends, and a late delivery
result after a timeout.  The daemon's resident size is read from
/proc/PID/status while the attack runs; the bounds are generous (the
ASan build roughly doubles what the release build uses, and its
quarantine keeps freed memory for a while, so RSS is only compared while
the attack is held off, not after the replies were read) but far below
what the unbounded code reached."""
import os
import smtplib
import socket
import threading
import time

import pytest

from conftest import Raw, wait_for

MIB = 1024 * 1024


def rss(pid):
    """The daemon's resident set size in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peak_rss_during(pid, seconds, until=None):
    """Samples RSS for `seconds` (or until until() is true); the peak."""
    peak = 0
    deadline = time.time() + seconds
    while time.time() < deadline and not (until and until()):
        peak = max(peak, rss(pid))
        time.sleep(0.1)
    return max(peak, rss(pid))


def smtp_still_served(server):
    """Another client gets a full conversation, quickly."""
    t0 = time.time()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        assert s.ehlo()[0] == 250
        assert s.noop()[0] == 250
    assert time.time() - t0 < 5


def sender(sock, data):
    """Sends data on a thread (the server may stop reading for a while)."""
    box = {}

    def run():
        try:
            sock.sendall(data)
            box["ok"] = True
        except OSError as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


class Counter:
    """Reads from a socket and counts a marker across chunk boundaries."""

    def __init__(self, sock, first=b""):
        self.sock, self.tail, self.n = sock, first, 0
        self.head = first

    def read_until(self, marker, want, timeout=120):
        self.sock.settimeout(timeout)
        self.n += self.tail.count(marker)
        self.tail = self.tail[-(len(marker) - 1):]
        while self.n < want:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"closed after {self.n} of {want}")
            if len(self.head) < 4096:
                self.head += chunk[:4096]
            buf = self.tail + chunk
            self.n += buf.count(marker)
            self.tail = buf[-(len(marker) - 1):]
        return self.n


def test_smtp_pipelined_flood_without_reading(server):
    """8 MiB of pipelined EHLO, replies unread: the output is bounded,
    the session waits, and every reply arrives once the client reads."""
    pid = server.proc.pid
    r = Raw(server.ports["smtp"])
    before = rss(pid)
    n = MIB  # 1 Mi lines of "EHLO x\r\n": 8 MiB
    t, box = sender(r.sock, b"EHLO x\r\n" * n)
    peak = peak_rss_during(pid, 6)
    assert t.is_alive(), "the server read 8 MiB without sending the replies"
    smtp_still_served(server)
    grew = peak - before
    print(f"smtp flood: rss before {before >> 20} MiB, peak {peak >> 20} MiB")
    assert grew < 40 * MIB, f"RSS grew by {grew >> 20} MiB"
    # Now read everything: one complete EHLO reply per line sent.
    c = Counter(r.sock, r.buf)
    c.read_until(b"250 8BITMIME\r\n", n, timeout=300)
    assert c.n == n
    t.join(60)
    assert box.get("ok"), box
    first = c.head.split(b"250 8BITMIME\r\n")[0].decode()
    assert first.startswith("250-mx.example.test Hello [127.0.0.1]\r\n")
    assert "250-PIPELINING\r\n" in first
    r.sock.settimeout(20)
    assert r.cmd("QUIT").startswith("221")


def pop3_message():
    """About 1 MB of text with dot lines and a long line, LF stored."""
    lines = [b"Subject: big", b"From: x@remote.example", b""]
    i = 0
    while sum(len(l) + 2 for l in lines) < 1000000:
        if i % 97 == 0:
            lines.append(b"." + b"dot line %d" % i)
        elif i % 1001 == 0:
            lines.append(b"..")
        else:
            lines.append(b"line %07d " % i + b"x" * (i % 70))
        i += 1
    lines.append(b".")
    return b"\r\n".join(lines) + b"\r\n"


def pop3_login(server, user="alice@example.test", pw="secret-alice"):
    r = Raw(server.ports["pop3"], greet=False, timeout=20)
    assert r.line().startswith("+OK")
    assert r.cmd(f"USER {user}").startswith("+OK")
    assert r.cmd(f"PASS {pw}").startswith("+OK")
    return r


def test_pop3_pipelined_retr_without_reading(make_server):
    """300 pipelined RETR of a 1 MB message, replies unread: bounded
    memory, others served; then 300 byte-identical copies."""
    server = make_server({"pop3_allow_plaintext": "yes"})
    body = pop3_message()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=60) as s:
        s.sendmail("x@remote.example", ["alice@example.test"], body)
    stored = server.messages("alice")[0]
    # What RETR must send: CRLF line ends, dot-stuffed, then ".".
    wire = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in stored.split(b"\n")[:-1])
    want = b"+OK\r\n" + wire + b".\r\n"
    pid = server.proc.pid
    r = pop3_login(server)
    before = rss(pid)
    nretr = 300
    r.send(b"RETR 1\r\n" * nretr)
    peak = peak_rss_during(pid, 6)
    grew = peak - before
    print(f"pop3 flood: rss before {before >> 20} MiB, peak {peak >> 20} MiB")
    # Others are served meanwhile: POP3 for another user, and SMTP.
    other = pop3_login(server, "bob@example.test", "secret-bob")
    assert other.cmd("STAT").startswith("+OK")
    assert other.cmd("QUIT").startswith("+OK")
    smtp_still_served(server)
    assert grew < 40 * MIB, f"RSS grew by {grew >> 20} MiB"
    r.sock.settimeout(120)
    data = bytearray(r.buf)
    total = len(want) * nretr
    while len(data) < total:
        chunk = r.sock.recv(1 << 20)
        assert chunk, f"closed after {len(data)} of {total} bytes"
        data += chunk
    assert len(data) == total
    for k in range(nretr):
        assert data[k * len(want):(k + 1) * len(want)] == want, f"RETR {k}"
    r.buf = b""
    assert r.cmd("TOP 1 2").startswith("+OK")
    top = []
    while True:
        line = r.line()
        if line == ".":
            break
        top.append(line)
    assert top[-2:] == ["..dot line 0", "line 0000001 x"]
    assert r.cmd("QUIT").startswith("+OK")


def test_no_reply_after_timeout_421(make_server):
    """The idle timeout fires while the delivery is still in flight: the
    client gets 421 and nothing after it, and the log has the result.
    Deterministic: one worker thread, held up by a RCPT lookup that waits
    on a directory locked by the test, so the delivery queued behind it
    ends long after the 1 s timeout."""
    import sqlite3
    server = make_server({"workers": "1", "smtp_timeout": "1s"})
    a = Raw(server.ports["smtp"])
    assert a.cmd("EHLO a").startswith("250")
    assert a.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert a.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert a.cmd("DATA").startswith("354")
    a.send(b"Subject: late\r\n\r\nbody\r\n")
    db = sqlite3.connect(os.path.join(server.data, "postern.db"),
                         isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        b = Raw(server.ports["smtp"])
        assert b.cmd("EHLO b").startswith("250")
        assert b.cmd("MAIL FROM:<y@remote.example>").startswith("250")
        b.send("RCPT TO:<bob@example.test>\r\n")  # waits on the lock
        time.sleep(0.5)
        a.send(b".\r\n")  # the delivery queues behind that lookup
        a.sock.settimeout(10)
        assert a.line().startswith("421 4.4.2")
        time.sleep(1.5)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert a.closed(timeout=15)
    assert a.buf == b"", f"sent after 421: {a.buf!r}"
    # b timed out too, waiting for its RCPT: 421, and nothing after it.
    assert b.line().startswith("421 4.4.2")
    assert b.closed(timeout=15) and b.buf == b""
    wait_for(lambda: "event=delivered" in server.log(), what="delivery log")
    assert len(server.messages("alice")) == 1
