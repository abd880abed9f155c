"""session_timeout: the core's bound on a whole session (SMTP and POP3),
however busy the client keeps it.  The session ends with the protocol's
reply; a message answered 250 before it is delivered, one in progress is
not, and a POP3 session ends without UPDATE (nothing is deleted)."""
import poplib
import smtplib
import time

from conftest import tls_context, wait_for

LIMIT = 2.0  # seconds: session_timeout = 2s


def test_smtp_session_timeout(make_server):
    s = make_server({"session_timeout": "2s"})
    start = time.monotonic()
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.sendmail("x@remote.example", ["bob@example.test"],
               b"Subject: before\r\n\r\nanswered 250\r\n")
    # A second transaction in progress when the limit comes: each
    # command is answered (the idle timeout is not what ends it).
    assert c.mail("x@remote.example")[0] == 250
    assert c.rcpt("bob@example.test")[0] == 250
    while time.monotonic() - start < LIMIT - 0.5:
        assert c.noop()[0] == 250
        time.sleep(0.2)
    code, text = c.getreply()
    elapsed = time.monotonic() - start
    assert code == 421, (code, text)
    assert text.startswith(b"4.4.2 ") and b"session time limit" in text
    assert LIMIT - 0.5 <= elapsed < LIMIT + 3, elapsed
    assert c.sock.recv(100) == b"", "the connection is closed after the 421"
    c.close()
    # Nothing acknowledged is lost, nothing unacknowledged delivered.
    wait_for(lambda: len(s.messages("bob")) == 1, what="the first message")
    time.sleep(0.3)
    assert len(s.messages("bob")) == 1
    assert b"answered 250" in s.messages("bob")[0]
    assert "event=session-timeout" in s.log()


def test_pop3_session_timeout_after_stls(make_server, cert):
    s = make_server({"session_timeout": "2s"})
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        for i in range(2):
            c.sendmail("x@remote.example", ["alice@example.test"],
                       f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    wait_for(lambda: len(s.messages("alice")) == 2, what="two messages")
    start = time.monotonic()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    # The timer is the session's, not the transport's: it survives STLS.
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    assert p.dele(1).startswith(b"+OK")
    while time.monotonic() - start < LIMIT - 0.5:
        assert p.noop().startswith(b"+OK")
        time.sleep(0.2)
    try:
        resp = p._getresp()
    except poplib.error_proto as e:
        resp = e.args[0]
    elapsed = time.monotonic() - start
    assert resp == b"-ERR session time limit exceeded, closing", resp
    assert LIMIT - 0.5 <= elapsed < LIMIT + 3, elapsed
    p.close()
    # No UPDATE: the message marked deleted is still there.
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    assert p.stat()[0] == 2
    p.quit()
    assert "event=session-timeout" in s.log()
