"""Log lines an operator can act on (issue 10, section 3): every line
named here is triggered by a real client and checked as the daemon wrote
it: the accepted-message line, TLS upgrades and failed handshakes, one
line per refusal, named DATA flags, the error count, log_file with its
reopen, and a pflogsumm report over a real log_file."""
import base64
import os
import pwd
import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Raw, run_user, tls_context, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1",
        "queue_retry_min": "1s", "queue_retry_max": "2s"}
BODY = b"Subject: log test\r\n\r\nhello\r\n"


def lines(server, pattern):
    return [l for l in server.log().splitlines() if re.search(pattern, l)]


def one_line(server, pattern, timeout=10):
    """The single log line matching pattern (waits for it)."""
    found = wait_for(lambda: lines(server, pattern), timeout=timeout, what=pattern)
    assert len(found) == 1, found
    return found[0]


def fields(line):
    """key=value fields of a line (quoted values unquoted)."""
    return {m.group(1): m.group(3) if m.group(3) is not None else m.group(2)
            for m in re.finditer(r'(\w[\w-]*)=(?:"([^"]*)"|(\S*))', line)}


# ---- accepted ------------------------------------------------------------

def test_accepted_line_counts_mailboxes_and_queued(make_server, sinks):
    sinks("127.0.0.2")
    s = make_server(FAST)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test", "bob@remote.example"], BODY)
        c.sendmail("a@example.net", ["bob@remote.example"], BODY)
    acc = wait_for(lambda: len(lines(s, r"event=accepted")) == 2 and lines(s, r"event=accepted"),
                   what="accepted lines")
    f1, f2 = fields(acc[0]), fields(acc[1])
    assert (f1["mailboxes"], f1["queued"], f1["nrcpt"]) == ("1", "1", "2")
    assert (f2["mailboxes"], f2["queued"], f2["nrcpt"]) == ("0", "1", "1")
    assert f1["client"] == "127.0.0.1" and f1["auth"] == "-"
    assert f1["to"] == "<alice@example.test>,<bob@remote.example>"
    assert int(f1["size"]) == len(BODY)
    # The old name, which said "delivered" for a queued message, is gone.
    assert not lines(s, r"event=delivered")
    wait_for(lambda: len(lines(s, r"posternd/smtp\[\d+\]: .*status=sent")) == 2,
             what="remote deliveries")


# ---- TLS -----------------------------------------------------------------

def test_starttls_and_implicit_tls_logged(server, cert):
    ctx = tls_context(cert)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.starttls(context=ctx)
        c.ehlo("x")
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=20,
                          context=ctx) as c:
        c.ehlo("x")
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.stls(context=ctx)
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], timeout=20, context=ctx)
    p.quit()
    for key, mode in (("session", "starttls"), ("session", "implicit"),
                      ("pop3", "stls"), ("pop3", "implicit")):
        line = one_line(server, rf"{key}=\w+ event=tls mode={mode} result=ok")
        f = fields(line)
        assert f["client"] == "127.0.0.1"
        assert f["protocol"].startswith("TLSv1."), line
        assert f["cipher"], line


def old_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    return ctx


def tls11_fails(sock):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        old_tls_context().wrap_socket(sock, server_hostname="localhost")
    sock.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_failed_handshakes_logged_with_reason(server):
    # TLS 1.1 on the implicit-TLS ports and after STARTTLS / STLS.
    tls11_fails(socket.create_connection(("127.0.0.1", server.ports["submissions"])))
    tls11_fails(socket.create_connection(("127.0.0.1", server.ports["pop3s"])))
    r = Raw(server.ports["smtp"])
    assert r.cmd("STARTTLS").startswith("220")
    tls11_fails(r.sock)
    sk = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10)
    f = sk.makefile("rb")
    f.readline()
    sk.sendall(b"STLS\r\n")
    assert f.readline().startswith(b"+OK")
    tls11_fails(sk)
    # Garbage instead of a ClientHello.
    g = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=10)
    g.sendall(b"GET / HTTP/1.0\r\n\r\n")
    g.settimeout(10)
    try:
        g.recv(100)
    except OSError:
        pass
    g.close()
    for key, mode in (("session", "implicit"), ("session", "starttls"),
                      ("pop3", "stls")):
        line = one_line(server, rf"{key}=\w+ event=tls mode={mode} result=fail")
        assert re.search(r'reason="[^"]*(unsupported protocol|version)', line), line
    fails = wait_for(lambda: len(lines(server, r"pop3=\w+ event=tls mode=implicit result=fail")) == 2
                     and lines(server, r"pop3=\w+ event=tls mode=implicit result=fail"),
                     what="two pop3s failures")
    assert re.search(r'reason="[^"]*(unsupported protocol|version)', fails[0]), fails
    assert re.search(r'reason="[^"]*(http request|wrong version|packet length)', fails[1]), fails
    assert not lines(server, r"result=ok protocol=")


# ---- refusals ------------------------------------------------------------

def test_every_smtp_refusal_has_one_line(server):
    r = Raw(server.ports["submission"])
    script = ["RCPT TO:<a@example.test>", "EHLO x", "MAIL FROM:<a@example.test>",
              "RCPT TO:<a@example.test>", "DATA", "EXPN x", "FOO", "AUTH CRAM-MD5",
              "AUTH PLAIN =", "STARTTLS x"]
    codes = []
    for cmd in script:
        rep = r.cmd(cmd)
        codes.append(rep.splitlines()[-1][:3])
    r.cmd("QUIT")
    refusals = [c for c in codes if c[0] in "45"]
    assert codes[2] == "530"
    wait_for(lambda: lines(server, r"event=disconnect"), what="disconnect")
    rej = lines(server, r"event=(reject|syntax-error) ")
    assert [fields(l).get("code") or fields(l)["reply"][:3] for l in rej] == refusals, \
        (rej, codes)
    mail = [l for l in rej if "cmd=MAIL" in l]
    assert len(mail) == 1 and 'reason="Authentication required"' in mail[0], mail
    assert fields(lines(server, r"event=disconnect")[0])["errors"] == str(len(refusals))


def test_size_refusal_counts_as_error(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO x")
    assert r.cmd("MAIL FROM:<a@example.net> SIZE=999999999999").startswith("552")
    r.cmd("QUIT")
    line = one_line(server, r"event=disconnect")
    assert fields(line)["errors"] == "1", line
    assert len(lines(server, r'event=mail result=reject code=552')) == 1


def test_auth_failures_logged_with_user_and_reason(server, cert):
    c = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=20)
    c.starttls(context=tls_context(cert))
    c.ehlo("x")
    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0nope").decode())
    assert code == 535
    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"other\0alice@example.test\0x").decode())
    assert code == 535
    c.close()
    line = one_line(server, r"event=auth result=fail .*wrong password")
    assert 'user=alice@example.test ' in line  # the form of result=ok
    one_line(server, r'event=auth result=fail .*reason="authorization identity is not the user"')


def test_pop3_refusals_logged(server, cert):
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    with pytest.raises(poplib.error_proto, match=r"STLS first"):
        p.user("alice@example.test")
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    p.user("nobody@example.test")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    p.user("alice@example.test")
    p.pass_("secret-alice")
    with pytest.raises(poplib.error_proto):
        p.retr(99)
    p.quit()
    line = one_line(server, r"pop3=\w+ event=reject .*cmd=USER")
    assert "STLS first" in line and "user=-" in line
    line = one_line(server, r'event=login result=fail .*user=alice@example\.test ')
    assert 'reason="wrong password"' in line
    line = one_line(server, r'event=login result=fail .*user=nobody@example\.test ')
    assert 'reason="no such user"' in line
    line = one_line(server, r"pop3=\w+ event=reject .*cmd=RETR")
    assert "user=alice@example.test" in line and 'reason="no such message"' in line


# ---- DATA flags ------------------------------------------------------------

def test_data_refusal_names_its_flags(server):
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<a@example.net>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    r.send(b"Subject: x\r\n\r\nbare\rcr\r\n" + b"y" * 2000 + b"\r\n.\r\n")
    assert r.reply().startswith("554")
    line = one_line(server, r"event=data result=reject")
    assert fields(line)["flags"] == "bare_cr,line_too_long", line
    assert "0x" not in line


# ---- log_file ----------------------------------------------------------------

def with_log_file(make_server, extra=None, name="postern.log"):
    """A server (not started) whose log_file is in a directory the run
    user may write, as the admin guide says to set it up."""
    s = make_server(extra, start=False)
    d = os.path.join(s.base, "log")
    os.mkdir(d)
    os.chmod(d, 0o777)
    path = os.path.join(d, name)
    s.extra["log_file"] = path
    s.write_conf()
    return s, path


def test_log_file_reopen_on_usr1_and_reload(make_server):
    s, path = with_log_file(make_server)
    s.start()
    wait_for(lambda: os.path.exists(path) and "event=start" in open(path).read(),
             what="start line in log_file")
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    first = open(path).read().splitlines()[0]
    # The syslog shape: RFC 3339 time, host, tag[pid], message.
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d \S+ posternd\[\d+\]: ",
                    first), first
    os.rename(path, path + ".1")
    s.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(path), what="reopened log_file")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test"], BODY)
    wait_for(lambda: "event=accepted" in open(path).read(), what="accepted in new file")
    assert "event=accepted" not in open(path + ".1").read()
    assert "event=log-reopen result=ok" in open(path).read()
    os.rename(path, path + ".2")
    s.ctl("reload")
    wait_for(lambda: os.path.exists(path) and "event=reload result=ok" in open(path).read(),
             what="reload reopens log_file")


def test_start_up_lines_reach_log_file(make_server):
    """The lines logged before log_file is open (listen, privileges-
    dropped) are in the file too, with start and the config warnings."""
    s, path = with_log_file(make_server, {"relay": "anyone"})
    s.start()
    wait_for(lambda: os.path.exists(path) and "OPEN RELAY" in open(path).read(),
             what="config warning in log_file")
    text = open(path).read()
    for want in ("event=listen kind=smtp", "event=start ",
                 "event=queue-load", "warning: event=config"):
        assert want in text, (want, text)
    if os.geteuid() == 0:
        assert "event=privileges-dropped" in text, text
    assert text.count("event=listen kind=smtp") == 1, text


def test_reload_with_unopenable_log_file_fails(make_server):
    """A reload whose log_file cannot be opened fails like any bad
    reload: posternctl reload exits 1 with the reason, the old config and
    the old log file stay."""
    s, path = with_log_file(make_server)
    s.start()
    wait_for(lambda: os.path.exists(path) and "event=start" in open(path).read(),
             what="start line in log_file")
    bad = os.path.join(s.base, "no", "such", "dir", "x.log")
    s.extra["log_file"] = bad
    s.extra["recipient_limit"] = "1"
    s.write_conf()
    r = s.ctl("reload", check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"log_file .*/no/such/dir/x\.log: No such file", r.stderr), r.stderr
    assert "reloaded" not in r.stdout
    wait_for(lambda: "event=reload result=fail" in open(path).read(),
             what="reload failure in the old log_file")
    assert not os.path.exists(os.path.dirname(bad))
    # The old config stays: two recipients are still accepted.
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test", "bob@example.test"], BODY)


def test_log_file_symlink_refused(make_server):
    s, path = with_log_file(make_server)
    target = path + ".target"
    open(target, "w").close()
    os.symlink(target, path)
    p = s.start(wait=False)
    assert p.wait(30) != 0
    assert "symbolic link" in s.log()
    assert open(target).read() == ""


def test_log_file_fifo_refused_without_hanging(make_server):
    """A FIFO at log_file (the run user may own its directory) is refused
    at once: opening it must not block start-up waiting for a reader."""
    s, path = with_log_file(make_server)
    os.mkfifo(path, 0o600)
    pw = pwd.getpwnam(run_user())
    os.chown(path, pw.pw_uid, pw.pw_gid)  # planted by the run user
    p = s.start(wait=False)
    assert p.wait(30) != 0, "posternd must refuse, not hang or run"
    assert "not a regular file" in s.log()


def test_pflogsumm_counts_received_and_delivered(make_server, sinks):
    sinks("127.0.0.2")
    s, path = with_log_file(make_server, FAST)
    s.start()
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test"], BODY)
        c.sendmail("b@example.net", ["bob@example.test", "carol@remote.example"], BODY)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("c@example.net", ["nobody@example.test"], BODY)
    wait_for(lambda: "status=sent (250" in open(path).read(), what="remote delivery")
    r = subprocess.run(["pflogsumm", "--syslog-name=posternd", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = {m.group(2): int(m.group(1))
           for m in re.finditer(r"^\s+(\d+)\s+(received|delivered|bytes received)$",
                                r.stdout, re.M)}
    assert got["received"] == 2, r.stdout
    assert got["delivered"] == 3, r.stdout
    assert got["bytes received"] == 2 * len(BODY), r.stdout
    # The refused RCPT is a NOQUEUE reject line pflogsumm counts.
    m = re.search(r"^\s+(\d+)\s+rejected\b", r.stdout, re.M)
    assert m and int(m.group(1)) == 1, r.stdout
    line = one_line(s, r"posternd/smtpd\[\d+\]: NOQUEUE: reject: RCPT")
    assert re.search(r"RCPT from unknown\[127\.0\.0\.1\]: 550 5\.1\.1 "
                     r"<nobody@example\.test>: Recipient address rejected: "
                     r"no such user here; from=<c@example\.net> "
                     r"to=<nobody@example\.test> proto=ESMTP helo=<", line), line
    assert "example.net" in r.stdout and "remote.example" in r.stdout


def test_pop3_unreadable_message_logged(server, cert):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("a@example.net", ["alice@example.test"], BODY)
    wait_for(lambda: server.messages("alice"), what="delivery")
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    new = os.path.join(server.maildir("alice"), "new")
    cur = os.path.join(server.maildir("alice"), "cur")
    for d in (new, cur):
        for name in os.listdir(d):
            os.chmod(os.path.join(d, name), 0)
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
        p.retr(1)
    p.quit()
    line = one_line(server, r"pop3=\w+ event=retr result=fail")
    assert "user=alice@example.test msg=1" in line and "Permission denied" in line, line
