"""Outbound smtp_tls = verify against capture sinks with certificates from
a test CA (issue 9): a certificate for the right name from the CA is
used; a wrong name or a self-signed certificate defers with the reason in
the log; smtp_tls = encrypt still sends to the self-signed one."""
import os
import pathlib
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import wait_for
from test_relay_dns import private_dns  # noqa: F401 (fixture)

BASE = {"queue_retry_min": "1s", "queue_retry_max": "2s", "relay": "addresses",
        "relay_addresses": "127.0.0.1"}
MX = [("good.example", "mx1.good.example", 10),
      ("wrong.example", "mx1.wrong.example", 10),
      ("self.example", "mx1.self.example", 10)]
HOSTS = {"mx1.good.example": "127.0.0.50", "mx1.wrong.example": "127.0.0.51",
         "mx1.self.example": "127.0.0.52"}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki():
    # The CA file is read by posternd's unprivileged user: world-readable.
    d = pathlib.Path(tempfile.mkdtemp(prefix="postern-pki-"))
    os.chmod(d, 0o755)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=postern test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)

    def leaf(name, san):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "30", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=d)
        return str(d / f"{name}.pem"), str(d / f"{name}.key")

    certs = {
        "good": leaf("mx1.good.example", "DNS:mx1.good.example,IP:127.0.0.50"),
        "wrong": leaf("other.example", "DNS:other.example"),
    }
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=mx1.self.example", "-addext", "subjectAltName=DNS:mx1.self.example",
            "-keyout", "self.key", "-out", "self.pem", cwd=d)
    certs["self"] = (str(d / "self.pem"), str(d / "self.key"))
    certs["ca"] = str(d / "ca.pem")
    os.chmod(certs["ca"], 0o644)
    yield certs
    shutil.rmtree(d, ignore_errors=True)


def server_ctx(pair):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pair)
    return ctx


def send(s, to):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", [to], b"Subject: tls\r\n\r\nx\r\n")


def test_verify_sends_only_to_verified_certificates(make_server, sinks, private_dns, pki):  # noqa: F811
    good = sinks("127.0.0.50", tls=server_ctx(pki["good"]))
    wrong = sinks("127.0.0.51", tls=server_ctx(pki["wrong"]))
    selfs = sinks("127.0.0.52", tls=server_ctx(pki["self"]))
    dns = private_dns(MX + [("ip.example", "mx1.ip.example", 10)],
                      dict(HOSTS, **{"mx1.ip.example": "127.0.0.60"}))
    port = good.controller.port
    s = make_server(dict(BASE, dns_servers=dns.server, smtp_tls="verify",
                         smtp_tls_ca_file=pki["ca"],
                         routes=f"ip.example=[127.0.0.50]:{port}"))
    send(s, "u@good.example")
    wait_for(lambda: good.messages, what="delivery over verified TLS")
    assert good.messages[0]["tls"] is True
    # A next hop written as [IP]: the certificate must carry that IP.
    send(s, "u@ip.example")
    wait_for(lambda: len(good.messages) == 2, what="delivery to [IP] over verified TLS")
    send(s, "u@wrong.example")
    send(s, "u@self.example")
    wait_for(lambda: "to=<u@wrong.example>, relay=" in s.log() and
             "to=<u@self.example>, relay=" in s.log(), what="both attempts logged")
    log = s.log().splitlines()
    w = [l for l in log if "to=<u@wrong.example>" in l and "status=" in l][0]
    f = [l for l in log if "to=<u@self.example>" in l and "status=" in l][0]
    assert "status=deferred" in w and "not verified" in w and "mismatch" in w, w
    assert "status=deferred" in f and "not verified" in f and "self" in f.lower(), f
    time.sleep(1)
    assert wrong.messages == [] and selfs.messages == []


def test_encrypt_still_sends_to_self_signed(make_server, sinks, private_dns, pki):  # noqa: F811
    selfs = sinks("127.0.0.52", tls=server_ctx(pki["self"]))
    dns = private_dns(MX, HOSTS)
    s = make_server(dict(BASE, dns_servers=dns.server, smtp_tls="encrypt"))
    send(s, "u@self.example")
    wait_for(lambda: selfs.messages, what="delivery over unverified TLS")
    assert selfs.messages[0]["tls"] is True


# ---- names only from subjectAltName (RFC 6125 6.4.4), review of issue 9 --

def _mk(d, name, cn, san, ca, ca_key, nb, na, is_ca=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(ca.subject if ca else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]),
                            critical=False)
    b = b.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    cert = b.sign(ca_key or key, hashes.SHA256())
    cp, kp = d / f"{name}.pem", d / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cert, key, (str(cp), str(kp))


@pytest.fixture(scope="module")
def pki_names():
    pytest.importorskip("cryptography")
    import datetime
    d = pathlib.Path(tempfile.mkdtemp(prefix="postern-pki2-"))
    os.chmod(d, 0o755)
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca, cak, capair = _mk(d, "ca", "postern names CA", None, None, None, now - day,
                          now + 30 * day, is_ca=True)
    os.chmod(capair[0], 0o644)
    out = {"ca": capair[0]}
    # CN names the host, no subjectAltName: OpenSSL's CN fallback took it.
    _, _, out["cn"] = _mk(d, "cn", "mx1.cn.example", None, ca, cak, now - day, now + 30 * day)
    # CN names the host, the SAN names another: the SAN decides.
    _, _, out["other"] = _mk(d, "other", "mx1.other.example", ["elsewhere.example"], ca, cak,
                             now - day, now + 30 * day)
    _, _, out["expired"] = _mk(d, "expired", "mx1.expired.example", ["mx1.expired.example"],
                               ca, cak, now - 60 * day, now - 30 * day)
    _, _, out["partial"] = _mk(d, "partial", "m*.partial.example", ["m*.partial.example"],
                               ca, cak, now - day, now + 30 * day)
    _, _, out["wild"] = _mk(d, "wild", "*.wild.example", ["*.wild.example"], ca, cak,
                            now - day, now + 30 * day)
    yield out
    shutil.rmtree(d, ignore_errors=True)


def test_verify_takes_names_from_the_san_only(make_server, sinks, private_dns, pki_names):  # noqa: F811
    ips = {"cn": "127.0.0.61", "other": "127.0.0.62", "expired": "127.0.0.63",
           "partial": "127.0.0.64", "wild": "127.0.0.65"}
    sk = {k: sinks(ip, tls=server_ctx(pki_names[k])) for k, ip in ips.items()}
    dns = private_dns([(f"{k}.example", f"mx1.{k}.example", 10) for k in ips],
                      {f"mx1.{k}.example": ip for k, ip in ips.items()})
    s = make_server(dict(BASE, dns_servers=dns.server, smtp_tls="verify",
                         smtp_tls_ca_file=pki_names["ca"]))
    for k in ips:
        send(s, f"u@{k}.example")
    wait_for(lambda: all(f"to=<u@{k}.example>, relay=" in s.log() for k in ips),
             timeout=40, what="an attempt to each")
    wait_for(lambda: sk["wild"].messages, what="delivery to the wildcard name")
    time.sleep(1)
    log = s.log().splitlines()
    for k in ("cn", "other", "expired", "partial"):
        assert sk[k].messages == [], f"{k}: sent over a certificate that does not verify"
        line = [l for l in log if f"to=<u@{k}.example>" in l and "status=" in l][0]
        assert "status=deferred" in line and "not verified (smtp_tls is verify)" in line, line
    for k in ("cn", "other", "partial"):
        line = [l for l in log if f"to=<u@{k}.example>" in l and "status=" in l][0]
        assert "mismatch" in line, line
    # The server's own reason has no '=' to be escaped in the log.
    assert r"\x3d" not in "\n".join(l for l in log if "not verified" in l)
