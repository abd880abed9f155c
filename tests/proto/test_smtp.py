"""SMTP conversation against the real daemon: delivery, expansion,
replies for every command, address tricks, pipelining."""
import re
import smtplib
import subprocess

import pytest

from conftest import Raw


def send(server, frm, to, body, port_kind="smtp"):
    with smtplib.SMTP("127.0.0.1", server.ports[port_kind], timeout=20) as s:
        return s.sendmail(frm, to, body)


def test_message_reaches_maildir_byte_exact(server):
    body = (b"From: Sender <sender@remote.example>\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: exact\r\n"
            b"\r\n"
            b"line one\r\n"
            b".leading dot\r\n"
            b"..two dots\r\n"
            b".\tdot tab\r\n"
            b"\r\n"
            b"8bit: \xc3\xa9\r\n"
            b"last\r\n")
    assert send(server, "sender@remote.example", ["alice@example.test"], body) == {}
    [msg] = server.messages("alice")
    head, rest = msg.split(b"\n", 1)
    assert head == b"Return-Path: <sender@remote.example>"
    received, original = rest.split(b"\nFrom: Sender", 1)
    assert received.startswith(b"Received: from ")
    assert re.search(rb"\[127\.0\.0\.1\]\)\n\tby mx\.example\.test \(postern\) with ESMTP id [0-9A-F]+\n"
                     rb"\tfor <alice@example\.test>;\n\t\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$", received)
    # Stored with LF line ends, dot-stuffing removed, otherwise unchanged.
    assert b"From: Sender" + original == body.replace(b"\r\n", b"\n")
    # ,S= is the file size, ,W= the size with CRLF line ends.
    import os
    name = os.listdir(os.path.join(server.maildir("alice"), "new"))[0]
    size = int(re.search(r",S=(\d+)", name).group(1))
    wsize = int(re.search(r",W=(\d+)", name).group(1))
    assert size == len(msg)
    assert wsize == len(msg) + msg.count(b"\n")
    assert os.listdir(os.path.join(server.maildir("alice"), "tmp")) == []


def test_swaks_delivers(server):
    r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(server.ports["smtp"]),
                        "-f", "x@remote.example", "-t", "bob@example.test",
                        "--header", "Subject: via swaks"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    [msg] = server.messages("bob")
    assert b"Subject: via swaks" in msg


def test_alias_list_expansion_without_duplicates(server):
    # alice directly, via info (alice, bob) and via team (alice, carol, info)
    send(server, "x@remote.example",
         ["alice@example.test", "info@example.test", "team@example.test"],
         b"Subject: fanout\r\n\r\nhi\r\n")
    assert len(server.messages("alice")) == 1
    assert len(server.messages("bob")) == 1
    assert len(server.messages("carol")) == 1
    assert server.messages("postmaster") == []
    # One file, hard-linked: every copy is identical.
    assert server.messages("alice") == server.messages("bob") == server.messages("carol")


def test_host_alias_case_and_trailing_dot(server):
    r = Raw(server.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250 2.1.0")
    assert r.cmd("RCPT TO:<ALICE@Mail.Example.TEST.>").startswith("250 2.1.5")
    assert r.cmd("RCPT TO:<\"bob\"@example.test>").startswith("250 2.1.5")
    assert r.cmd("DATA").startswith("354")
    assert r.cmd("Subject: t\r\n\r\nx\r\n.").startswith("250 2.0.0")
    assert r.cmd("QUIT").startswith("221")
    assert len(server.messages("alice")) == 1
    assert len(server.messages("bob")) == 1


@pytest.mark.parametrize("rcpt,code", [
    ("<nobody@example.test>", "550 5.1.1"),
    ("<alice@remote.example>", "550 5.7.1"),
    ("<alice%remote.example@example.test>", "550 5.1.1"),
    ("<remote.example!alice@example.test>", "550 5.1.1"),
    ("<\"alice@remote.example\"@example.test>", "550 5.1.1"),
    ("<alice@remote.example@example.test>", "501 5.1.3"),
    ("<@example.test:alice@remote.example>", "550 5.7.1"),
    ("<alice@[127.0.0.1]>", "550 5.7.1"),
    ("<alice@example.test.remote.example>", "550 5.7.1"),
    ("<alice@xexample.test>", "550 5.7.1"),
    ("<alice@test>", "550 5.7.1"),
    ("alice@example.test", "501 5.1.3"),
    ("<>", "501 5.1.3"),
])
def test_recipient_rejections(server, rcpt, code):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    rep = r.cmd("RCPT TO:" + rcpt)
    assert rep.startswith(code), rep
    assert r.cmd("DATA").startswith("554 5.5.1")
    r.cmd("QUIT")
    assert server.all_files() == []
    assert "event=rcpt" in server.log() or "event=syntax-error" in server.log()


def test_relay_denial_explains(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    rep = r.cmd("RCPT TO:<someone@remote.example>")
    assert rep.startswith("550 5.7.1") and "denied" in rep and len(rep) > 40
    assert re.search(r"event=rcpt .*to=<someone@remote.example> result=reject code=550 mode=none rule=default-deny", server.log())


def test_source_route_is_dropped_not_followed(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("MAIL FROM:<@relay.example:x@remote.example>").startswith("250")
    assert r.cmd("RCPT TO:<@remote.example,@other.example:alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    assert r.cmd("Subject: r\r\n\r\nx\r\n.").startswith("250")
    [msg] = server.messages("alice")
    assert msg.startswith(b"Return-Path: <x@remote.example>\n")


def test_null_sender_and_postmaster(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("MAIL FROM:<>").startswith("250")
    assert r.cmd("RCPT TO:<Postmaster>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    assert r.cmd("Subject: bounce\r\n\r\nx\r\n.").startswith("250")
    [msg] = server.messages("postmaster")
    assert msg.startswith(b"Return-Path: <>\n")


def test_command_replies(server):
    r = Raw(server.ports["smtp"])
    assert r.greeting.startswith("220 mx.example.test ESMTP")
    ehlo = r.cmd("EHLO client.example")
    for ext in ("PIPELINING", "SIZE 10485760", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"):
        assert ext in ehlo
    assert "AUTH" not in ehlo
    assert r.cmd("NOOP").startswith("250 2.0.0")
    assert r.cmd("VRFY alice").startswith("252 2.5.0")
    assert r.cmd("HELP").startswith("214 2.0.0")
    assert r.cmd("EXPN team").startswith("502 5.5.1")
    assert r.cmd("RSET").startswith("250 2.0.0")
    assert r.cmd("XYZZY").startswith("500 5.5.2")
    assert r.cmd("HELO again.example") == "250 mx.example.test"
    assert r.cmd("QUIT").startswith("221 2.0.0")
    assert r.closed()


def test_sequence_errors(server):
    r = Raw(server.ports["smtp"])
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("503 5.5.1")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert r.cmd("DATA").startswith("503 5.5.1")
    r.cmd("EHLO client.example")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("503 5.5.1")
    assert r.cmd("DATA").startswith("554 5.5.1")
    assert r.cmd("RSET").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert r.cmd("MAIL FROM:<x@remote.example> FOO=BAR").startswith("555 5.5.4")
    assert r.cmd("MAIL FROM:<x@remote.example> BODY=BINARYMIME").startswith("555 5.5.4")
    assert r.cmd("MAIL FROM:<x@remote.example> SIZE=abc").startswith("501 5.5.4")
    assert r.cmd("MAIL FROM:<x@remote.example> BODY=8BITMIME SIZE=100").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER").startswith("555 5.5.4")
    assert r.cmd("QUIT").startswith("221")


def test_helo_session_rejects_params(server):
    r = Raw(server.ports["smtp"])
    r.cmd("HELO client.example")
    assert r.cmd("MAIL FROM:<x@remote.example> SIZE=10").startswith("555 5.5.4")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")


def test_pipelining_replies_in_order(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.send("MAIL FROM:<x@remote.example>\r\n"
           "RCPT TO:<alice@example.test>\r\n"
           "RCPT TO:<nobody@example.test>\r\n"
           "RCPT TO:<bob@example.test>\r\n"
           "RCPT TO:<x@remote.example>\r\n"
           "DATA\r\n")
    codes = [r.reply()[:3] for _ in range(6)]
    assert codes == ["250", "250", "550", "250", "550", "354"]
    r.send("Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<y@remote.example>\r\n"
           "RCPT TO:<carol@example.test>\r\nDATA\r\n")
    assert [r.reply()[:3] for _ in range(4)] == ["250", "250", "250", "354"]
    r.send("Subject: q\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert r.reply().startswith("250")
    assert r.reply().startswith("221")
    assert len(server.messages("alice")) == 1
    assert len(server.messages("bob")) == 1
    assert len(server.messages("carol")) == 1


def test_client_talking_before_greeting_is_refused(make_server):
    s = make_server({"greet_pause": "400ms"})
    r = Raw(s.ports["smtp"], greet=False)
    r.send("EHLO eager.example\r\n")
    assert r.reply().startswith("554 5.5.1")
    assert r.closed()
    assert "event=pregreet" in s.log()
    polite = Raw(s.ports["smtp"])
    assert polite.greeting.startswith("220")
    assert polite.cmd("EHLO polite.example").startswith("250")


def test_many_messages_one_session(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        for i in range(30):
            s.sendmail("x@remote.example", ["bob@example.test"], f"Subject: n{i}\r\n\r\nx\r\n")
    msgs = server.messages("bob")
    assert len(msgs) == 30
    assert len({m for m in msgs}) == 30


def test_whole_dialogue_one_byte_at_a_time(server):
    """The command framing and the DATA parser see every split."""
    r = Raw(server.ports["smtp"])
    dialogue = ("EHLO trickle.example\r\nMAIL FROM:<x@remote.example>\r\n"
                "RCPT TO:<bob@example.test>\r\nDATA\r\n")
    for ch in dialogue:
        r.send(ch)
    assert [r.reply()[:3] for _ in range(4)] == ["250", "250", "250", "354"]
    for ch in "Subject: trickle\r\n\r\n..dot\r\n.\r\nQUIT\r\n":
        r.send(ch)
    assert r.reply().startswith("250 2.0.0")
    assert r.reply().startswith("221")
    [msg] = server.messages("bob")
    assert msg.endswith(b"Subject: trickle\n\n.dot\n")
