"""Review: OpenDKIM (Debian's) as a signing milter after a milter that
changes the message: the signature must verify on the relayed copy."""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from conftest import free_port, run_user, wait_for
from hostile_milter import HostileMilter

MSG = (b"From: Alice <alice@example.test>\r\nTo: far@remote.example\r\n"
       b"Subject: sign me\r\nDate: Fri, 04 Dec 2026 04:00:00 +0000\r\n"
       b"Message-ID: <d1@example.test>\r\n\r\nline  one \r\nline two\r\n\r\n")


def relaxed_body(b):
    lines = b.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = [re.sub(rb"[ \t]+", b" ", l).rstrip(b" \t") for l in lines]
    while out and out[-1] == b"":
        out.pop()
    return b"".join(l + b"\r\n" for l in out)


def relaxed_hdr(name, value):
    v = re.sub(rb"\r\n", b"", value)
    v = re.sub(rb"[ \t]+", b" ", v).strip(b" \t")
    return name.lower().strip() + b":" + v


def split_headers(data):
    head, _, body = data.partition(b"\r\n\r\n")
    hs = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and hs:
            hs[-1][1] += b"\r\n" + line
        else:
            n, _, v = line.partition(b":")
            hs.append([n, v])
    return hs, body


def verify(data, pub):
    hs, body = split_headers(data)
    sig = [h for h in hs if h[0].lower() == b"dkim-signature"]
    assert sig, "no DKIM-Signature"
    sv = sig[0][1]
    tags = {k.strip(): v for k, _, v in (t.partition(b"=") for t in
            re.sub(rb"\s+", b"", sv).split(b";")) if k.strip()}
    bh = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    if bh != tags[b"bh"]:
        return "body hash mismatch"
    names = tags[b"h"].split(b":")
    seen = {}
    lines = []
    for n in names:
        cands = [h for h in hs if h[0].lower() == n.lower()]
        k = seen.get(n.lower(), 0)
        seen[n.lower()] = k + 1
        if k < len(cands):
            h = cands[-1 - k]
            lines.append(relaxed_hdr(h[0], h[1]) + b"\r\n")
    unsigned = re.sub(rb"(b=)[^;]*", rb"\1", sv)
    lines.append(relaxed_hdr(sig[0][0], unsigned))
    try:
        pub.verify(base64.b64decode(tags[b"b"]), b"".join(lines),
                   padding.PKCS1v15(), hashes.SHA256())
    except Exception as e:
        return "bad signature: %r" % e
    return "ok"


@pytest.fixture
def opendkim():
    if shutil.which("opendkim") is None:
        pytest.skip("no opendkim")
    base = tempfile.mkdtemp(prefix="postern-odkim-")
    os.chmod(base, 0o755)
    subprocess.run(["opendkim-genkey", "-D", base, "-d", "example.test", "-s", "t"], check=True)
    port = free_port()
    conf = os.path.join(base, "opendkim.conf")
    with open(conf, "w") as f:
        f.write(f"""Socket inet:{port}@127.0.0.1
Mode s
Domain example.test
Selector t
KeyFile {base}/t.private
Canonicalization relaxed/relaxed
SignHeaders From,To,Subject,Date,Message-ID,X-Added
Background no
Syslog no
RequireSafeKeys no
InternalHosts 127.0.0.1
UserID {run_user()}
PidFile {base}/pid
""")
    subprocess.run(["chown", "-R", run_user(), base])
    proc = subprocess.Popen(["opendkim", "-f", "-x", conf], stderr=open(base + "/err", "wb"))
    time.sleep(1.5)
    txt = open(base + "/t.txt").read()
    p = "".join(re.findall(r'"([^"]*)"', txt))
    p = re.search(r"p=([A-Za-z0-9+/=]+)", p).group(1)
    der = base64.b64decode(p)
    pub = serialization.load_der_public_key(der)
    yield port, pub
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mods", [
    [],
    [b"hX-Added\0by first milter\0"],
    [b"bnew body\r\nafter  milter\r\n", b"hX-Added\0yes\0"],
])
def test_opendkim_signs_what_is_sent(make_server, opendkim, sinks, mods):
    port, pub = opendkim
    mx = sinks("127.0.0.2")
    first = HostileMilter(lambda cmd, data, st: (list(mods) + [b"c"]) if cmd == "E" else None)
    try:
        s = make_server({"milters": f"{first.spec()} inet:127.0.0.1:{port}",
                         "relay": "addresses", "relay_addresses": "127.0.0.1",
                         "queue_retry_min": "1s"})
        import smtplib
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.sendmail("alice@example.test", ["far@remote.example"], MSG)
        wait_for(lambda: mx.messages, 20, "relay")
        data = mx.messages[0]["data"]
        assert verify(data, pub) == "ok", data
    finally:
        first.close()
