"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with the test
certificate, through smtplib, swaks, curl and a raw socket."""
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile

import pytest

from conftest import Raw, tls_context


def test_starttls_smtplib(server, cert):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=20) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=tls_context(cert))
        assert code == 220
        s.ehlo("client.example")
        assert not s.has_extn("starttls"), "STARTTLS is not offered twice"
        s.login("alice@example.test", "secret-alice")
        s.sendmail("alice@example.test", ["alice@example.test"], b"Subject: tls\r\n\r\nsecret\r\n")
    [msg] = server.messages("alice")
    assert b"with ESMTPSA id" in msg
    assert b"(authenticated sender: alice@example.test)" in msg
    assert b"secret-alice" not in msg
    assert b"(using TLSv1.3 with cipher" in msg


def test_starttls_resets_session(server, cert):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS").startswith("220 2.0.0")
    r.starttls(tls_context(cert))
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("503 5.5.1"), \
        "EHLO must be sent again after TLS"
    assert "STARTTLS" not in r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS").startswith("503 5.5.1")
    r.close()


def test_commands_pipelined_after_starttls_are_discarded(server, cert):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    # The injected MAIL/RCPT arrive in clear with STARTTLS (CVE-2011-0411).
    r.send("STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n")
    assert r.reply().startswith("220")
    r.starttls(tls_context(cert))
    assert r.cmd("EHLO client.example").startswith("250-")
    assert r.cmd("RCPT TO:<bob@example.test>").startswith("503 5.5.1"), \
        "the injected MAIL was never executed"
    r.close()
    assert server.all_files() == []


def test_starttls_not_inside_transaction(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    assert r.cmd("STARTTLS").startswith("503 5.5.1")


def test_no_tls_configured(make_server):
    s = make_server({"tls_cert": "", "tls_key": "", "submissions_listen": "", "pop3s_listen": ""})
    r = Raw(s.ports["smtp"])
    assert "STARTTLS" not in r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS").startswith("502 5.5.1")


def test_implicit_tls_smtplib(server, cert):
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=20,
                          context=tls_context(cert)) as s:
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        s.login("bob@example.test", "secret-bob")
        s.sendmail("bob@example.test", ["bob@example.test"], b"Subject: 465\r\n\r\nx\r\n")
    [msg] = server.messages("bob")
    assert b"ESMTPS" in msg


def test_implicit_tls_swaks_and_curl(server, cert, tmp_path):
    r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(server.ports["submissions"]),
                        "--tls-on-connect", "-a", "PLAIN", "-au", "carol@example.test",
                        "-ap", "secret-carol", "-f", "carol@example.test", "-t", "carol@example.test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"Subject: curl\r\n\r\nvia curl\r\n")
    r = subprocess.run(["curl", "-sS", "--cacert", cert[0],
                        f"smtps://localhost:{server.ports['submissions']}",
                        "--resolve", f"localhost:{server.ports['submissions']}:127.0.0.1",
                        "--user", "carol@example.test:secret-carol",
                        "--mail-from", "carol@example.test", "--mail-rcpt", "carol@example.test",
                        "--upload-file", str(mail)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(server.ports["smtp"]), "--tls",
                        "-f", "x@remote.example", "-t", "carol@example.test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(server.messages("carol")) == 3


def test_plaintext_on_tls_port_and_bad_handshake(server):
    sock = socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=10)
    sock.sendall(b"EHLO client.example\r\n")
    try:
        data = sock.recv(1000)
    except ConnectionResetError:
        data = b""
    assert not data.startswith(b"220"), "no SMTP in clear on the TLS port"
    sock.close()
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS").startswith("220")
    r.send(b"\x16\x03\x01garbage-not-a-hello" * 10)
    assert r.closed()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        assert s.noop()[0] == 250


def _new_cert(d, cn):
    key, crt = os.path.join(d, f"{cn}.key"), os.path.join(d, f"{cn}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "30", "-subj", f"/CN={cn}", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    os.chmod(key, 0o644)  # the daemon reads it again as its own user
    return crt, key


def _served_cert(port, pop3=False):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


@pytest.fixture
def cert_dir():
    """A directory the daemon's own user can reach (pytest's tmp_path sits
    under a 0700 directory)."""
    d = tempfile.mkdtemp(prefix="postern-cert-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_reload_picks_up_a_renewed_certificate(make_server, cert_dir):
    """A renewed certificate (same paths, new files) is served after
    posternctl reload, on submissions, STARTTLS and pop3s, without a
    restart; a TLS session opened before keeps working; a key that does
    not match fails the reload with a clear error and the old one stays."""
    d = cert_dir
    crt, key = _new_cert(d, "first")
    s = make_server({"tls_cert": crt, "tls_key": key})
    first = _served_cert(s.ports["submissions"])
    old = smtplib.SMTP_SSL("127.0.0.1", s.ports["submissions"], timeout=20,
                           context=ssl._create_unverified_context())
    old.ehlo("before.example")

    # Renewal in place, the way certbot and friends do it.
    new_crt, new_key = _new_cert(d, "second")
    shutil.copy(new_key, os.path.join(d, "second.key.bak"))
    os.replace(new_crt, crt)
    os.replace(new_key, key)
    assert _served_cert(s.ports["submissions"]) == first, "nothing changes before reload"
    s.ctl("reload")  # raises unless it succeeded
    second = _served_cert(s.ports["submissions"])
    assert second != first
    assert _served_cert(s.ports["pop3s"]) == second
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.ehlo("client.example")
        c.starttls(context=ssl._create_unverified_context())
        assert c.sock.getpeercert(binary_form=True) == second
    assert old.noop()[0] == 250, "a session from before the reload goes on"
    old.quit()
    assert "event=reload tls=reloaded" in s.log()

    # A key that does not belong to the certificate: refused as a whole.
    _, other_key = _new_cert(d, "third")
    os.replace(other_key, key)
    r = s.ctl("reload", check=False)
    assert r.returncode != 0 and "tls_key" in (r.stdout + r.stderr), r
    assert _served_cert(s.ports["submissions"]) == second
    # The right key back, but only root may read it: the daemon's user
    # cannot, and says so.
    os.replace(os.path.join(d, "second.key.bak"), key)
    if os.geteuid() == 0:
        os.chmod(key, 0o600)
        r = s.ctl("reload", check=False)
        assert r.returncode != 0 and f"tls_key {key}: Permission denied" in r.stderr, r
        assert _served_cert(s.ports["submissions"]) == second
        os.chmod(key, 0o644)
    # Readable again: the next reload takes it.
    s.ctl("reload")  # raises unless it succeeded
    assert _served_cert(s.ports["submissions"]) == second


def test_reload_with_certificate_files_this_user_cannot_see(make_server, cert):
    """The session certificate sits in a 0700 root directory while posternd
    runs as its own user: a reload must not fail for that (it cannot tell
    whether the files changed, so it leaves them and says a restart is
    needed for certificate changes)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start posternd as another user")
    assert os.stat(os.path.dirname(cert[1])).st_mode & 0o077 == 0 or \
        os.stat(cert[1]).st_mode & 0o077 == 0
    s = make_server({})
    s.ctl("reload")  # raises unless it succeeded
    assert "tls=reloaded" not in s.log()
    assert "certificate changes need a restart" in s.log()


def test_reload_failing_on_tls_installs_no_new_log_file(make_server, cert_dir):
    """A reload is all or nothing: when the new certificate cannot be
    loaded, the new log_file of the same reload is not installed either
    (it used to be switched to before the TLS part failed), so every line
    after the failed reload is still in the old file."""
    d = cert_dir
    crt, key = _new_cert(d, "first")
    logs = os.path.join(d, "log")
    os.mkdir(logs)
    os.chmod(logs, 0o777)
    old_log, new_log = os.path.join(logs, "old.log"), os.path.join(logs, "new.log")
    s = make_server({"tls_cert": crt, "tls_key": key, "log_file": old_log})
    _, other_key = _new_cert(d, "other")
    os.replace(other_key, key)  # does not match the certificate
    s.extra["log_file"] = new_log
    s.write_conf()
    r = s.ctl("reload", check=False)
    assert r.returncode != 0 and "tls_key" in (r.stdout + r.stderr), r
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test"],
                   b"Subject: after\r\n\r\nafter the failed reload\r\n")
    text = open(old_log).read()
    assert "event=reload result=fail" in text, text
    assert "event=accepted" in text.split("event=reload result=fail")[1], text
    assert not os.path.exists(new_log) or os.path.getsize(new_log) == 0, \
        open(new_log).read()
