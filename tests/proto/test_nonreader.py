"""Clients that send without ever reading the replies: a write that times
out frees the session (its slot per IP, its memory), whether or not the
client ever closes, and SIGTERM stops the daemon within shutdown_timeout
plus the short grace, over plain SMTP, STARTTLS, port 465 and POP3,
without losing a message that was acknowledged before."""
import re
import signal
import smtplib
import socket
import threading
import time

from conftest import Raw, tls_context, wait_for


def nonreader(port, payload, first=None, wrap=None):
    """A socket with a tiny receive buffer that sends payload on a thread
    and never reads; first() runs on it before (e.g. STARTTLS), wrap()
    wraps it (TLS)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    if first:
        s = first(s)
    if wrap:
        s = wrap(s)

    def run():
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server dropped us: expected

    threading.Thread(target=run, daemon=True).start()
    return s


def greeted(s):
    """Reads the greeting first (a client that talks before it is
    refused as a pregreet)."""
    assert s.recv(100)[:3] in (b"220", b"+OK")  # fits the small buffer
    return s


def count(log, pattern):
    return len(re.findall(pattern, log))


def test_smtp_write_timeout_frees_the_session(make_server):
    """Three clients (the per-IP limit) flood EHLO and never read: each
    session is freed after its write times out, while the clients are
    still connected, so a fourth client is served and SIGTERM works."""
    srv = make_server({"smtp_timeout": "2s", "max_sessions_per_ip": "3"})
    socks = [nonreader(srv.ports["smtp"], b"EHLO x\r\n" * 400000,
                       first=greeted) for _ in range(3)]
    wait_for(lambda: count(srv.log(), r"session=\w+ event=disconnect") >= 3,
             timeout=30, what="3 stuck sessions freed")
    assert "writing=yes" in srv.log()
    r = Raw(srv.ports["smtp"])
    assert r.greeting.startswith("220"), r.greeting
    assert r.cmd("QUIT").startswith("221")
    r.close()
    for s in socks:
        s.close()
    t0 = time.time()
    assert srv.stop(timeout=20) == 0
    assert time.time() - t0 < 15
    assert "event=shutdown-timeout" not in srv.log()


def test_pop3_write_timeout_frees_the_session(make_server):
    srv = make_server({"pop3_timeout": "2s", "max_sessions_per_ip": "3"})
    socks = [nonreader(srv.ports["pop3"], b"CAPA\r\n" * 400000,
                       first=greeted) for _ in range(3)]
    wait_for(lambda: count(srv.log(), r"pop3=\w+ event=disconnect") >= 3,
             timeout=30, what="3 stuck POP3 sessions freed")
    r = socket.create_connection(("127.0.0.1", srv.ports["pop3"]), timeout=10)
    assert r.recv(200).startswith(b"+OK")
    r.sendall(b"QUIT\r\n")
    r.close()
    for s in socks:
        s.close()
    t0 = time.time()
    assert srv.stop(timeout=20) == 0
    assert time.time() - t0 < 15


def test_sigterm_with_non_reading_clients(make_server, cert):
    """A message is acknowledged, then plain, STARTTLS, port 465 and POP3
    clients flood without reading; SIGTERM stops posternd within
    shutdown_timeout + the grace (+ slack), and the message is kept."""
    srv = make_server({"shutdown_timeout": "3s"})
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as c:
        c.sendmail("x@remote.example", ["alice@example.test"],
                   b"Subject: before the signal\r\n\r\nkept\r\n")
    ctx = tls_context(cert)

    def starttls(s):
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(b"EHLO c\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220")
        return ctx.wrap_socket(s, server_hostname="localhost")

    def tls(s):
        return ctx.wrap_socket(s, server_hostname="localhost")

    flood = b"EHLO x\r\n" * 400000
    socks = [
        nonreader(srv.ports["smtp"], flood, first=greeted),
        nonreader(srv.ports["smtp"], flood, first=starttls),
        nonreader(srv.ports["submissions"], b"NOOP\r\n" * 400000, wrap=tls),
        nonreader(srv.ports["pop3"], b"CAPA\r\n" * 400000,
                  first=greeted),
        nonreader(srv.ports["pop3s"], b"CAPA\r\n" * 400000, wrap=tls),
    ]
    time.sleep(3)  # the replies back up
    t0 = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(40)
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    took = time.time() - t0
    assert rc == 0
    assert took < 3 + 2 + 6, f"stopped after {took:.1f} s"
    assert len(srv.messages("alice")) == 1
    assert b"kept" in srv.messages("alice")[0]


def test_idle_clients_that_read_still_get_the_timeout_reply(make_server, cert):
    """Only a client that does not read is dropped without a word: an idle
    one gets 421 4.4.2 (plain, STARTTLS, 465) or -ERR (POP3), then EOF."""
    srv = make_server({"smtp_timeout": "2s", "pop3_timeout": "2s"})
    ctx = tls_context(cert)
    plain = Raw(srv.ports["smtp"])
    starttls = Raw(srv.ports["smtp"])
    assert starttls.cmd("EHLO c").startswith("250")
    assert starttls.cmd("STARTTLS").startswith("220")
    starttls.starttls(ctx)
    implicit = Raw(srv.ports["submissions"], greet=False)
    implicit.starttls(ctx)
    assert implicit.reply().startswith("220")
    for r in (plain, starttls, implicit):
        r.sock.settimeout(15)
        assert r.reply().startswith("421 4.4.2")
        assert r.closed(timeout=10)
    p = socket.create_connection(("127.0.0.1", srv.ports["pop3"]), timeout=15)
    f = p.makefile("rb")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"-ERR")
    assert f.read() == b""
