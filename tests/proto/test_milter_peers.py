"""clamav-milter and OpenDMARC (Debian's) as postern's milters, set up as
they are for Postfix (issue 15: "the same way as for Postfix"); OpenDMARC
after OpenDKIM, whose results it reads.

clamav-milter: a private clamd whose DatabaseDirectory holds only one
signature the test writes (the MD5 of ATTACHMENT, a .hdb), no freshclam,
on a Unix socket; clamav-milter on a loopback port, OnInfected Reject,
AddHeader Replace.

OpenDKIM and OpenDMARC: OpenDMARC has no resolver option
(opendmarc.conf(5), 1.4.2: libopendmarc and libspf2 read
/etc/resolv.conf) and Debian's OpenDKIM resolves with libunbound (from
the root servers unless told Nameservers), so both run in a network and
mount namespace of their own (unshare -mn): only a loopback interface, a
resolv.conf bind-mounted over /etc/resolv.conf that names 127.0.0.1, and a
dnsmasq (--no-resolv) on 127.0.0.1:53 inside that namespace serving the
_dmarc and DKIM key records below.  Nothing they ask can leave the
namespace.  posternd reaches them over Unix sockets (a path works across
network namespaces).  Two OpenDMARC share it: one with RejectFailures (a
DMARC failure under p=reject is refused at SMTP), one without (it only
adds Authentication-Results)."""
import base64
import hashlib
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

import pytest

from conftest import free_port, port_open, run_user, wait_for

CLAMD = "/usr/sbin/clamd"
CLAMAV_MILTER = "/usr/sbin/clamav-milter"
OPENDMARC = "/usr/sbin/opendmarc"
OPENDKIM = "/usr/sbin/opendkim"
DNSMASQ = "/usr/sbin/dnsmasq"
UNSHARE = "/usr/bin/unshare"

# The test's "virus": any file whose MD5 and size are these is infected.
ATTACHMENT = b"postern clamav-milter test attachment: not a virus, a signature\n"
SIGNATURE = "Postern.Test.Attachment"
# As clamd names a match of a signature not from ClamAV's own databases.
FOUND = SIGNATURE + ".UNOFFICIAL"


def mime(attachment, frm="Alice <alice@example.test>", subject="scan me"):
    """A multipart message with attachment base64-encoded, CRLF lines."""
    b64 = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (f"From: {frm}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            "Message-ID: <peer-%d@example.test>\r\n"
            "Date: Fri, 04 Dec 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
            "--b0\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            "--b0\r\nContent-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="t.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" % time.monotonic_ns()
            ).encode() + b64 + b"--b0--\r\n"


def plain(frm, subject="dmarc"):
    return (f"From: {frm}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            "Message-ID: <peer-%d@example.test>\r\n"
            "Date: Fri, 04 Dec 2026 04:00:00 +0000\r\n\r\nHello.\r\n"
            % time.monotonic_ns()).encode()


def need(path):
    # Not a skip: these tests must run in CI (scripts/deps.sh test installs them).
    assert os.access(path, os.X_OK), f"{path} missing: run scripts/deps.sh test"


def private_dir(prefix):
    """A 0755 directory under /tmp owned by the unprivileged run user (not
    pytest's tmp_path, whose parents are root's 0700): the milters drop to
    that user and posternd, as that user, must reach their sockets."""
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, run_user())
    return base


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def group_gone(pgid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def stop(proc, group=False):
    """Ends proc, or with group every process of the group it leads (it
    was started with start_new_session), and waits for them."""
    kill = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    if proc.poll() is None or group:
        try:
            kill(signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(10)
        if not group or group_gone(proc.pid, 10):
            return
    except subprocess.TimeoutExpired:
        pass
    try:
        kill(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
    if group:
        group_gone(proc.pid, 10)


def started(cond, proc, timeout, what, logs):
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"{what} did not start:\n" +
                                 "\n".join(read(p)[-3000:] for p in logs))
        time.sleep(0.1)


# ---- clamav-milter ----------------------------------------------------------

@pytest.fixture(scope="module")
def clamav():
    need(CLAMD)
    need(CLAMAV_MILTER)
    base = private_dir("postern-clamav-")
    db = os.path.join(base, "db")
    os.mkdir(db)
    # The only signature clamd loads (no daily/main.cvd: no freshclam).
    with open(os.path.join(db, "postern-test.hdb"), "w") as f:
        f.write(f"{hashlib.md5(ATTACHMENT).hexdigest()}:{len(ATTACHMENT)}:{SIGNATURE}\n")
    user = [f"User {run_user()}"] if os.geteuid() == 0 else []
    sock = os.path.join(base, "clamd.sock")
    with open(os.path.join(base, "clamd.conf"), "w") as f:
        f.write("\n".join(user + [
            f"LocalSocket {sock}", "LocalSocketMode 600", "Foreground yes",
            f"DatabaseDirectory {db}", f"LogFile {base}/clamd.log", "LogTime yes",
            f"PidFile {base}/clamd.pid", f"TemporaryDirectory {base}",
            "Bytecode no", "SelfCheck 0"]) + "\n")
    port = free_port()
    with open(os.path.join(base, "clamav-milter.conf"), "w") as f:
        f.write("\n".join(user + [
            f"MilterSocket inet:{port}@127.0.0.1", "Foreground yes",
            f"PidFile {base}/milter.pid", f"ClamdSocket unix:{sock}",
            "OnInfected Reject", "RejectMsg Infected by %v, refused", "OnFail Defer",
            "AddHeader Replace",
            "ReportHostname scanner.example.test",
            f"LogFile {base}/milter.log", "LogInfected Basic", "ReadTimeout 30",
            f"TemporaryDirectory {base}"]) + "\n")
    if os.geteuid() == 0:
        for p in os.listdir(base):
            shutil.chown(os.path.join(base, p), run_user())
        shutil.chown(os.path.join(db, "postern-test.hdb"), run_user())
    out = open(os.path.join(base, "stdout"), "wb")
    clamd = subprocess.Popen([CLAMD, "-c", os.path.join(base, "clamd.conf")],
                             stdout=out, stderr=out)
    milter = None
    try:
        started(lambda: os.path.exists(sock), clamd, 60, "clamd",
                [base + "/clamd.log", base + "/stdout"])
        assert "Loaded 1 signatures." in read(base + "/clamd.log"), read(base + "/clamd.log")
        milter = subprocess.Popen([CLAMAV_MILTER, "-c", os.path.join(base, "clamav-milter.conf")],
                                  stdout=out, stderr=out)
        started(lambda: port_open(port), milter, 30, "clamav-milter",
                [base + "/milter.log", base + "/stdout"])
        yield {"spec": f"inet:127.0.0.1:{port}", "base": base}
    finally:
        if milter is not None:
            stop(milter)
        stop(clamd)
        out.close()
        if os.environ.get("KEEP_PEERS") is None:
            shutil.rmtree(base, ignore_errors=True)


def server_for(make_server, specs, **extra):
    conf = {"milters": " ".join(specs), "milter_default_action": "tempfail",
            "milter_command_timeout": "30s", "milter_content_timeout": "60s"}
    conf.update(extra)
    return make_server(conf)


def send(s, frm, msg, rcpt="bob@example.test"):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=90) as c:
        c.ehlo("client.example")
        return c.sendmail(frm, [rcpt], msg)


def head(msg):
    return msg.partition(b"\n\n")[0].decode("utf-8", "replace")


def test_clamav_infected_rejected_nothing_stored(make_server, clamav):
    s = server_for(make_server, [clamav["spec"]])
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(s, "alice@example.test", mime(ATTACHMENT))
    # clamav-milter's own reply (OnInfected Reject, its RejectMsg with the
    # virus name), passed through.
    assert e.value.smtp_code == 550, e.value
    assert e.value.smtp_error == f"5.7.1 Infected by {FOUND}, refused".encode(), e.value
    log = s.log()
    assert "event=milter stage=eom result=reject" in log, log
    time.sleep(0.5)
    assert s.messages("bob") == [] and s.all_files() == []
    # clamd saw and named it.
    wait_for(lambda: SIGNATURE in read(clamav["base"] + "/clamd.log"), 10, "clamd's log")


def test_clamav_clean_delivered_with_its_headers(make_server, clamav):
    s = server_for(make_server, [clamav["spec"]])
    # One byte different: another MD5, so clean.
    clean = ATTACHMENT.replace(b"not a virus", b"not a virUs")
    send(s, "alice@example.test", mime(clean))
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    h = head(msg)
    assert "\nX-Virus-Scanned: clamav-milter " in h and "at scanner.example.test" in h, h
    assert "\nX-Virus-Status: Clean" in h, h
    assert b"See the attachment.\n" in msg
    assert "event=milter stage=eom result=reject" not in s.log()


def test_clamav_clamd_down_deferred(make_server, clamav):
    """clamav-milter up, its clamd not (OnFail Defer): the message gets a
    4xx, the client keeps it and retries; nothing is stored unscanned."""
    base = clamav["base"]
    port = free_port()
    conf = os.path.join(base, "nodaemon.conf")
    with open(conf, "w") as f:
        f.write("\n".join(([f"User {run_user()}"] if os.geteuid() == 0 else []) + [
            f"MilterSocket inet:{port}@127.0.0.1", "Foreground yes",
            f"ClamdSocket unix:{base}/no-clamd.sock", "OnInfected Reject",
            "OnFail Defer", "AddHeader Replace", f"LogFile {base}/nodaemon.log",
            "ReadTimeout 5", f"TemporaryDirectory {base}"]) + "\n")
    out = open(os.path.join(base, "nodaemon.out"), "wb")
    milter = subprocess.Popen([CLAMAV_MILTER, "-c", conf], stdout=out, stderr=out)
    try:
        started(lambda: port_open(port), milter, 30, "clamav-milter",
                [base + "/nodaemon.log", base + "/nodaemon.out"])
        s = server_for(make_server, [f"inet:127.0.0.1:{port}"])
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(s, "alice@example.test", mime(ATTACHMENT.replace(b"test", b"TEST")))
        assert 400 <= e.value.smtp_code < 500, e.value
        time.sleep(0.5)
        assert s.messages("bob") == [] and s.all_files() == []
    finally:
        stop(milter)
        out.close()


# ---- OpenDKIM, then OpenDMARC -----------------------------------------------
#
# OpenDMARC evaluates the SPF and DKIM results that it finds in
# Authentication-Results fields of a trusted authserv-id (by default its
# own AuthservID): in Postfix's usual setup OpenDKIM, the milter before it,
# verifies and adds them.  Here too: OpenDKIM (Mode v) then OpenDMARC, both
# with their default AuthservID, the MTA's name (the "j" macro: postern's
# hostname, mx.example.test), so that OpenDMARC trusts what OpenDKIM
# wrote.  OpenDMARC's own
# SPF check (SPFSelfValidate) is off: libspf2 passes every loopback
# client (127.0.0.0/8, ::1) whatever the record says, so an SPF result
# for the test's client would prove nothing; DKIM decides.

SELECTOR = "t"


def dkim_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    # 1024 bits: OpenDKIM's MinimumKeyBits, and a TXT string under 255.
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def dmarc_txt(pub):
    return {
        # p=reject; pass.example signs its mail (the key below).
        "_dmarc.pass.example": "v=DMARC1; p=reject",
        f"{SELECTOR}._domainkey.pass.example": pub,
        # p=reject and no key: nothing from it can pass.
        "_dmarc.fail.example": "v=DMARC1; p=reject",
        # p=none: a failure is reported, never refused.
        "_dmarc.none.example": "v=DMARC1; p=none",
    }


DKIM_CONF = """Socket local:{sock}
Mode v
UMask 0000
Background no
Syslog no
{user}PidFile {base}/opendkim.pid
InternalHosts {base}/internal-hosts
Nameservers 127.0.0.1
DNSTimeout 2
"""

DMARC_CONF = """Socket local:{sock}
UMask 0000
Background no
Syslog no
{user}PidFile {base}/{name}.pid
IgnoreHosts {base}/ignore-hosts
RejectFailures {reject}
SPFSelfValidate no
SoftwareHeader yes
FailureReports no
DNSTimeout 2
"""

RUN = """set -e
ip link set lo up
mount --bind {base}/resolv.conf /etc/resolv.conf
{dnsmasq} &
sleep 0.3
{odkim} &
{od1} &
{od2} &
wait
"""


def q(args):
    return " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)


@pytest.fixture(scope="module")
def dmarc():
    """OpenDKIM and two OpenDMARC (RejectFailures yes: "reject"; no:
    "report") and their dnsmasq, in a network and mount namespace of their
    own; their Unix sockets under a temp dir."""
    for p in (OPENDMARC, OPENDKIM, DNSMASQ, UNSHARE):
        need(p)
    base = private_dir("postern-dmarc-")
    # The socket directory: the milters make their sockets after
    # dropping to the run user, who must be able to write there.
    sockdir = os.path.join(base, "s")
    os.mkdir(sockdir, 0o755)
    if os.geteuid() == 0:
        shutil.chown(sockdir, run_user())
    with open(os.path.join(base, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # Mail from 127.0.0.1 (the test's client) is checked: both milters
    # would skip it by default (OpenDKIM would sign it).
    with open(os.path.join(base, "ignore-hosts"), "w") as f:
        f.write("192.0.2.1\n")
    with open(os.path.join(base, "internal-hosts"), "w") as f:
        f.write("192.0.2.1\n")
    pem, pub = dkim_key()
    user = f"UserID {run_user()}\n" if os.geteuid() == 0 else ""
    socks = {n: os.path.join(sockdir, n + ".sock") for n in ("opendkim", "reject", "report")}
    with open(os.path.join(base, "opendkim.conf"), "w") as f:
        f.write(DKIM_CONF.format(sock=socks["opendkim"], user=user, base=base))
    for name, reject in (("reject", "yes"), ("report", "no")):
        with open(os.path.join(base, name + ".conf"), "w") as f:
            f.write(DMARC_CONF.format(sock=socks[name], user=user, base=base, name=name,
                                      reject=reject))
    dns = [DNSMASQ, "-k", "-p", "53", "--listen-address=127.0.0.1", "--bind-interfaces",
           "--no-resolv", "--no-hosts", "--local=/example/", "--log-queries",
           f"--log-facility={base}/dns.log"]
    if os.geteuid() == 0:
        dns.append("--user=root")
    dns += [f"--txt-record={n},{t}" for n, t in dmarc_txt(pub).items()]
    with open(os.path.join(base, "run.sh"), "w") as f:
        f.write(RUN.format(base=base, dnsmasq=q(dns),
                           odkim=q([OPENDKIM, "-f", "-x", base + "/opendkim.conf"]),
                           od1=q([OPENDMARC, "-f", "-c", base + "/reject.conf"]),
                           od2=q([OPENDMARC, "-f", "-c", base + "/report.conf"])))
    # A new network namespace (only lo, down until run.sh brings it up)
    # and mount namespace (its own /etc/resolv.conf); without root a user
    # namespace maps us to root in it.
    ns = [UNSHARE, "-m", "-n", "--propagation", "private"]
    if os.geteuid() != 0:
        ns.insert(1, "-r")
    out = open(os.path.join(base, "stdout"), "wb")
    proc = subprocess.Popen(ns + ["/bin/sh", base + "/run.sh"], stdout=out, stderr=out,
                            start_new_session=True)
    try:
        started(lambda: all(os.path.exists(p) for p in socks.values()), proc, 30,
                "opendkim/opendmarc", [base + "/stdout"])
        yield {"opendkim": "unix:" + socks["opendkim"], "reject": "unix:" + socks["reject"],
               "report": "unix:" + socks["report"], "base": base, "key": pem}
    finally:
        # The shell, dnsmasq, opendkim and both opendmarc: the process
        # group started above.
        stop(proc, group=True)
        out.close()
        if os.environ.get("KEEP_PEERS") is None:
            shutil.rmtree(base, ignore_errors=True)


def signed(msg, key, domain=b"pass.example"):
    import dkim
    sig = dkim.sign(msg, SELECTOR.encode(), domain, key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


def auth_results(msg):
    """The Authentication-Results values (unfolded, blanks squeezed), top first."""
    text = msg.partition(b"\n\n")[0].decode("utf-8", "replace")
    text = text.replace("\n\t", " ").replace("\n ", " ")
    return [" ".join(l.split(":", 1)[1].split()) for l in text.split("\n")
            if l.lower().startswith("authentication-results:")]


def result(msg, method):
    return [a for a in auth_results(msg) if f" {method}=" in a]


def refused(s, frm, msg):
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(s, frm, msg)
    time.sleep(0.5)
    assert s.messages("bob") == [] and s.all_files() == []
    assert "event=milter stage=eom result=reject" in s.log()
    return e.value


def test_dmarc_aligned_dkim_pass(make_server, dmarc):
    """Signed by pass.example, From: pass.example: OpenDKIM's dkim=pass
    reaches OpenDMARC (postern hands each milter the headers the ones
    before it added), so DMARC passes at the instance that refuses
    failures."""
    s = server_for(make_server, [dmarc["opendkim"], dmarc["reject"]])
    send(s, "alice@pass.example", signed(plain("Alice <alice@pass.example>"), dmarc["key"]))
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    dk = result(msg, "dkim")
    assert len(dk) == 1 and dk[0].startswith("mx.example.test;"), head(msg)
    assert "dkim=pass" in dk[0] and "header.d=pass.example" in dk[0], dk
    dm = result(msg, "dmarc")
    assert len(dm) == 1 and "dmarc=pass" in dm[0] and "header.from=pass.example" in dm[0], \
        head(msg)
    assert "\nDMARC-Filter: OpenDMARC Filter" in head(msg)
    assert "DKIM-Signature:" in head(msg) and b"\n\nHello.\n" in msg


def test_dmarc_fail_under_p_reject_refused(make_server, dmarc):
    s = server_for(make_server, [dmarc["opendkim"], dmarc["reject"]])
    e = refused(s, "alice@fail.example", plain("Alice <alice@fail.example>"))
    # OpenDMARC's RejectString, passed on as Postfix does.
    assert e.smtp_code == 550, e
    assert e.smtp_error == b"5.7.1 rejected by DMARC policy for fail.example", e
    dns = read(dmarc["base"] + "/dns.log")
    assert "_dmarc.fail.example" in dns, dns


def test_dmarc_fail_reported_without_reject(make_server, dmarc):
    s = server_for(make_server, [dmarc["opendkim"], dmarc["report"]])
    send(s, "alice@fail.example", plain("Alice <alice@fail.example>"))
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    dm = result(msg, "dmarc")
    assert len(dm) == 1 and dm[0].startswith("mx.example.test;"), head(msg)
    assert "dmarc=fail" in dm[0] and "p=reject" in dm[0], dm
    assert "header.from=fail.example" in dm[0], dm


def test_dmarc_broken_signature_refused(make_server, dmarc):
    """The body changed after signing: dkim=fail, so DMARC fails too."""
    s = server_for(make_server, [dmarc["opendkim"], dmarc["reject"]])
    msg = signed(plain("Alice <alice@pass.example>"), dmarc["key"]).replace(b"Hello.", b"Hullo.")
    e = refused(s, "alice@pass.example", msg)
    assert e.smtp_code == 550 and b"for pass.example" in e.smtp_error, e


def test_dmarc_unaligned_signature_refused(make_server, dmarc):
    """A good pass.example signature on mail From: fail.example: not
    aligned."""
    s = server_for(make_server, [dmarc["opendkim"], dmarc["reject"]])
    e = refused(s, "alice@pass.example",
                signed(plain("Alice <alice@fail.example>"), dmarc["key"]))
    assert e.smtp_code == 550 and b"for fail.example" in e.smtp_error, e


def test_dmarc_without_opendkim_refused(make_server, dmarc):
    """OpenDMARC verifies no signature itself: alone, it fails even the
    well-signed message (the order opendkim, opendmarc is what passes it)."""
    s = server_for(make_server, [dmarc["reject"]])
    e = refused(s, "alice@pass.example",
                signed(plain("Alice <alice@pass.example>"), dmarc["key"]))
    assert e.smtp_code == 550 and b"for pass.example" in e.smtp_error, e


def test_dmarc_p_none_not_refused(make_server, dmarc):
    s = server_for(make_server, [dmarc["opendkim"], dmarc["reject"]])
    send(s, "alice@none.example", plain("Alice <alice@none.example>"))
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    dm = result(msg, "dmarc")
    assert len(dm) == 1 and "dmarc=fail" in dm[0] and "p=none" in dm[0], head(msg)


# ---- all three, in the order the docs give ----------------------------------

def test_clamav_opendkim_opendmarc(make_server, clamav, dmarc):
    """milters = clamav-milter, OpenDKIM, OpenDMARC: each adds its headers
    to the one message; an infected one is refused by the first."""
    s = server_for(make_server, [clamav["spec"], dmarc["opendkim"], dmarc["reject"]])
    clean = ATTACHMENT.replace(b"test", b"tEst")
    key = dmarc["key"]
    send(s, "alice@pass.example", signed(mime(clean, frm="Alice <alice@pass.example>"), key))
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    h = head(msg)
    assert "\nX-Virus-Status: Clean" in h, h
    assert len(result(msg, "dkim")) == 1 and "dkim=pass" in result(msg, "dkim")[0], h
    assert len(result(msg, "dmarc")) == 1 and "dmarc=pass" in result(msg, "dmarc")[0], h
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(s, "alice@pass.example",
             signed(mime(ATTACHMENT, frm="Alice <alice@pass.example>"), key))
    assert e.value.smtp_code == 550 and FOUND.encode() in e.value.smtp_error, e.value
    time.sleep(0.5)
    assert len(s.messages("bob")) == 1
