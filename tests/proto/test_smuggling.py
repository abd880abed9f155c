"""SMTP smuggling (CVE-2023-51764 class): only CRLF.CRLF ends DATA.  Every
variant with a bare CR or LF gets one 554 after the real end, the message
is not delivered, and the smuggled commands are never executed."""
import pytest

from conftest import Raw

SMUGGLED = ("MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
            "DATA\r\nSubject: smuggled\r\n\r\nowned\r\n")

VARIANTS = ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r", "\r.\n"]


@pytest.mark.parametrize("end", VARIANTS)
def test_fake_end_of_data(server, end):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: first\r\n\r\nhello" + end + SMUGGLED + ".\r\n")
    rep = r.reply()
    assert rep.startswith("554 5.6.0"), rep
    assert "CRLF" in rep
    # Nothing else was answered: the smuggled commands were message text.
    assert r.cmd("NOOP").startswith("250")
    assert server.all_files() == []


@pytest.mark.parametrize("body", [b"a\rb\r\n", b"a\nb\r\n", b"a\x00b\r\n"])
def test_bare_cr_lf_nul_anywhere(server, body):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("DATA")
    r.send(b"Subject: t\r\n\r\n" + body + b".\r\n")
    assert r.reply().startswith("554 5.6.0")
    assert server.all_files() == []


def test_trickled_end_of_data(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("DATA")
    for ch in "Subject: slow\r\n\r\nbody\r\n..x\r\n.\r\n":
        r.send(ch)
    assert r.reply().startswith("250")
    [msg] = server.messages("alice")
    assert msg.endswith(b"\n\nbody\n.x\n")
