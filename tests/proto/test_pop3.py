"""POP3 against the real daemon with poplib and curl: listing, fetching
byte-exact, TOP, UIDL stability, deletion only at QUIT, [IN-USE], STLS
and implicit TLS, logins and lock-out, foreign Maildirs, bad input."""
import base64
import os
import poplib
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import Raw, tls_context, wait_for


def deliver(server, to="alice@example.test", n=1, body=None):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        for i in range(n):
            s.sendmail("x@remote.example", [to],
                       body or f"Subject: msg {i}\r\n\r\nbody {i}\r\n.dot line\r\n".encode())


def stored(server, user="alice"):
    """Every message file of a Maildir (new/ and cur/)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(server.maildir(user), sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            out.append(open(os.path.join(d, name), "rb").read())
    return out


def pop(server, cert, user="alice@example.test", pw="secret-alice"):
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    p.user(user)
    p.pass_(pw)
    return p


def test_list_retr_top_dele(server, cert):
    deliver(server, n=3)
    p = pop(server, cert)
    count, size = p.stat()
    assert count == 3
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert sum(sizes) == size
    _, lines, octets = p.retr(1)
    raw = b"\r\n".join(lines) + b"\r\n"
    assert octets == sizes[0] == len(raw)
    assert raw.startswith(b"Return-Path: <x@remote.example>\r\nReceived: from ")
    assert b"\r\n.dot line\r\n" in raw, "poplib undoes the dot-stuffing"
    # Byte-exact: the stored file with CRLF line ends.
    same = [f for f in stored(server) if f.replace(b"\n", b"\r\n") == raw]
    assert len(same) == 1
    _, top, _ = p.top(2, 0)
    assert top[-1] != b"body 1" and b"Subject: msg 1" in top
    _, top1, _ = p.top(2, 1)
    assert top1[-1] == b"body 1"
    assert p.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 3
    p.dele(3)
    p.quit()
    assert len(stored(server)) == 2
    p = pop(server, cert)
    assert p.stat()[0] == 2
    p.quit()


def test_uidl_stable_across_sessions_and_restart(make_server, cert):
    s = make_server()
    deliver(s, n=2)
    p = pop(s, cert)
    first = p.uidl()[1]
    p.quit()
    p = pop(s, cert)
    assert p.uidl()[1] == first
    p.quit()
    s.stop()
    s.start()
    p = pop(s, cert)
    assert p.uidl()[1] == first
    uid = first[0].split()[1]
    assert 1 <= len(uid) <= 70 and all(0x21 <= c <= 0x7e for c in uid)
    p.quit()


def test_dele_then_disconnect_deletes_nothing(server, cert):
    deliver(server, n=2)
    p = pop(server, cert)
    p.dele(1)
    p.dele(2)
    p.sock.shutdown(socket.SHUT_RDWR)  # vanish without QUIT
    p.close()
    time.sleep(0.5)
    p = pop(server, cert)
    assert p.stat()[0] == 2
    p.quit()


def test_in_use_and_new_mail_not_shown(server, cert):
    deliver(server, n=1)
    p = pop(server, cert)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        pop(server, cert)
    deliver(server, n=1)
    assert p.stat()[0] == 1, "mail delivered during the session is not shown"
    p.quit()
    p = pop(server, cert)
    assert p.stat()[0] == 2
    p.quit()


def test_plaintext_login_needs_tls(make_server, cert):
    s = make_server()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.user("alice@example.test")
    p.quit()
    s2 = make_server({"pop3_allow_plaintext": "yes"})
    p = poplib.POP3("127.0.0.1", s2.ports["pop3"], timeout=20)
    assert "USER" in p.capa()
    p.user("alice@example.test")
    p.pass_("secret-alice")
    p.quit()


def test_pop3s_and_host_alias_login(server, cert):
    deliver(server, n=1)
    p = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], timeout=20,
                        context=tls_context(cert))
    p.user("alice@mail.example.test")
    p.pass_("secret-alice")
    assert p.stat()[0] == 1
    p.quit()


def test_curl_lists_and_fetches(server, cert):
    deliver(server, n=2)
    base = ["curl", "-sS", "--ssl-reqd", "--cacert", cert[0], "--user",
            "alice@example.test:secret-alice", "--resolve",
            f"localhost:{server.ports['pop3']}:127.0.0.1"]
    r = subprocess.run(base + [f"pop3://localhost:{server.ports['pop3']}/"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2
    r = subprocess.run(base + [f"pop3://localhost:{server.ports['pop3']}/1"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and b"Subject: msg 0" in r.stdout
    r = subprocess.run(base[:-3] + ["--user", "alice@example.test:wrong",
                       "--resolve", f"localhost:{server.ports['pop3']}:127.0.0.1",
                       f"pop3://localhost:{server.ports['pop3']}/"],
                       capture_output=True, timeout=60)
    assert r.returncode == 67


def test_sasl_plain_and_login(server, cert):
    r = Raw(server.ports["pop3s"], greet=False)
    r.starttls(tls_context(cert))
    assert r.line().startswith("+OK")
    good = base64.b64encode(b"\0bob@example.test\0secret-bob").decode()
    r.send("AUTH PLAIN " + good + "\r\n")
    assert r.line().startswith("+OK")
    r.send("STAT\r\n")
    assert r.line() == "+OK 0 0"
    r.send("QUIT\r\n")
    assert r.line().startswith("+OK")
    r = Raw(server.ports["pop3s"], greet=False)
    r.starttls(tls_context(cert))
    r.line()
    r.send("AUTH LOGIN\r\n")
    assert r.line() == "+ VXNlcm5hbWU6"
    r.send(base64.b64encode(b"carol@example.test").decode() + "\r\n")
    assert r.line() == "+ UGFzc3dvcmQ6"
    r.send(base64.b64encode(b"secret-carol").decode() + "\r\n")
    assert r.line().startswith("+OK")


def test_wrong_password_and_lockout(make_server, cert):
    s = make_server({"auth_max_failures": "3", "pop3_allow_plaintext": "yes"})
    for i in range(2):
        p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
        p.user("alice@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_(f"guess{i}")
        p.quit()
    # The third failure is an SMTP AUTH one: the counter is shared.
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.ehlo("x")
    c.starttls(context=tls_context(cert))
    c.ehlo("x")
    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0nope").decode())
    assert code == 421
    c.close()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    p.user("alice@example.test")
    with pytest.raises(poplib.error_proto, match=r"too many failed logins"):
        p.pass_("secret-alice")


def test_foreign_maildir(server, cert):
    md = server.maildir("bob")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    lf = b"Subject: lf\n\nline\n.starts with dot\n"
    crlf = b"Subject: crlf\r\n\r\nline\r\n"
    with open(os.path.join(md, "new", "1600000000.abc.otherhost"), "wb") as f:
        f.write(lf)
    with open(os.path.join(md, "cur", "1600000001.def.otherhost:2,S"), "wb") as f:
        f.write(crlf)
    os.utime(os.path.join(md, "cur", "1600000001.def.otherhost:2,S"), (1600000001, 1600000001))
    os.utime(os.path.join(md, "new", "1600000000.abc.otherhost"), (1600000000, 1600000000))
    os.system(f"chown -R nobody {md} 2>/dev/null")
    p = pop(server, cert, "bob@example.test", "secret-bob")
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert sizes == [len(lf.replace(b"\n", b"\r\n")), len(crlf)]
    _, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == lf.replace(b"\n", b"\r\n")
    _, lines, _ = p.retr(2)
    assert b"\r\n".join(lines) + b"\r\n" == crlf
    assert [l.split()[1] for l in p.uidl()[1]] == [b"1600000000.abc.otherhost",
                                                  b"1600000001.def.otherhost"]
    p.quit()


@pytest.mark.parametrize("line,want", [
    (b"FOO\r\n", b"-ERR"),
    (b"STAT\r\n", b"-ERR"),
    (b"RETR 1\r\n", b"-ERR"),
    (b"APOP alice x\r\n", b"-ERR"),
    (b"USER \xc3\xa9\r\n", b"-ERR"),
    (b"NOOP " + b"x" * 2000 + b"\r\n", b"-ERR"),
])
def test_bad_input_before_login(server, line, want):
    r = Raw(server.ports["pop3"], greet=False)
    assert r.line().startswith("+OK")
    r.send(line)
    assert r.line().encode().startswith(want)


def test_bad_input_after_login(server, cert):
    deliver(server, n=1)
    p = pop(server, cert)
    for cmd in ("RETR 0", "RETR 2", "RETR x", "DELE", "TOP 1", "LIST 1 2", "USER x",
                "RETR 99999999999"):
        with pytest.raises(poplib.error_proto):
            p._shortcmd(cmd)
    assert p.noop().startswith(b"+OK")
    p.quit()


def test_idle_timeout(make_server):
    s = make_server({"pop3_timeout": "2s"})
    r = Raw(s.ports["pop3"], greet=False)
    r.line()
    r.sock.settimeout(15)
    assert "idle timeout" in r.line()
    assert r.closed()


def test_stls_discards_pipelined_commands(server, cert):
    r = Raw(server.ports["pop3"], greet=False)
    r.line()
    r.send("STLS\r\nUSER alice@example.test\r\nPASS secret-alice\r\n")
    assert r.line().startswith("+OK")
    r.starttls(tls_context(cert))
    r.send("STAT\r\n")
    assert r.line().startswith("-ERR"), "the pipelined login was not executed"


def test_sessions_per_ip(make_server):
    s = make_server({"max_sessions_per_ip": "2"})
    a, b = Raw(s.ports["pop3"], greet=False), Raw(s.ports["pop3"], greet=False)
    a.line(), b.line()
    c = Raw(s.ports["pop3"], greet=False)
    assert c.line().startswith("-ERR [SYS/TEMP]")
    assert c.closed()


def test_list_size_exact_for_submitted_mail(server, cert):
    """LIST/STAT must give the exact size RETR sends (RFC 1939), also when
    the trace headers have extra lines (TLS cipher, authenticated sender)
    or lose one (no "for <...>" with two recipients): the ",W=" size counts
    the header's line ends, it does not assume five."""
    body = b"Subject: sized\r\n\r\n" + b"line\r\n" * 50
    c = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30)
    c.ehlo("client.example")
    c.starttls(context=tls_context(cert))
    c.ehlo("client.example")
    c.login("alice@example.test", "secret-alice")
    c.sendmail("alice@example.test", ["alice@example.test"], body)
    c.sendmail("alice@example.test", ["alice@example.test", "bob@example.test"], body)
    c.quit()
    deliver(server)  # port 25, no TLS, one recipient
    p = pop(server, cert)
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert len(sizes) == 3
    for i, size in enumerate(sizes, 1):
        _, lines, octets = p.retr(i)
        assert size == octets == len(b"\r\n".join(lines) + b"\r\n"), (i, size, octets)
    p.quit()
