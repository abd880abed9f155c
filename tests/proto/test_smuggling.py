"""SMTP smuggling (CVE-2023-51764 class) and bare line ends, in both
smtp_bare_newline modes.  Only CRLF.CRLF ends DATA, in both.  Under
reject every variant with a bare CR or LF gets one 554 after the real end
and nothing is delivered.  Under normalize (the default) a bare LF ends a
line, so the bare-LF variants are delivered as one message with the fake
end and the "smuggled" commands as its text; a bare CR is still refused.
In no case are the smuggled commands executed, here or at the next hop."""
import pytest

from conftest import Raw, wait_for

SMUGGLED = ("MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
            "DATA\r\nSubject: smuggled\r\n\r\nowned\r\n")

VARIANTS = ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r", "\r.\n"]
# Variants whose only fault is a bare LF: content under normalize.
LF_ONLY = ["\n.\n", "\n.\r\n", "\r\n.\n"]
MODES = ["reject", "normalize"]
FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}

# What normalize stores for every LF_ONLY variant: the fake end is the
# line ".", the smuggled commands are text.
STORED_LF = (b"Subject: first\n\nhello\n.\nMAIL FROM:<evil@remote.example>\n"
             b"RCPT TO:<bob@example.test>\nDATA\nSubject: smuggled\n\nowned\n")


def start_txn(port, rcpt="alice@example.test"):
    r = Raw(port)
    r.cmd("EHLO client.example")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd(f"RCPT TO:<{rcpt}>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    return r


def no_more_replies(r):
    """The next reply is NOOP's own: the smuggled MAIL/RCPT/DATA were not
    answered (MAIL's 250 is 2.1.0), and QUIT closes cleanly."""
    assert r.cmd("NOOP") == "250 2.0.0 Ok"
    assert r.cmd("QUIT").startswith("221")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("end", VARIANTS)
def test_fake_end_of_data(make_server, mode, end):
    server = make_server({"smtp_bare_newline": mode})
    r = start_txn(server.ports["smtp"])
    r.send("Subject: first\r\n\r\nhello" + end + SMUGGLED + ".\r\n")
    rep = r.reply()
    if mode == "normalize" and end in LF_ONLY:
        assert rep.startswith("250"), rep
        no_more_replies(r)
        [msg] = wait_for(lambda: server.messages("alice"), what="delivery")
        assert msg.endswith(b"\n" + STORED_LF), msg
        assert server.messages("bob") == []
        assert len(server.all_files()) == 1
        assert "event=data bare_lf_lines=" in server.log()
        return
    assert rep.startswith("554 5.6.0"), rep
    assert "CRLF" in rep
    # Nothing else was answered: the smuggled commands were message text.
    no_more_replies(r)
    assert server.all_files() == []


@pytest.mark.parametrize("end", LF_ONLY)
def test_fake_end_relayed_crlf_only(make_server, sinks, end):
    """normalize, a remote recipient: the next hop gets one message, every
    line CRLF, the "." line stuffed (the sink sees it as text, never as its
    end) and the same text postern stored for a local recipient."""
    mx = sinks("127.0.0.2")
    server = make_server(FAST)  # smtp_bare_newline: the default, normalize
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@example.test>")
    assert r.cmd("RCPT TO:<bob@remote.example>").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: first\r\n\r\nhello" + end + SMUGGLED + ".\r\n")
    assert r.reply().startswith("250")
    no_more_replies(r)
    wait_for(lambda: mx.messages, what="relay")
    [m] = mx.messages
    assert m["to"] == ["bob@remote.example"]
    data = m["data"]
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR relayed"
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF relayed"
    assert data.endswith(b"\r\n" + STORED_LF.replace(b"\n", b"\r\n")), data
    [local] = server.messages("alice")
    assert local.endswith(b"\n" + STORED_LF)
    assert len(mx.messages) == 1 and server.messages("bob") == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body", [b"a\rb\r\n", b"a\x00b\r\n", b"a\nb\rc\r\n"])
def test_bare_cr_nul_refused_in_both_modes(make_server, mode, body):
    server = make_server({"smtp_bare_newline": mode})
    r = start_txn(server.ports["smtp"])
    r.send(b"Subject: t\r\n\r\n" + body + b".\r\n")
    assert r.reply().startswith("554 5.6.0")
    no_more_replies(r)
    assert server.all_files() == []


@pytest.mark.parametrize("mode", MODES)
def test_bare_lf_anywhere(make_server, mode):
    server = make_server({"smtp_bare_newline": mode})
    r = start_txn(server.ports["smtp"])
    r.send(b"Subject: t\r\n\r\na\nb\r\n.\r\n")
    rep = r.reply()
    if mode == "reject":
        assert rep.startswith("554 5.6.0"), rep
        assert server.all_files() == []
    else:
        assert rep.startswith("250"), rep
        [msg] = wait_for(lambda: server.messages("alice"), what="delivery")
        assert msg.endswith(b"\nSubject: t\n\na\nb\n")


@pytest.mark.parametrize("mode", MODES)
def test_lf_only_client_never_ends(make_server, mode):
    """A client that ends every line, the last "." too, with a bare LF never
    sends a real end, in either mode: it meets the DATA deadline and
    nothing is delivered."""
    server = make_server({"smtp_bare_newline": mode, "smtp_data_timeout": "2s"})
    r = start_txn(server.ports["smtp"])
    r.send(b"Subject: t\n\nbody\n.\n")
    rep = r.reply()
    assert rep.startswith("421 4.4.2"), rep
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


def test_trickled_bare_lf(server):
    """normalize, one byte at a time: LF lines, a stuffed dot after a bare
    LF, the lone "." that is not the end."""
    r = start_txn(server.ports["smtp"])
    for ch in b"Subject: slow\n\nbody\n..x\n.\r\nmore\r\n.\r\n":
        r.send(bytes([ch]))
    assert r.reply().startswith("250")
    [msg] = server.messages("alice")
    assert msg.endswith(b"\nSubject: slow\n\nbody\n.x\n.\nmore\n")
