"""Clients that end lines with a bare LF (smtp_bare_newline).  Python's
smtplib.sendmail(msg.as_bytes()) sends bytes as they are: LF line ends,
dots stuffed after every LF, then CRLF "." CRLF.  Under normalize (the
default) that is delivered with its text intact; under reject it gets
554 5.6.0.  Every limit counts a bare-LF line as it is relayed (CRLF)."""
import email.message
import smtplib

import pytest

from conftest import Raw, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


def lf_message(body):
    m = email.message.EmailMessage()
    m["From"] = "alice@example.test"
    m["To"] = "bob@example.test"
    m["Subject"] = "bare LF"
    m.set_content(body)
    raw = m.as_bytes()
    assert b"\r" not in raw and b"\n" in raw  # what smtplib will send as is
    return raw


BODY = "first line\n.leading dot\n..two dots\n.\nlast line\n"


def test_smtplib_sendmail_bytes_lf_delivered(make_server):
    server = make_server()  # the default: normalize
    raw = lf_message(BODY)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail("alice@example.test", ["bob@example.test"], raw)
    [msg] = server.messages("bob")
    # smtplib ends bytes that do not end in CRLF with CRLF "." CRLF, so
    # the message gets one empty line more (Postfix stores the same).
    assert msg.endswith(b"\n" + raw + b"\n"), msg
    assert msg.startswith(b"Return-Path: <alice@example.test>\n")
    assert b"\r" not in msg
    assert "bare_lf_lines=" in server.log() and "action=normalized" in server.log()


def test_smtplib_sendmail_bytes_lf_refused_under_reject(make_server):
    server = make_server({"smtp_bare_newline": "reject"})
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("alice@example.test", ["bob@example.test"], lf_message(BODY))
        assert e.value.smtp_code == 554
        assert b"5.6.0" in e.value.smtp_error
        assert s.noop()[0] == 250  # the session goes on
    assert server.all_files() == []


def test_smtplib_lf_relayed_as_crlf(make_server, sinks):
    """The next hop gets CRLF only, dots stuffed so that it stores the
    same text, and one message."""
    mx = sinks("127.0.0.2")
    server = make_server(FAST)
    raw = lf_message(BODY)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail("alice@example.test", ["carol@remote.example"], raw)
    wait_for(lambda: mx.messages, what="relay")
    [m] = mx.messages
    data = m["data"]
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert data.startswith(b"Received: ")
    assert data.endswith(b"\r\n" + raw.replace(b"\n", b"\r\n") + b"\r\n"), data


def test_large_lf_message_byte_exact(make_server):
    """LF lines across the fast path, read chunks and the DATA spool
    (over 256 KiB): stored byte for byte."""
    server = make_server()
    lines = [("%06d " % i + "abcdefghij" * 7 + "\n") for i in range(8000)]
    lines[100] = "." + lines[100]
    raw = lf_message("".join(lines))
    assert len(raw) > 600000
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=60) as s:
        s.sendmail("alice@example.test", ["bob@example.test"], raw)
    [msg] = server.messages("bob")
    assert msg.endswith(b"\n" + raw + b"\n")


def send_raw(server, text):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@example.test>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    r.send(text)
    return r.reply()


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("extra,want", [(0, "250"), (1, "552 5.3.4")])
def test_message_size_counts_lf_as_crlf(make_server, eol, extra, want):
    """message_size_limit (the SIZE advertised) counts the message as
    relayed: each line end two octets, LF or CRLF alike."""
    server = make_server({"message_size_limit": "2048"})
    # 31 lines of 63 + CRLF = 2015, then 31 + CRLF = 33: 2048 in all
    body = (b"x" * 63 + eol) * 31 + b"y" * (31 + extra) + b"\r\n"
    assert send_raw(server, body + b".\r\n").startswith(want)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("n,want", [(998, "250"), (999, "554 5.6.0")])
def test_text_line_limit_counts_lf_as_crlf(server, eol, n, want):
    """text_line_limit = 1000 (the default) includes the line end, counted
    as CRLF for a bare LF too: 998 octets + LF is the longest line."""
    rep = send_raw(server, b"Subject: t\r\n\r\n" + b"x" * n + eol + b"end\r\n.\r\n")
    assert rep.startswith(want), rep


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("pad,want", [(17, "250"), (18, "552 5.3.4")])
def test_header_size_limit_counts_lf_as_crlf(make_server, eol, pad, want):
    """header_size_limit counts header lines and the empty line after them
    with CRLF ends: 10 * 100 + (3 + 17 + 2) + 2 = 1024."""
    server = make_server({"header_size_limit": "1024"})
    head = (b"X: " + b"a" * 95 + eol) * 10 + b"Y: " + b"a" * pad + eol + eol
    rep = send_raw(server, head + b"body\r\n.\r\n")
    assert rep.startswith(want), rep
