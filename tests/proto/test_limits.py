"""Every limit: the reply the client gets, the log line, and that nothing
was delivered."""
import smtplib
import socket
import time

import pytest

from conftest import Raw


def start_txn(r, rcpt="alice@example.test"):
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd(f"RCPT TO:<{rcpt}>").startswith("250")


def test_command_line_too_long(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("NOOP " + "x" * 1100).startswith("500 5.5.2")
    # A line far longer than the buffer is skipped to its end.
    r.send("NOOP " + "y" * 300000 + "\r\n")
    assert r.reply().startswith("500 5.5.2")
    assert r.cmd("NOOP").startswith("250"), "session continues after the long line"
    assert "event=line-too-long" in server.log()
    assert r.cmd("MAIL FROM:<" + "a" * 70 + "@remote.example>").startswith("501 5.1.3")


def test_text_line_too_long(server):
    r = Raw(server.ports["smtp"])
    start_txn(r)
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: long\r\n\r\n" + "z" * 1200 + "\r\n.\r\n")
    rep = r.reply()
    assert rep.startswith("554 5.6.0") and "line" in rep
    assert r.cmd("NOOP").startswith("250")
    assert server.all_files() == []
    assert "event=data result=reject" in server.log()


def test_size_declared_too_big(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    rep = r.cmd("MAIL FROM:<x@remote.example> SIZE=99999999")
    assert rep.startswith("552 5.3.4")
    assert "SIZE=99999999 over limit" in server.log()
    assert r.cmd("MAIL FROM:<x@remote.example> SIZE=1000").startswith("250")


def test_message_too_big(make_server):
    s = make_server({"message_size_limit": "4k"})
    r = Raw(s.ports["smtp"])
    assert "SIZE 4096" in r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: big\r\n\r\n" + ("0123456789" * 9 + "\r\n") * 100 + ".\r\n")
    assert r.reply().startswith("552 5.3.4")
    assert s.all_files() == []
    # The transaction was reset: a fresh one works.
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("DATA")
    assert r.cmd("Subject: small\r\n\r\nok\r\n.").startswith("250")
    assert len(s.messages("alice")) == 1


def test_header_too_big(make_server):
    s = make_server({"header_size_limit": "2k"})
    r = Raw(s.ports["smtp"])
    start_txn(r)
    r.cmd("DATA")
    r.send("".join(f"X-H{i}: {'v' * 60}\r\n" for i in range(60)) + "\r\nbody\r\n.\r\n")
    rep = r.reply()
    assert rep.startswith("552 5.3.4") and "header" in rep
    assert s.all_files() == []


def test_recipient_limit(make_server):
    s = make_server({"recipient_limit": "3"})
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    for u in ("alice", "bob", "carol"):
        assert r.cmd(f"RCPT TO:<{u}@example.test>").startswith("250")
    assert r.cmd("RCPT TO:<postmaster@example.test>").startswith("452 4.5.3")
    assert r.cmd("DATA").startswith("354")
    assert r.cmd("Subject: three\r\n\r\nx\r\n.").startswith("250")
    assert s.messages("postmaster") == []
    assert len(s.messages("carol")) == 1
    assert "recipient limit 3" in s.log()


def test_error_limit_closes_session(make_server):
    s = make_server({"max_errors": "3"})
    r = Raw(s.ports["smtp"])
    assert r.cmd("BOGUS1").startswith("500")
    assert r.cmd("BOGUS2").startswith("500")
    rep = r.cmd("BOGUS3")
    assert rep.startswith("500")
    assert r.reply().startswith("421 4.7.0")
    assert r.closed()
    assert "event=too-many-errors" in s.log()


def test_idle_timeout(make_server):
    s = make_server({"smtp_timeout": "2s"})
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO client.example")
    r.sock.settimeout(15)
    assert r.reply().startswith("421 4.4.2")
    assert r.closed()
    assert "event=timeout" in s.log()


def test_idle_timeout_in_data_delivers_nothing(make_server):
    s = make_server({"smtp_timeout": "2s"})
    r = Raw(s.ports["smtp"])
    start_txn(r)
    r.cmd("DATA")
    r.send("Subject: half\r\n\r\npartial")
    r.sock.settimeout(15)
    assert r.reply().startswith("421 4.4.2")
    assert s.all_files() == []


def test_sessions_per_ip(make_server):
    s = make_server({"max_sessions_per_ip": "2"})
    a, b = Raw(s.ports["smtp"]), Raw(s.ports["smtp"])
    c = Raw(s.ports["smtp"], greet=False)
    assert c.reply().startswith("421 4.7.0")
    assert c.closed()
    a.cmd("QUIT")
    a.closed()
    time.sleep(0.3)
    d = Raw(s.ports["smtp"])
    assert d.greeting.startswith("220")
    assert "Too many connections from your address" in s.log()


def test_sessions_total(make_server):
    s = make_server({"max_sessions": "2", "max_sessions_per_ip": "10"})
    a, b = Raw(s.ports["smtp"]), Raw(s.ports["submission"])
    c = Raw(s.ports["smtp"], greet=False)
    assert c.reply().startswith("421 4.7.0 Too many connections")


def test_sessions_total_per_protocol(make_server):
    """max_sessions counts each protocol apart (configuration.md): SMTP
    full does not refuse POP3, and POP3 has its own cap and refusal."""
    s = make_server({"max_sessions": "1", "max_sessions_per_ip": "10"})
    a = Raw(s.ports["smtp"])
    assert a.greeting.startswith("220")
    p = Raw(s.ports["pop3"], greet=False)
    assert p.line().startswith("+OK")
    q = Raw(s.ports["pop3s"], greet=False)  # pop3s: no refusal line on TLS
    assert q.closed()
    r = Raw(s.ports["pop3"], greet=False)
    assert r.line() == "-ERR [SYS/TEMP] too many connections, try again later"
    c = Raw(s.ports["submission"], greet=False)
    assert c.reply().startswith("421 4.7.0 Too many connections")
    assert a.cmd("NOOP").startswith("250") and p.cmd("CAPA").startswith("+OK")


@pytest.mark.parametrize("line,code", [
    (b"NOOP \x00x\r\n", "500 5.5.2"),
    (b"EHLO h\xc3\xa9llo\r\n", "500 5.5.2"),
    (b"NOOP\n", "500 5.5.2"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", "500 5.5.2"),
    (b"\r\n", "500 5.5.2"),
    (b"GET / HTTP/1.1\r\n", "500 5.5.2"),
])
def test_bad_command_bytes(server, line, code):
    r = Raw(server.ports["smtp"])
    r.send(line)
    assert r.reply().startswith(code)
    assert r.cmd("NOOP").startswith("250")


def test_garbage_flood_never_crashes(server):
    import random
    rnd = random.Random(7)
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10)
        sock.recv(1000)
        try:
            sock.sendall(bytes(rnd.randrange(256) for _ in range(20000)))
        except OSError:
            pass
        sock.close()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail("x@remote.example", ["alice@example.test"], b"Subject: after\r\n\r\nok\r\n")
    assert len(server.messages("alice")) == 1


def test_expansion_limit(make_server):
    # team expands to alice, carol and info (alice, bob): 3 mailboxes.
    s = make_server({"expansion_limit": "2"})
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    assert r.cmd("RCPT TO:<team@example.test>").startswith("550 5.3.0")
    assert r.cmd("RCPT TO:<info@example.test>").startswith("250")
    r.cmd("DATA")
    assert r.cmd("Subject: e\r\n\r\nx\r\n.").startswith("250")
    assert s.messages("carol") == []
    assert len(s.messages("bob")) == 1
