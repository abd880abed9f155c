"""COMPRESS=DEFLATE (RFC 4978) against the real daemon: raw deflate both
ways with Python's zlib as the client's, over STARTTLS'd and implicit-TLS
connections; a big FETCH through it; input pipelined right after the
command; the command refused twice, before login and for another
algorithm; a corrupt stream and an expansion bomb end only that session,
which holds no more than its line limit."""
import re
import socket
import zlib

from conftest import tls_context, wait_for
from test_imap import IMAP, LOGIN_LOCK, RawImap, deliver


class Deflated:
    """An IMAP client speaking raw deflate after COMPRESS."""

    def __init__(self, raw):
        self.sock = raw.sock
        self.buf = b""
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)
        assert raw.buf == b"", "nothing may follow the OK in clear"

    def send(self, data):
        data = data if isinstance(data, bytes) else data.encode()
        self.sock.sendall(self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH))

    def line(self):
        while b"\r\n" not in self.buf:
            c = self.sock.recv(65536)
            if not c:
                raise EOFError("closed; buffered %r" % self.buf[-200:])
            self.buf += self.z_in.decompress(c)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self, n):
        while len(self.buf) < n:
            c = self.sock.recv(65536)
            if not c:
                raise EOFError("closed")
            self.buf += self.z_in.decompress(c)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until(self, tag):
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(tag.encode() + b" "):
                return lines


def login(srv, cert, port="imaps"):
    r = RawImap(srv.ports[port], tls_context(cert) if port == "imaps" else None)
    r.sock.settimeout(20)
    if port == "imap":
        r.send("s STARTTLS\r\n")
        assert r.until("s")[-1].startswith("s OK")
        r.sock = tls_context(cert).wrap_socket(r.sock, server_hostname="localhost")
    with LOGIN_LOCK:
        r.send("a LOGIN alice@example.test secret-alice\r\n")
        assert r.until("a")[-1].startswith("a OK")
    return r


def compress(r):
    r.send("c COMPRESS DEFLATE\r\n")
    assert r.line() == "c OK DEFLATE active"
    return Deflated(r)


def test_compress_fetch_big_message_both_ports(make_server, cert):
    srv = make_server(IMAP)
    body = b"".join(b"line %06d of a long text that compresses well\r\n" % i
                    for i in range(60000))
    deliver(srv, body=b"Subject: big\r\n\r\n" + body)
    for port in ("imaps", "imap"):
        r = login(srv, cert, port)
        lines = r.send("x CAPABILITY\r\n") or r.until("x")
        assert "COMPRESS=DEFLATE" in lines[0], lines
        d = compress(r)
        d.send("b SELECT INBOX\r\n")
        assert d.until("b")[-1].startswith(b"b OK")
        d.send("f FETCH 1 BODY.PEEK[TEXT]\r\n")
        head = d.line()
        m = re.match(rb"\* 1 FETCH \(BODY\[TEXT\] \{(\d+)\}$", head)
        assert m and int(m[1]) == len(body), head
        assert d.read(len(body)) == body
        assert d.line() == b")"
        assert d.line().startswith(b"f OK")
        d.send("y CAPABILITY\r\n")
        caps = d.until("y")
        assert b"COMPRESS=DEFLATE" not in caps[0]
        d.send("z COMPRESS DEFLATE\r\n")
        assert d.line().startswith(b"z NO [COMPRESSIONACTIVE]")
        d.send("l LOGOUT\r\n")
        assert d.until("l")[-1].startswith(b"l OK")
    assert "event=compress" in srv.log()


def test_input_pipelined_after_the_command(make_server, cert):
    """A client that sends compressed commands right behind COMPRESS
    (before the OK): they are inflated once the OK is out."""
    srv = make_server(IMAP)
    r = login(srv, cert)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    r.send(b"c COMPRESS DEFLATE\r\n" + z.compress(b"n NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
    assert r.line() == "c OK DEFLATE active"
    d = Deflated(r)
    d.z_out = z
    assert d.until("n")[-1].startswith(b"n OK")


def test_refused_before_login_and_unknown_algorithm(make_server, cert):
    srv = make_server(IMAP)
    r = RawImap(srv.ports["imaps"], tls_context(cert))
    r.send("a COMPRESS DEFLATE\r\n")
    assert r.line().startswith("a BAD"), "COMPRESS before login"
    r = login(srv, cert)
    r.send("b COMPRESS LZMA\r\n")
    assert r.line().startswith("b BAD")
    r.send("c NOOP\r\n")
    assert r.until("c")[-1].startswith("c OK"), "still in clear"


def test_corrupt_stream_and_bomb_end_only_that_session(make_server, cert):
    srv = make_server(dict(IMAP, imap_line_limit="8192"))
    r = login(srv, cert)
    compress(r)
    r.sock.sendall(b"\xff\xfe this is not deflate data \x00" * 20)
    r.sock.settimeout(10)
    try:
        while r.sock.recv(65536):
            pass
        closed = True  # the server ended the session
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    assert closed, "a corrupt stream must end the session"
    # A bomb: 200 MB of one line, a few hundred KB compressed.
    r = login(srv, cert)
    d = compress(r)
    z = d.z_out
    chunk = z.compress(b"a" * (1 << 20))
    try:
        for _ in range(200):
            d.sock.sendall(chunk)
        d.sock.sendall(z.flush(zlib.Z_SYNC_FLUSH))
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = b""
    try:
        while True:
            c = d.sock.recv(65536)
            if not c:
                break
            got += d.z_in.decompress(c)
    except (ConnectionResetError, socket.timeout):
        pass
    assert b"BAD" in got or b"BYE" in got or got == b"", got[-300:]
    assert 'reason="line too long"' in srv.log()
    # The daemon still serves others.
    r = login(srv, cert)
    r.send("n NOOP\r\n")
    assert r.until("n")[-1].startswith("n OK")


def test_idle_under_compress_gets_each_update_once(make_server, cert):
    """A delivery to a session idling under COMPRESS: exactly one
    "* 2 EXISTS" line (the filter's write callback once ran inside the
    reply being written, and the update went out twice, interleaved)."""
    import time
    srv = make_server(IMAP)
    deliver(srv)
    r = login(srv, cert)
    d = compress(r)
    d.send("b SELECT INBOX\r\n")
    d.until("b")
    d.send("c IDLE\r\n")
    assert d.line().startswith(b"+ ")
    deliver(srv)
    assert d.line() == b"* 2 EXISTS"
    assert d.line() == b"* 2 RECENT"
    time.sleep(0.5)
    d.send("DONE\r\n")
    assert d.line().startswith(b"c OK"), "nothing else came before the OK"
