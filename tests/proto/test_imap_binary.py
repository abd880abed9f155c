"""BINARY (RFC 3516) against the real daemon: BINARY[part] decodes
base64 and quoted-printable parts (literal8 when the bytes hold NUL),
BINARY.SIZE gives the decoded size, partials count decoded bytes, a big
base64 attachment streams, BINARY.PEEK leaves \\Seen alone and BINARY
sets it, an unknown Content-Transfer-Encoding is NO [UNKNOWN-CTE], and
the decoded bytes are those the sender encoded."""
import base64
import os
import re

from conftest import tls_context
from test_imap import IMAP, RawImap, deliver, raw_login

BLOB = bytes(range(256)) * 40 + b"\x00end"
QP_TEXT = "caf\u00e9 na\u00efve \u2013 a long line " * 8


def mime(attachment=BLOB, cte_text="quoted-printable", extra=b""):
    import quopri
    qp = quopri.encodestring(QP_TEXT.encode()).replace(b"\n", b"\r\n")
    b64 = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (b"Subject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + cte_text.encode() + b"\r\n\r\n" + qp + b"\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + extra +
            b"--XX--\r\n")


def literal(r, head):
    """The bytes of a literal announced at the end of head."""
    m = re.search(r"(~?)\{(\d+)\}$", head)
    assert m, head
    n = int(m[2])
    while len(r.buf) < n:
        r.buf += r.sock.recv(65536)
    data, r.buf = r.buf[:n], r.buf[n:]
    return m[1] == "~", data


def test_binary_decodes_parts(make_server, cert):
    srv = make_server(IMAP)
    deliver(srv, body=mime())
    r = raw_login(srv, cert)
    r.send("c CAPABILITY\r\n")
    assert "BINARY" in r.until("c")[0].split()
    r.send("s SELECT INBOX\r\n")
    r.until("s")
    r.send("f FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1] BINARY.PEEK[2])\r\n")
    head = r.line()
    assert f"BINARY.SIZE[2] {len(BLOB)}" in head, head
    assert f"BINARY.SIZE[1] {len(QP_TEXT.encode())}" in head, head
    is8, data = literal(r, head)
    assert is8, "NUL bytes need literal8"
    assert data == BLOB
    assert r.line() == ")"
    assert r.line().startswith("f OK")
    # Quoted-printable text: the UTF-8 it encoded; a partial of it.
    r.send("g FETCH 1 BINARY.PEEK[1]<5.10>\r\n")
    head = r.line()
    assert head.startswith("* 1 FETCH (BINARY[1]<5> ~{10}"), head
    is8, data = literal(r, head)
    assert is8 and data == QP_TEXT.encode()[5:15]  # decoded: literal8, as Dovecot
    r.until("g")
    # PEEK left \Seen alone; BINARY sets it.
    r.send("h FETCH 1 FLAGS\r\n")
    assert "\\Seen" not in r.until("h")[0]
    r.send("i FETCH 1 BINARY[1]\r\n")
    head = r.line()
    is8, data = literal(r, head)
    assert data == QP_TEXT.encode()
    rest = r.until("i")
    assert any("\\Seen" in l for l in [head] + rest), [head] + rest
    # BINARY[] is the message as it is.
    r.send("j FETCH 1 (BINARY.PEEK[] BODY.PEEK[])\r\n")
    head = r.line()
    _, data = literal(r, head)
    head2 = r.buf.split(b"\r\n", 1)[0].decode()
    r.buf = r.buf[len(head2) + 2:]
    _, body = literal(r, head2)
    assert data == body and data.endswith(mime())
    r.until("j")


def test_big_attachment_streams_and_unknown_cte(make_server, cert):
    srv = make_server(IMAP)
    big = os.urandom(3 * 1024 * 1024)
    deliver(srv, body=mime(attachment=big))
    deliver(srv, body=mime(cte_text="x-uuencode"))
    r = raw_login(srv, cert)
    r.send("s SELECT INBOX\r\n")
    r.until("s")
    r.sock.settimeout(30)
    r.send("f FETCH 1 BINARY.PEEK[2]\r\n")
    head = r.line()
    _, data = literal(r, head)
    assert data == big
    r.until("f")
    r.send("u FETCH 2 BINARY.PEEK[1]\r\n")
    lines = r.until("u")
    assert lines[-1].startswith("u NO [UNKNOWN-CTE]"), lines
    # The base64 part of the same message still decodes.
    r.send("v FETCH 2 BINARY.SIZE[2]\r\n")
    lines = r.until("v")
    assert f"BINARY.SIZE[2] {len(BLOB)}" in lines[0] and lines[-1].startswith("v OK"), lines


def append8_and_select(r, msg):
    """APPEND msg to INBOX as a literal8 (~{n}), then SELECT INBOX."""
    r.send(b"p APPEND INBOX ~{%d}\r\n" % len(msg))
    assert r.line().startswith("+")
    r.send(msg + b"\r\n")
    assert r.until("p")[-1].startswith("p OK")
    r.send("s SELECT INBOX\r\n")
    r.until("s")


def test_append_literal8(make_server, cert):
    """APPEND of a literal8 (RFC 3516 4.4): the message, NUL bytes and
    all, is stored as given and comes back byte for byte."""
    srv = make_server(IMAP)
    r = raw_login(srv, cert)
    msg = b"Subject: raw\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n"
    append8_and_select(r, msg)
    r.send("f FETCH 1 (BINARY.PEEK[] BINARY.SIZE[])\r\n")
    head = r.line()
    is8, data = literal(r, head)
    assert is8 and data == msg
    rest = r.until("f")
    assert f"BINARY.SIZE[] {len(msg)}" in head + "".join(rest), (head, rest)


def test_body_literal_never_carries_nul(make_server, cert):
    """BODY[] of a message holding NUL (stored from a literal8): a plain
    literal is CHAR8 (RFC 9051 4.3), so each NUL goes out as 0x80, the
    size unchanged, as Dovecot sends it; BINARY[] keeps the bytes."""
    srv = make_server(IMAP)
    r = raw_login(srv, cert)
    msg = b"Subject: raw\r\n\r\na\x00b\x00\r\n"
    append8_and_select(r, msg)
    r.send("f FETCH 1 BODY.PEEK[]\r\n")
    head = r.line()
    is8, data = literal(r, head)
    assert not is8 and data == msg.replace(b"\x00", b"\x80")
    r.until("f")
    r.send("g FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BINARY.PEEK[])\r\n")
    head = r.line()
    _, fields = literal(r, head)
    assert b"\x00" not in fields
    rest = r.buf.split(b"\r\n", 1)[0].decode()
    r.buf = r.buf[len(rest) + 2:]
    is8, raw = literal(r, rest)
    assert is8 and raw == msg
    r.until("g")
