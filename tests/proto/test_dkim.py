"""DKIM signing (issue 15 part 1) against the real daemon: mail submitted
with AUTH to a remote address arrives at the sink signed, and two
independent verifiers accept it: python3-dkim (dkim.verify with a lookup
function that returns the published key) and OpenDKIM (opendkim -t in
verify mode with TestPublicKeys).  RSA, Ed25519 and both; tricky
messages; what is not signed; milters before signing; posternctl dkim."""
import json
import os
import re
import smtplib
import stat
import subprocess
import tempfile
import time

import dkim
import pytest

from conftest import POSTERND, Raw, wait_for

BASE = {"queue_retry_min": "1s", "queue_retry_max": "2s", "relay": "none"}


def txt_records(out):
    """{name: text} from keygen's / dkim txt's TXT lines."""
    recs = {}
    for line in out.splitlines():
        m = re.match(r'^(\S+)\. IN TXT (.*)$', line)
        if m:
            recs[m.group(1)] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    return recs


def keyed_server(make_server, types=("rsa",), domain="example.test", extra=None):
    s = make_server(dict(BASE, **(extra or {})), start=False)
    recs = {}
    for i, t in enumerate(types):
        r = s.ctl("dkim", "keygen", domain, "--type", t, "--selector", f"{t}{i}")
        recs.update(txt_records(r.stdout))
        # A second key is made inactive (publish first), then activated.
        s.ctl("dkim", "activate", domain, f"{t}{i}")
    s.start()
    s.recs = recs
    return s


def submit(s, msg, frm="alice@example.test", to=("far@remote.example",)):
    with smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30) as c:
        c.starttls()
        c.login("alice@example.test", "secret-alice")
        c.sendmail(frm, list(to), msg)


def relayed(mx, n=1):
    wait_for(lambda: len(mx.messages) >= n, what="relayed mail")
    return mx.messages[n - 1]["data"]


def py_verify(data, recs):
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return recs.get(name.rstrip("."), "").encode()

    def one(i):
        try:
            return dkim.DKIM(data).verify(idx=i, dnsfunc=dnsfunc)
        except dkim.ValidationError:
            return False

    n = len([l for l in data.split(b"\r\n") if l.lower().startswith(b"dkim-signature:")])
    return [one(i) for i in range(n)]


def opendkim_verify(data, recs):
    """opendkim -t: the dkim= results of its Authentication-Results."""
    base = tempfile.mkdtemp(prefix="postern-odkim-")
    keys, conf, msg = (os.path.join(base, n) for n in ("keys", "conf", "msg"))
    with open(keys, "w") as f:
        for name, txt in recs.items():
            f.write(f"{name} {txt}\n")
    with open(conf, "w") as f:
        f.write(f"Mode v\nTestPublicKeys {keys}\nSyslog no\n")
    with open(msg, "wb") as f:
        f.write(data)
    r = subprocess.run(["opendkim", "-x", conf, "-t", msg, "-vv"],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    return re.findall(r"dkim=(\w+)", out), out


def header_block(data):
    return data.split(b"\r\n\r\n", 1)[0]


MSG = (b"From: Alice <alice@example.test>\r\nTo: Far <far@remote.example>\r\n"
       b"Subject: signed\r\nDate: Fri, 04 Dec 2026 18:00:00 +0000\r\n"
       b"Message-ID: <1@example.test>\r\n\r\nHello.\r\n")


@pytest.mark.parametrize("types,algs", [
    (("rsa",), ["rsa-sha256"]),
    (("ed25519",), ["ed25519-sha256"]),
    (("rsa", "ed25519"), ["rsa-sha256", "ed25519-sha256"]),
])
def test_signed_and_verified(make_server, sinks, types, algs):
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, types)
    submit(s, MSG)
    data = relayed(mx)
    hdr = header_block(data)
    # The signatures go first, above postern's Received; never Return-Path.
    assert hdr.startswith(b"DKIM-Signature: v=1; a=")
    assert hdr.count(b"DKIM-Signature:") == len(algs)
    assert b"Return-Path" not in hdr
    for a in algs:
        assert f"a={a};".encode() in hdr
    assert b"c=relaxed/relaxed;" in hdr and b"d=example.test;" in hdr
    # Oversigned (RFC 6376 8.15): From always, the single-instance
    # fields that are there once more than they occur.
    h = re.search(rb"h=([^;]*);", hdr).group(1)
    assert re.sub(rb"\s", b"", h) == (b"from:from:subject:subject:date:date:to:to:"
                                      b"message-id:message-id")
    assert re.search(rb"t=\d+;", hdr) and b"x=" not in hdr
    for line in hdr.split(b"\r\n"):
        assert len(line) <= 78, line
    assert py_verify(data, s.recs) == [True] * len(algs)
    res, out = opendkim_verify(data, s.recs)
    assert res == ["pass"] * len(algs), out
    log = s.log()
    m = re.search(r"event=dkim result=signed d=example\.test s=(\S+) a=(\S+)", log)
    assert m and sorted(m.group(2).split(",")) == sorted(algs)


TRICKY = {
    "folded": b"From: Alice\r\n <alice@example.test>\r\nTo: far@remote.example\r\n"
              b"Subject: a folded\r\n\tsubject  with   spaces \r\n\r\nbody\r\n",
    "long": b"From: alice@example.test\r\nTo: far@remote.example\r\nSubject: "
            + b"x" * 900 + b"\r\nX-Long: " + b"\r\n ".join([b" ".join([b"word"] * 150)] * 4)
            + b"\r\n\r\n" + b"y" * 990 + b"\r\n",
    "duplicate": b"From: alice@example.test\r\nSubject: one\r\nTo: far@remote.example\r\n"
                 b"Subject: two\r\nTo: other@remote.example\r\n\r\nbody\r\n",
    "8bit": "From: Ålice <alice@example.test>\r\nTo: far@remote.example\r\n"
            "Subject: café\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nnaïve café \xa0 \r\n\r\n\r\n".encode(),
    "no-trailing-newline": b"From: alice@example.test\r\nTo: far@remote.example\r\n"
                           b"Subject: no newline\r\n\r\nlast line",
    "empty-body": b"From: alice@example.test\r\nTo: far@remote.example\r\nSubject: empty\r\n\r\n",
    "no-body-at-all": b"From: alice@example.test\r\nTo: far@remote.example\r\nSubject: hdr",
    "trailing-space-lines": b"From: alice@example.test\r\nTo: far@remote.example\r\n\r\n"
                            b"a  \t b \r\n \t \r\n\r\n",
}


def test_tricky_messages(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa", "ed25519"))
    for i, (name, msg) in enumerate(TRICKY.items(), 1):
        submit(s, msg)
        data = relayed(mx, i)
        assert py_verify(data, s.recs) == [True, True], name
        res, out = opendkim_verify(data, s.recs)
        assert res == ["pass", "pass"], (name, out)


def test_duplicate_from_oversigned(make_server, sinks):
    """A From added on the way breaks the signature (From oversigned)."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    submit(s, MSG)
    data = relayed(mx)
    assert py_verify(data, s.recs) == [True]
    hdr, body = data.split(b"\r\n\r\n", 1)
    forged = hdr + b"\r\nFrom: mallory@evil.example\r\n\r\n" + body
    assert py_verify(forged, s.recs) == [False]
    changed = data.replace(b"Hello.", b"Hellp.")
    assert py_verify(changed, s.recs) == [False]


def test_expire(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("ed25519",), extra={"dkim_expire": "7d"})
    submit(s, MSG)
    data = relayed(mx)
    t = int(re.search(rb"t=(\d+);", data).group(1))
    x = int(re.search(rb"x=(\d+);", data).group(1))
    assert x - t == 7 * 86400 and abs(t - time.time()) < 60
    assert py_verify(data, s.recs) == [True]


def test_not_signed(make_server, sinks):
    """Inbound mail for a local user, a domain without a key, a message
    without one From, dkim_sign = no: delivered, unsigned."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    # Unauthenticated inbound mail for a local user.
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.sendmail("x@remote.example", ["bob@example.test"],
                   b"From: alice@example.test\r\nSubject: in\r\n\r\nx\r\n")
    got = wait_for(lambda: s.messages("bob"), what="local delivery")
    assert b"DKIM-Signature" not in got[0]
    # A From domain without a key.
    submit(s, b"From: alice@other.example\r\nTo: far@remote.example\r\n\r\nx\r\n")
    assert b"DKIM-Signature" not in relayed(mx, 1)
    # Two From fields: no single domain to sign for.
    submit(s, b"From: alice@example.test\r\nFrom: alice@example.test\r\n\r\nx\r\n")
    assert b"DKIM-Signature" not in relayed(mx, 2)
    log = s.log()
    assert "event=dkim result=skipped reason=no-key" in log
    assert "event=dkim result=skipped reason=no-from" in log
    # dkim_sign = no at reload: nothing signed any more.
    s.extra["dkim_sign"] = "no"
    s.write_conf()
    s.ctl("reload")
    submit(s, MSG)
    assert b"DKIM-Signature" not in relayed(mx, 3)


def test_local_copy_unsigned_queue_copy_signed(make_server, sinks):
    """One message to a local and a remote recipient: one signing, the
    queue copy only."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    submit(s, MSG, to=("bob@example.test", "far@remote.example", "far2@remote.example"))
    data = relayed(mx)
    assert py_verify(data, s.recs) == [True]
    got = wait_for(lambda: s.messages("bob"), what="local delivery")
    assert b"DKIM-Signature" not in got[0]
    assert s.log().count("event=dkim result=signed") == 1


def test_milter_changes_before_signing(make_server, sinks, milters):
    """A milter's header change is part of what is signed."""
    m = milters({"mods": [["addheader", "X-Milter", "added"],
                          ["chgheader", "Subject", 1, "changed by milter"]]})
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",),
                     extra={"milters": m.spec(), "milter_command_timeout": "5s",
                            "milter_content_timeout": "5s"})
    submit(s, MSG)
    data = relayed(mx)
    hdr = header_block(data)
    assert b"X-Milter: added" in hdr and b"Subject: changed by milter" in hdr
    assert py_verify(data, s.recs) == [True]
    # Undo the milter's change: the signature no longer verifies.
    undone = data.replace(b"Subject: changed by milter", b"Subject: signed")
    assert py_verify(undone, s.recs) == [False]


def test_milter_headers_past_header_size_limit(make_server, sinks, milters):
    """The header section was under header_size_limit at DATA; a milter's
    additions (rspamd adds several) take it past: still signed, and the
    signature covers them."""
    m = milters({"mods": [["addheader", "X-Spam-Report", "x" * 900]]})
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",),
                     extra={"milters": m.spec(), "milter_command_timeout": "5s",
                            "milter_content_timeout": "5s",
                            "header_size_limit": "1024"})
    big = MSG.replace(b"Subject: signed", b"Subject: " + b"s" * 500)
    submit(s, big)
    data = relayed(mx)
    assert len(header_block(data)) > 1024
    assert py_verify(data, s.recs) == [True]
    assert "event=dkim result=signed" in s.log()


def test_released_quarantine_local_copy_has_no_signature(make_server, sinks, milters):
    """A quarantined message to a local and a remote recipient: the queue
    copy is signed, so the released local copy must leave those fields
    out (a copy stored at DATA has none); the remote one verifies."""
    m = milters({"mods": [["quarantine", "held"]]})
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",),
                     extra={"milters": m.spec(), "milter_command_timeout": "5s",
                            "milter_content_timeout": "5s"})
    submit(s, MSG, to=("bob@example.test", "far@remote.example"))
    js = wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout), what="queue")
    s.ctl("queue", "release", js[0]["id"])
    got = wait_for(lambda: s.messages("bob"), 20, "bob's copy")[0]
    assert got.startswith(b"Return-Path: <alice@example.test>\nReceived: "), got[:200]
    assert b"DKIM-Signature" not in got
    assert got.endswith(b"\nHello.\n")
    assert py_verify(relayed(mx), s.recs) == [True]


def test_large_spooled_message(make_server, sinks):
    """A message big enough to be spooled to disk is signed over all of it."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("ed25519",))
    body = b"".join(b"line %d of a long message  \r\n" % i for i in range(120000))
    submit(s, b"From: alice@example.test\r\nTo: far@remote.example\r\n\r\n" + body)
    data = relayed(mx)
    assert len(data) > 3_000_000
    assert py_verify(data, s.recs) == [True]


def test_keygen_files_and_names(make_server):
    s = make_server(dict(BASE), start=False)
    r = s.ctl("dkim", "keygen", "Example.TEST")
    recs = txt_records(r.stdout)
    (name, txt), = recs.items()
    assert re.fullmatch(r"rsa-\d{8}\._domainkey\.example\.test", name)
    assert txt.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # 2048-bit SPKI
    # Strings of at most 255 octets in the printed record.
    assert all(len(x) <= 255 for x in re.findall(r'"([^"]*)"', r.stdout))
    r = s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "ed")
    assert 'IN TXT "v=DKIM1; k=ed25519; p=' in r.stdout
    d = os.path.join(s.data, "dkim")
    for p in (d, os.path.join(d, "example.test")):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
    for f in os.listdir(os.path.join(d, "example.test")):
        assert stat.S_IMODE(os.stat(os.path.join(d, "example.test", f)).st_mode) == 0o600
    # The same selector again: refused, the key unchanged.
    key = os.path.join(d, "example.test", "ed.key")
    before = open(key).read()
    r = s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "ed",
              check=False)
    assert r.returncode == 1 and "exists" in r.stderr and open(key).read() == before
    # Path tricks and bad names.
    for dom in ("../x", "a/b", "", ".", "..", "-a.example", "a..b"):
        r = s.ctl("dkim", "keygen", dom, check=False)
        assert r.returncode == 1 and "bad domain name" in r.stderr, dom
    for sel in ("../x", "a/b", "", "x_y"):
        r = s.ctl("dkim", "keygen", "example.test", "--selector", sel, check=False)
        assert r.returncode == 1 and "bad selector name" in r.stderr, sel
    r = s.ctl("dkim", "keygen", "example.test", "--type", "dsa", check=False)
    assert r.returncode == 2
    assert sorted(os.listdir(d)) == ["example.test"]
    lines = s.ctl("dkim", "list").stdout.splitlines()
    assert lines == sorted(lines) and len(lines) == 2
    # The domain's first key is active at once; the Ed25519 one made
    # while the RSA key signs waits for its TXT record and dkim activate.
    assert lines[0] == "example.test\ted\ted25519\tinactive"
    assert re.fullmatch(r"example\.test\trsa-\d{8}\trsa\tactive", lines[1])


def test_rotation(make_server, sinks):
    """Rotation with two selectors: the new key waits until activated,
    then signs; the old one is retired."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE), start=False)
    recs = txt_records(s.ctl("dkim", "keygen", "example.test", "--selector", "old").stdout)
    s.start()
    recs.update(txt_records(s.ctl("dkim", "keygen", "example.test", "--selector", "new").stdout))
    assert "inactive" in s.ctl("dkim", "list").stdout
    s.ctl("reload")
    submit(s, MSG)
    assert b"s=old;" in relayed(mx, 1)
    s.ctl("dkim", "activate", "example.test", "new")
    lines = s.ctl("dkim", "list").stdout.splitlines()
    assert lines == ["example.test\tnew\trsa\tactive", "example.test\told\trsa\tinactive"]
    s.ctl("reload")
    submit(s, MSG)
    data = relayed(mx, 2)
    assert b"s=new;" in data and b"s=old;" not in data
    assert py_verify(data, recs) == [True]
    # dkim txt prints the record keygen printed.
    assert txt_records(s.ctl("dkim", "txt", "example.test", "new").stdout) == \
        {"new._domainkey.example.test": recs["new._domainkey.example.test"]}
    assert s.ctl("dkim", "txt", "example.test", "old").stdout.startswith(
        "old._domainkey.example.test. IN TXT")
    s.ctl("dkim", "retire", "example.test", "new")
    s.ctl("reload")
    submit(s, MSG)
    assert b"DKIM-Signature" not in relayed(mx, 3)


def test_bad_key_file(make_server, sinks):
    """A key file with loose modes or a link: posternd refuses to start
    with it; at reload the old keys stay and reload says why."""
    s = make_server(dict(BASE), start=False)
    s.ctl("dkim", "keygen", "example.test", "--selector", "k1")
    key = os.path.join(s.data, "dkim", "example.test", "k1.key")
    os.chmod(key, 0o644)
    # posternctl check says what start-up would refuse.
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "k1.key must be a regular file" in r.stdout + r.stderr
    p = subprocess.run([os.environ["POSTERND"], "-c", s.conf, "-f"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "k1.key must be a regular file" in p.stderr
    os.chmod(key, 0o600)
    s.start()
    mx = sinks("127.0.0.2")
    os.rename(key, key + ".real")
    os.symlink(key + ".real", key)
    r = s.ctl("reload", check=False)
    assert r.returncode != 0 and "k1.key" in (r.stdout + r.stderr)
    assert re.search(r"event=reload result=fail error=\"dkim:.*k1\.key.*symbolic", s.log())
    submit(s, MSG)
    assert b"s=k1;" in relayed(mx)  # the old key set still signs


def test_too_many_fields_goes_unsigned(make_server, sinks):
    """More header fields than the signer looks at: delivered, unsigned,
    logged (a verifier would choose among all of them)."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("ed25519",))
    msg = (b"From: alice@example.test\r\nTo: far@remote.example\r\n"
           + b"X-N: 1\r\n" * 1001 + b"\r\nbody\r\n")
    submit(s, msg)
    data = relayed(mx)
    assert b"DKIM-Signature" not in data and data.count(b"X-N: 1") == 1001
    assert "event=dkim result=skipped reason=header" in s.log()


def test_signed_once_across_retries(make_server, sinks):
    """The queue entry holds the signature: a retry sends the same bytes
    (signed once, at acceptance), still valid."""
    s = keyed_server(make_server, ("rsa",))
    submit(s, MSG)
    entries = os.path.join(s.data, "queue", "entries")
    msgs = wait_for(lambda: [f for f in os.listdir(entries) if f.endswith(".msg")],
                    what="queue entry")
    with open(os.path.join(entries, msgs[0]), "rb") as f:
        env, body = f.read().split(b"\n\n", 1)
    assert body.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    # The RFC 1870 size as relayed counts the signature (CRLF ends).
    size = int(re.search(rb"^size\t(\d+)$", env, re.M).group(1))
    assert size == len(body) + body.count(b"\n")
    # Nothing listens yet: the first attempts fail; then the sink comes.
    wait_for(lambda: "status=deferred" in s.log(), what="a deferred attempt")
    mx = sinks("127.0.0.2")
    data = relayed(mx)
    assert data.count(b"DKIM-Signature:") == 1
    assert data.replace(b"\r\n", b"\n").startswith(body.split(b"\nReceived:")[0])
    assert py_verify(data, s.recs) == [True]
    assert s.log().count("event=dkim result=signed") == 1


def test_key_file_rules_in_check(make_server):
    """What start-up refuses, as posternctl check reports it: a second
    hard link, a directory others may write, a key that is not PEM."""
    s = make_server(dict(BASE), start=False)
    s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "k1")
    d = os.path.join(s.data, "dkim", "example.test")
    key = os.path.join(d, "k1.key")
    assert s.ctl("check").returncode == 0
    os.link(key, os.path.join(s.data, "k1.copy"))
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "one link" in r.stdout + r.stderr
    os.unlink(os.path.join(s.data, "k1.copy"))
    os.chmod(d, 0o770)
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "writable by it only" in r.stdout + r.stderr
    os.chmod(d, 0o700)
    with open(key, "w") as f:
        f.write("not a key\n")
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "not an RSA or Ed25519 private key" in r.stdout + r.stderr
    # dkim_sign = no reads no key at all.
    s.extra["dkim_sign"] = "no"
    s.write_conf()
    assert s.ctl("check").returncode == 0
    s.extra["dkim_sign"] = "yes"
    s.write_conf()
    # An inactive key is not read at all.
    os.unlink(os.path.join(d, "k1.active"))
    assert s.ctl("check").returncode == 0


def test_stray_file_in_dkim_dir(make_server, sinks):
    """A file in data_dir/dkim whose name could be a domain's (notes.txt)
    is passed over with a warning: check passes, the server starts and
    reloads and still signs; a symbolic link named as a domain is still
    refused (its keys are not followed elsewhere)."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE), start=False)
    s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "k1")
    dk = os.path.join(s.data, "dkim")
    with open(os.path.join(dk, "notes.txt"), "w") as f:
        f.write("rotate in March\n")
    assert s.ctl("check").returncode == 0
    s.start()
    assert s.ctl("reload").returncode == 0
    assert "reason=\"not a directory\"" in s.log()
    submit(s, MSG)
    assert b"DKIM-Signature:" in relayed(mx)
    os.symlink(os.path.join(dk, "example.test"), os.path.join(dk, "other.example"))
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "other.example" in r.stdout + r.stderr


def test_parallel_sessions_all_verify(make_server, sinks):
    """Messages signed at once on several storage workers with the shared
    key set: every one verifies."""
    import threading
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa", "ed25519"))
    errors = []

    def client(n):
        # One login per session (a login storm is another test's), five
        # messages each, sessions in parallel.
        try:
            with smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=60) as c:
                c.starttls()
                c.login("alice@example.test", "secret-alice")
                for i in range(5):
                    c.sendmail("alice@example.test", ["far@remote.example"],
                               MSG.replace(b"Hello.", b"Hello %d/%d." % (n, i)))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(0.3)  # logins one after another; the mail in parallel
    for t in threads:
        t.join(120)
    assert not errors, errors
    wait_for(lambda: len(mx.messages) >= 30, timeout=60, what="30 relayed")
    bodies = set()
    for m in mx.messages:
        assert py_verify(m["data"], s.recs) == [True, True]
        bodies.add(m["data"].split(b"\r\n\r\n", 1)[1])
    assert len(bodies) == 30


@pytest.mark.parametrize("frm,match,signed", [
    ("ceo@other.test", "submission", False),
    ("ceo@other.test", "no", False),
    ("bob@example.test", "submission", False),
    ("bob@example.test", "yes", False),
    ("bob@example.test", "no", True),
    ("info@example.test", "submission", True),
    ("ALICE@Example.TEST", "submission", True),
])
def test_from_not_owned(make_server, sinks, frm, match, signed):
    """An authenticated user gets mail signed only for a From it owns: the
    domain of one of its addresses (its own and the aliases to it), and
    under auth_sender_match (the default) one of those addresses."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, auth_sender_match=match), start=False)
    s.ctl("domain", "add", "other.test")
    recs = {}
    for d in ("example.test", "other.test"):
        recs.update(txt_records(s.ctl("dkim", "keygen", d, "--selector", "k").stdout))
    s.start()
    submit(s, b"From: Boss <" + frm.encode() + b">\r\nTo: far@remote.example\r\n"
              b"Subject: wire the money\r\n\r\nx\r\n")
    data = relayed(mx)
    if signed:
        assert py_verify(data, recs) == [True]
        assert "event=dkim result=signed d=example.test" in s.log()
    else:
        assert b"DKIM-Signature" not in data
        assert "event=dkim result=skipped reason=from-not-owned" in s.log()


@pytest.mark.parametrize("relay,accept,signed", [
    ("addresses", False, True),
    ("none", False, False),
    ("local-hosts", False, False),
    ("local-users", False, False),
    ("local-hosts", True, False),
])
def test_unauthenticated_signed_only_with_relay_addresses(make_server, sinks, relay,
                                                         accept, signed):
    """An unauthenticated client is signed for only with relay = addresses
    and the client in relay_addresses; in the other modes relay_addresses
    (backup-MX targets) and the accept list's IPs do not sign."""
    mx = sinks("127.0.0.2")
    extra = {"relay": relay, "relay_addresses": "127.0.0.0/8"}
    if accept:
        d = tempfile.mkdtemp(prefix="postern-accept-")
        extra["accept_file"] = os.path.join(d, "accept.txt")
        with open(extra["accept_file"], "w") as f:
            f.write("127.0.0.1\n")
    s = keyed_server(make_server, ("rsa",), extra=extra)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.sendmail("alice@example.test", ["fwd@example.test"],
                   b"From: ceo@example.test\r\nTo: fwd@example.test\r\n"
                   b"Subject: hi\r\n\r\nx\r\n")
    data = relayed(mx)
    if signed:
        assert py_verify(data, s.recs) == [True]
    else:
        assert b"DKIM-Signature" not in data


MALFORMED = {
    "no-colon-line": b"From: alice@example.test\r\nTo: far@remote.example\r\n"
                     b"nocolon line\r\nSubject: after\r\n\r\nx\r\n",
    "leading-contline": b" leading continuation\r\nFrom: alice@example.test\r\n"
                        b"To: far@remote.example\r\n\r\nx\r\n",
    "ws-before-colon": b"From: alice@example.test\r\nTo: far@remote.example\r\n"
                       b"Subject : spaced name\r\n\r\nx\r\n",
    "empty-name": b"From: alice@example.test\r\n: empty name\r\nTo: far@remote.example\r\n"
                  b"\r\nx\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_headers(make_server, sinks, name):
    """A header line without a proper field name: verifiers would split
    the header differently, so the message goes unsigned (reason=header),
    delivered as it came; never a signature that does not verify."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    try:
        submit(s, MALFORMED[name])
    except smtplib.SMTPException as e:
        pytest.skip("refused: %s" % e)
    data = relayed(mx)
    if b"DKIM-Signature" in data:
        od, out = opendkim_verify(data, s.recs)
        assert (py_verify(data, s.recs), od) == ([True], ["pass"]), out
    else:
        assert "event=dkim result=skipped reason=header" in s.log()


def test_rsa_key_size_bounds(make_server, sinks):
    """RSA keys outside 1024..4096 bits: keygen refuses them (and bad
    --bits, and --bits with Ed25519); a key file of another size stops
    the start, fails a reload (the old keys stay) and posternctl check
    reports it.  An 8192-bit key would fail every message."""
    s = make_server(dict(BASE), start=False)
    d = os.path.join(s.data, "dkim", "example.test")
    for bits in ("512", "1023", "4097", "8192", "-1", "-2048", "abc", "", " 2048",
                 "+2048", "2048x", "99999999999999999999999"):
        r = s.ctl("dkim", "keygen", "example.test", "--selector", "b", "--bits", bits,
                  check=False)
        assert r.returncode == 1 and "--bits: 1024..4096" in r.stderr, bits
    r = s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--bits", "2048",
              check=False)
    assert r.returncode == 1 and "only with --type rsa" in r.stderr
    assert not os.path.exists(d) or os.listdir(d) == []
    recs = txt_records(s.ctl("dkim", "keygen", "example.test", "--selector", "k",
                             "--bits", "1024").stdout)
    key = os.path.join(d, "k.key")
    good = open(key, "rb").read()

    def put(bits):
        # Rewritten in place: the file stays the run user's.
        pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                              f"rsa_keygen_bits:{bits}"],
                             check=True, capture_output=True, timeout=120).stdout
        with open(key, "wb") as f:
            f.write(pem)

    for bits in (512, 4160):
        put(bits)
        r = s.ctl("check", check=False)
        assert r.returncode == 1 and f"a {bits}-bit RSA key (want 1024..4096 bits)" in \
            r.stdout + r.stderr, r.stdout + r.stderr
    p = subprocess.run([POSTERND, "-c", s.conf, "-f"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "4160-bit RSA key" in p.stderr
    with open(key, "wb") as f:
        f.write(good)
    s.start()
    mx = sinks("127.0.0.2")
    put(512)
    r = s.ctl("reload", check=False)
    assert r.returncode != 0 and "512-bit RSA key" in r.stdout + r.stderr
    submit(s, MSG)
    data = relayed(mx)
    assert b"s=k;" in data and py_verify(data, recs) == [True]  # the old key still signs


def test_oversigned_fields_break_on_addition(make_server, sinks):
    """A second Subject, To or Reply-To... added on the way (Subject
    put above, as a verifier reads bottom up) breaks the signature; a
    Resent- block may be added."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    msg = (b"From: alice@example.test\r\nTo: far@remote.example\r\n"
           b"Subject: hi\r\nReply-To: alice@example.test\r\n"
           b"List-Unsubscribe: <mailto:u@example.test>\r\n"
           b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nx\r\n")
    submit(s, msg)
    data = relayed(mx)
    h = re.sub(rb"\s", b"", re.search(rb"h=([^;]*);", header_block(data)).group(1))
    assert h.count(b"list-unsubscribe-post") == 2 and h.count(b"reply-to") == 2
    assert py_verify(data, s.recs) == [True]
    for extra in (b"Subject: changed", b"To: other@evil.example",
                  b"Reply-To: evil@evil.example",
                  b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"):
        assert py_verify(extra + b"\r\n" + data, s.recs) == [False], extra
    assert py_verify(b"Resent-From: x@remote.example\r\n" + data, s.recs) == [True]


def test_retired_key_stops_in_open_session(make_server, sinks):
    """dkim retire + reload (a compromised key): a session opened before
    the reload signs its next message with the current key set, not the
    retired key; an activated new key signs there too."""
    mx = sinks("127.0.0.2")
    s = keyed_server(make_server, ("rsa",))
    with smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30) as c:
        c.starttls()
        c.login("alice@example.test", "secret-alice")
        c.sendmail("alice@example.test", ["far@remote.example"], MSG)
        assert b"s=rsa0;" in relayed(mx, 1)
        s.ctl("dkim", "retire", "example.test", "rsa0")
        s.ctl("reload")
        wait_for(lambda: "event=reload result=ok" in s.log(), what="reload")
        c.sendmail("alice@example.test", ["far@remote.example"], MSG)
        assert b"DKIM-Signature" not in relayed(mx, 2)
        recs = txt_records(s.ctl("dkim", "keygen", "example.test", "--selector",
                                 "new").stdout)
        s.ctl("dkim", "activate", "example.test", "new")
        s.ctl("reload")
        wait_for(lambda: s.log().count("event=reload result=ok") >= 2, what="reload")
        c.sendmail("alice@example.test", ["far@remote.example"], MSG)
        data = relayed(mx, 3)
    assert b"s=new;" in data and py_verify(data, recs) == [True]


def test_keygen_waits_when_the_active_key_is_broken(make_server):
    """The domain's only active key cannot be read (damaged): the domain
    is still one that signs, so a new key waits for dkim activate."""
    s = make_server(dict(BASE), start=False)
    s.ctl("dkim", "keygen", "example.test", "--selector", "r1")
    key = os.path.join(s.data, "dkim", "example.test", "r1.key")
    with open(key, "w") as f:
        f.write("not a key\n")
    r = s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "e1")
    assert "not active" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(s.data, "dkim", "example.test", "e1.active"))
    assert os.path.exists(os.path.join(s.data, "dkim", "example.test", "r1.active"))


def test_keygen_second_type_waits(make_server, sinks):
    """Adding an Ed25519 key to a domain that signs with RSA: the new key
    is inactive until dkim activate (its TXT is not published yet), and
    keygen says what to do next; the domain's first key is active."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE), start=False)
    r = s.ctl("dkim", "keygen", "example.test", "--selector", "r1")
    assert "active (the domain's first key)" in r.stderr and "posternctl reload" in r.stderr
    recs = txt_records(r.stdout)
    r = s.ctl("dkim", "keygen", "example.test", "--type", "ed25519", "--selector", "e1")
    assert "not active" in r.stderr
    assert "posternctl dkim activate example.test e1 and posternctl reload" in r.stderr
    recs.update(txt_records(r.stdout))
    assert s.ctl("dkim", "list").stdout.splitlines() == [
        "example.test\te1\ted25519\tinactive", "example.test\tr1\trsa\tactive"]
    s.start()
    submit(s, MSG)
    data = relayed(mx, 1)
    assert header_block(data).count(b"DKIM-Signature:") == 1 and b"s=r1;" in data
    s.ctl("dkim", "activate", "example.test", "e1")
    s.ctl("reload")
    submit(s, MSG)
    data = relayed(mx, 2)
    assert b"s=r1;" in data and b"s=e1;" in data
    assert py_verify(data, recs) == [True, True]


def test_keygen_txt_owner_too_long(make_server):
    """SEL._domainkey.DOMAIN over 253 octets is no DNS name: refused,
    nothing written; at 253 it is made."""
    s = make_server(dict(BASE), start=False)
    dom = ".".join(["d" * 63] * 2) + "." + "e" * 50 + ".test"  # 183 octets
    s.ctl("domain", "add", dom)
    sel = "s" * 59  # 59 + 12 + 183 = 254
    r = s.ctl("dkim", "keygen", dom, "--selector", sel, check=False)
    assert r.returncode == 1 and "over 253 octets" in r.stderr
    d = os.path.join(s.data, "dkim", dom)
    assert not os.path.exists(d) or os.listdir(d) == []
    r = s.ctl("dkim", "keygen", dom, "--type", "ed25519", "--selector", sel[:-1])
    (name, txt), = txt_records(r.stdout).items()
    assert len(name) == 253 and txt.startswith("v=DKIM1; k=ed25519; p=")
