"""SIGTERM: no delivery attempt starts after the signal (the queue stops
first; a message a session finishes meanwhile waits on disk for the next
start), and a POP3 download in progress obeys the same rule as SMTP's
DATA (docs/configuration.md, shutdown_timeout)."""
import base64
import os
import poplib
import re
import signal
import smtplib
import sqlite3
import time

from conftest import Raw, tls_context, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


def test_no_attempt_starts_after_sigterm(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST)
    c = Raw(s.ports["smtp"])
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<alice@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@remote.example>").startswith("250")
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "event=shutdown service=smtp" in s.log(), what="shutdown")
    # The transaction may finish; its message is queued but not sent.
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: late\r\n\r\nx\r\n.").startswith("250")
    c.send(b"QUIT\r\n")
    assert s.proc.wait(30) == 0
    s.logf.close()
    assert mx.messages == [], "a delivery attempt started after SIGTERM"
    # It is delivered at the next start.
    s.start()
    [m] = wait_for(lambda: mx.messages, timeout=30, what="delivery after restart")
    assert b"Subject: late" in m["data"]


def big_message(mb=30):
    line = b"x" * 998 + b"\r\n"
    return b"Subject: big\r\n\r\n" + line * (mb * 1024 * 1024 // len(line))


def retr_start(s, cert, n_read=65536):
    """Alice logged in over POP3, RETR 1 sent and the first n_read octets
    of the reply read: a download in progress."""
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=30)
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    p.sock.sendall(b"RETR 1\r\n")
    got = b""
    while len(got) < n_read:
        got += p.sock.recv(n_read - len(got))
    return p, got


def read_all(sock, timeout=60):
    sock.settimeout(timeout)
    out = b""
    while True:
        b = sock.recv(1 << 20)
        if not b:
            return out
        out += b


def test_pop3_download_finishes_after_sigterm(make_server, cert):
    """Like SMTP's DATA: a RETR in progress may finish within
    shutdown_timeout; the message ends cleanly and then the session gets
    -ERR and is closed.  10 MB (far more than the socket buffers hold, so
    the download is in progress at the signal) and shutdown_timeout 60s:
    30 MB over TLS under ASan did not always finish in 10 s on a loaded
    machine."""
    s = make_server(dict(message_size_limit="40000000", shutdown_timeout="60s"))
    msg = big_message(10)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=60) as c:
        c.sendmail("x@remote.example", ["alice@example.test"], msg)
    p, got = retr_start(s, cert)
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "event=shutdown service=pop3" in s.log(), what="shutdown")
    time.sleep(0.5)
    got += read_all(p.sock)
    head, rest = got.split(b"\r\n", 1)
    assert head.startswith(b"+OK"), head
    assert rest.endswith(b"\r\n.\r\n-ERR server shutting down\r\n"), rest[-200:]
    body = rest[:-len(b".\r\n-ERR server shutting down\r\n")]
    # Byte-exact: the whole message (after the Received: line posternd adds).
    assert body.endswith(msg), (len(body), len(msg))
    assert b"-ERR" not in body
    assert s.proc.wait(90) == 0
    assert "event=shutdown-timeout" not in s.log()


def test_pop3_download_stopped_at_shutdown_timeout(make_server, cert):
    """A client that stops reading mid-RETR is cut off at shutdown_timeout:
    no -ERR inside the message (it would read as message text), and
    posternd exits within shutdown_timeout + 2 s."""
    s = make_server(dict(message_size_limit="40000000", shutdown_timeout="1s"))
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=60) as c:
        c.sendmail("x@remote.example", ["alice@example.test"], big_message(30))
    p, got = retr_start(s, cert)
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert time.time() - t0 < 1 + 2 + 1.5
    got += read_all(p.sock)
    assert b"-ERR" not in got
    assert not got.endswith(b"\r\n.\r\n"), "a cut message has no clean ending"
    log = s.log()
    for l in ("event=shutdown service=pop3 sessions=1",
              "warning: event=shutdown-timeout service=pop3 sessions=1"):
        assert l in log, l


def test_pop3_refusal_line(make_server):
    """The refusal before a session exists: RFC 2449 [SYS/TEMP] to the
    client, the reason in the log (docs/admin.md, pop3-refuse)."""
    s = make_server({"max_sessions_per_ip": "1"})
    a = Raw(s.ports["pop3"], greet=False)
    assert a.line().startswith("+OK")
    c = Raw(s.ports["pop3"], greet=False)
    assert c.line() == "-ERR [SYS/TEMP] too many connections, try again later"
    line = wait_for(lambda: [l for l in s.log().splitlines() if "event=pop3-refuse" in l],
                    what="refusal line")[0]
    assert ('event=pop3-refuse client=127.0.0.1 '
            'reason="Too many connections from your address"') in line, line


def hold_storage_pool(s, fifo_cert):
    """The one storage thread (workers = 1) held by a reload reading a
    certificate that is a FIFO: once its reader is there, the write end is
    opened and kept, so the reload waits in read() until
    release_storage_pool."""
    crt = fifo_cert.paths["tls_cert"]
    with open(crt, "rb") as f, open(crt + ".pem", "wb") as g:
        g.write(f.read())
    fifo_cert.block()
    s.proc.send_signal(signal.SIGHUP)
    return wait_for(lambda: _open_writer(crt), what="the reload reading the FIFO")


def _open_writer(path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def release_storage_pool(fd, fifo_cert):
    """The reload reads the certificate and ends; the FIFO is a regular
    file again."""
    crt = fifo_cert.paths["tls_cert"]
    pem = open(fifo_cert.paths["tls_cert"] + ".pem", "rb").read()
    os.set_blocking(fd, True)
    os.write(fd, pem)
    os.close(fd)
    os.unlink(crt)
    with open(crt, "wb") as f:
        f.write(pem)


def test_pop3_sigterm_during_quit_update(make_server, fifo_cert):
    """SIGTERM while QUIT's UPDATE (the deletions) waits for its worker:
    QUIT gets exactly one reply, the UPDATE's, and then the connection is
    closed.  Before, the shutdown answered -ERR at once and the UPDATE's
    +OK came after it: two replies to one command."""
    s = make_server(dict(fifo_cert.paths, workers="1",
                         pop3_allow_plaintext="yes"))
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["alice@example.test"], b"Subject: a\r\n\r\nx\r\n")
    wait_for(lambda: s.messages("alice"), what="delivery")
    p = Raw(s.ports["pop3"], greet=False)
    assert p.line().startswith("+OK")
    assert p.cmd("USER alice@example.test").startswith("+OK")
    assert p.cmd("PASS secret-alice").startswith("+OK")
    assert p.cmd("DELE 1").startswith("+OK")
    fd = hold_storage_pool(s, fifo_cert)
    try:
        p.send("QUIT\r\n")  # its UPDATE waits behind the reload
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "event=shutdown service=pop3" in s.log(), what="shutdown")
        assert p.closed(timeout=0.5) is False  # nothing yet: QUIT's job waits
        assert p.buf == b"", p.buf
    finally:
        release_storage_pool(fd, fifo_cert)
    assert p.closed(timeout=20)
    assert p.buf == b"+OK bye, 1 messages deleted\r\n", p.buf
    assert s.proc.wait(30) == 0
    md = s.maildir("alice")
    assert os.listdir(os.path.join(md, "new")) == os.listdir(os.path.join(md, "cur")) == []


def test_smtp_sigterm_during_auth(make_server):
    """SIGTERM while AUTH's password check runs: the client gets AUTH's
    reply and then 421 at once, not at shutdown_timeout (an idle
    logged-in session has no transaction to finish).  The check is held
    on a locked directory.  Two sessions send AUTH with auth_max_pending
    = 1: the one the log does not refuse ("reason=pending") is the one
    whose check is in flight."""
    s = make_server({"auth_require_tls": "no", "auth_max_pending": "1",
                     "directory_timeout": "60s", "shutdown_timeout": "60s"})
    plain = base64.b64encode(b"\0alice@example.test\0secret-alice").decode()
    clients = [Raw(s.ports["smtp"]), Raw(s.ports["smtp"])]
    for c in clients:
        assert c.cmd("EHLO a.example").startswith("250")
    ids = re.findall(r"session=(\w+) event=connect", s.log())
    assert len(ids) == 2, ids
    db = sqlite3.connect(os.path.join(s.data, "postern.db"), isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        for c in clients:
            c.send(f"AUTH PLAIN {plain}\r\n")
        [loser] = wait_for(lambda: re.findall(r"session=(\w+) event=auth result=busy "
                                              r"reason=pending", s.log()),
                           what="one login refused, the other in flight")
        held = clients[1 - ids.index(loser)]
        assert clients[ids.index(loser)].reply().startswith("454 4.7.0")
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "event=shutdown service=smtp" in s.log(), what="shutdown")
    finally:
        db.execute("ROLLBACK")
        db.close()
    held.sock.settimeout(20)  # shutdown_timeout is 60 s
    assert held.reply().startswith("235"), "the login's own reply first"
    assert held.reply().startswith("421 4.3.2"), "then the shutdown's, at once"
    assert held.closed()
    assert s.proc.wait(30) == 0


def test_shutdown_timeout_raised_by_reload(make_server):
    """A shutdown_timeout raised by a reload holds for posternd's own exit
    deadline too: a transaction in progress at SIGTERM may finish past the
    boot value's deadline (1 s + the 2 s grace + 1 s).  Before, posternd
    exited there and the client's message got no reply."""
    s = make_server({"shutdown_timeout": "1s"})
    s.extra["shutdown_timeout"] = "60s"
    s.write_conf()
    s.ctl("reload")
    wait_for(lambda: "event=reload result=ok" in s.log(), what="reload")
    c = Raw(s.ports["smtp"])
    assert c.cmd("EHLO client.example").startswith("250")
    assert c.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert c.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: late\r\n\r\npart one\r\n")
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "event=shutdown service=smtp" in s.log(), what="shutdown")
    # Past the boot value's deadline (it exited by 5 s after the signal).
    time.sleep(7)
    assert s.proc.poll() is None, "posternd exited at the boot deadline"
    assert c.cmd("part two\r\n.").startswith("250")
    assert c.reply().startswith("421 4.3.2")
    assert s.proc.wait(30) == 0
    assert len(s.messages("alice")) == 1
