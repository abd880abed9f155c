"""The relay policy against the real daemon: each mode, SMTP AUTH with
every mechanism and failure, submission, sender match, the backup-MX case,
relay-check, check warnings and live reload."""
import base64
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Raw, tls_context, wait_for

BASE = {"queue_retry_min": "1s", "queue_retry_max": "2s"}


def rcpt_reply(server, frm, to, source="127.0.0.1", port="smtp"):
    s = smtplib.SMTP("127.0.0.1", server.ports[port], timeout=20,
                     source_address=(source, 0))
    s.ehlo("client.example")
    code, _ = s.mail(frm)
    assert code == 250
    code, text = s.rcpt(to)
    s.quit()
    return code, text.decode()


def relay_check(server, client, frm, to, auth=None, port="smtp"):
    args = ["relay-check", "--client", client, "--from", frm, "--to", to, "--port", port]
    if auth:
        args += ["--auth", auth]
    r = server.ctl(*args, check=False)
    first, rule = r.stdout.splitlines()[0], r.stdout.splitlines()[1]
    return first, rule.split(": ", 1)[1], r.returncode


@pytest.mark.parametrize("mode,frm,want", [
    ("anyone", "x@remote.example", 250),
    ("addresses", "x@remote.example", 250),      # 127.0.0.1 is listed
    ("none", "alice@example.test", 550),
    ("local-hosts", "nobody@example.test", 250),
    ("local-hosts", "x@remote.example", 550),
    ("local-users", "alice@example.test", 250),
    ("local-users", "nobody@example.test", 550),
    ("local-users", "info@example.test", 550),   # an alias is not a user
])
def test_modes_reach_or_not(make_server, sinks, mode, frm, want):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, relay=mode, relay_addresses="127.0.0.1"))
    code, text = rcpt_reply(s, frm, "far@remote.example")
    assert code == want, text
    # Local recipients never need relaying, in every mode.
    assert rcpt_reply(s, "x@remote.example", "alice@example.test")[0] == 250
    if want == 250:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
            c.sendmail(frm, ["far@remote.example"], b"Subject: relayed\r\n\r\nx\r\n")
        wait_for(lambda: mx.messages, what="relayed mail")
    else:
        assert "5.7.1" in text and "authenticate" in text.lower()
        time.sleep(1)
        assert mx.messages == [] and "status=sent" not in s.log()
    # relay-check says what the server said, with the same rule.
    line, rule, rc = relay_check(s, "127.0.0.1", frm, "far@remote.example")
    assert line.startswith("ACCEPT 250" if want == 250 else "REJECT 550 5.7.1")
    log_rule = [l for l in s.log().splitlines()
                if "to=<far@remote.example>" in l and "event=rcpt" in l][0]
    assert f"rule={rule} " in log_rule


def test_addresses_mode_refuses_unlisted_client(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, relay="addresses", relay_addresses="127.0.0.1/32"))
    code, text = rcpt_reply(s, "x@remote.example", "far@remote.example", source="127.0.0.9")
    assert code == 550 and "allowed network" in text
    assert relay_check(s, "127.0.0.9", "x@remote.example", "far@remote.example")[1] == "default-deny"
    assert relay_check(s, "::ffff:127.0.0.1", "x@remote.example", "far@remote.example")[1] == \
        "relay-addresses"


def test_backup_mx_case(make_server, sinks):
    mx2 = sinks("127.0.0.4")
    # Only MX 10 (127.0.0.3) listed: delivery would also use MX 20
    # (127.0.0.4, unlisted), so the backup-MX rule does not apply.
    s = make_server(dict(BASE, relay="addresses", relay_addresses="127.0.0.3"))
    code, _ = rcpt_reply(s, "x@remote.example", "someone@backup.example")
    assert code == 550
    s.stop()
    # Both MX hosts listed (gateway): accepted, delivered to MX 20 when
    # MX 10 refuses.
    s = make_server(dict(BASE, relay="addresses",
                         relay_addresses="127.0.0.3 127.0.0.4"))
    code, _ = rcpt_reply(s, "x@remote.example", "someone@backup.example")
    assert code == 250
    assert "rule=backup-mx" in s.log()
    code, _ = rcpt_reply(s, "x@remote.example", "someone@remote.example")
    assert code == 550
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["someone@backup.example"], b"Subject: b\r\n\r\nx\r\n")
    wait_for(lambda: mx2.messages, what="delivery to the primary")


def test_relay_domains_and_recipients(make_server, tmp_path):
    rr = tmp_path / "relay_recipients"
    rr.write_text("# known addresses\nknown@gateway.example\n")
    s = make_server(dict(BASE, relay="none", relay_domains="gateway.example",
                         relay_recipients=str(rr)))
    assert rcpt_reply(s, "x@remote.example", "known@gateway.example")[0] == 250
    code, text = rcpt_reply(s, "x@remote.example", "unknown@gateway.example")
    assert code == 550 and "5.1.1" in text


def test_accept_list(make_server, tmp_path):
    acc = tmp_path / "accept.txt"
    acc.write_text("# IMail accept.txt\n127.0.0.5\npartner.example\nfriend@other.example\n")
    s = make_server(dict(BASE, relay="local-hosts", accept_file=str(acc)))
    assert rcpt_reply(s, "x@partner.example", "far@remote.example")[0] == 250
    assert rcpt_reply(s, "x@remote.example", "far@remote.example", source="127.0.0.5")[0] == 250
    assert rcpt_reply(s, "x@remote.example", "far@remote.example")[0] == 550


def auth_session(server, port="submission", source="127.0.0.1"):
    s = smtplib.SMTP("127.0.0.1", server.ports[port], timeout=20, source_address=(source, 0))
    s.ehlo("client.example")
    return s


def test_auth_plain_and_login_over_starttls(server, cert):
    for mech in ("PLAIN", "LOGIN"):
        s = auth_session(server)
        assert "auth" not in s.esmtp_features, "AUTH is offered only after TLS"
        s.starttls(context=tls_context(cert))
        s.ehlo("client.example")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        s.user, s.password = "alice@example.test", "secret-alice"
        code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                         initial_response_ok=(mech == "PLAIN"))
        assert code == 235
        s.sendmail("alice@example.test", ["far@remote.example"], b"Subject: a\r\n\r\nx\r\n")
        s.quit()
    assert server.log().count("event=auth result=ok") == 2


def test_auth_raw_forms(server, cert):
    r = Raw(server.ports["submission"])
    r.cmd("EHLO client.example")
    assert r.cmd("AUTH PLAIN").startswith("538 5.7.11"), "no passwords in clear"
    assert r.cmd("STARTTLS").startswith("220")
    r.starttls(tls_context(cert))
    assert r.cmd("AUTH PLAIN x").startswith("503 5.5.1"), "EHLO again after TLS"
    r.cmd("EHLO client.example")
    assert r.cmd("AUTH CRAM-MD5").startswith("504 5.5.4")
    assert r.cmd("AUTH PLAIN !!notbase64").startswith("501 5.5.2")
    assert r.cmd("AUTH PLAIN").startswith("334")
    assert r.cmd("*").startswith("501 5.0.0")
    assert r.cmd("AUTH LOGIN").startswith("334 VXNlcm5hbWU6")
    assert r.cmd(base64.b64encode(b"alice@example.test").decode()).startswith("334 UGFzc3dvcmQ6")
    assert r.cmd(base64.b64encode(b"wrong").decode()).startswith("535 5.7.8")
    good = base64.b64encode(b"\0bob@example.test\0secret-bob").decode()
    assert r.cmd("AUTH PLAIN " + good).startswith("235 2.7.0")
    assert r.cmd("AUTH PLAIN " + good).startswith("503 5.5.1"), "only once"
    assert r.cmd("MAIL FROM:<bob@example.test>").startswith("250")
    assert r.cmd("RCPT TO:<far@remote.example>").startswith("250")
    assert r.cmd("RSET").startswith("250")
    assert r.cmd("MAIL FROM:<alice@example.test>").startswith("553 5.7.1"), "sender match"
    assert r.cmd("MAIL FROM:<info@example.test>").startswith("250"), "an alias of bob"
    r.cmd("RSET")
    other = base64.b64encode(b"alice@example.test\0bob@example.test\0secret-bob").decode()
    r2 = Raw(server.ports["submissions"], greet=False)
    r2.starttls(tls_context(cert))
    assert r2.reply().startswith("220")
    r2.cmd("EHLO client.example")
    assert r2.cmd("AUTH PLAIN " + other).startswith("535"), "no authorization identity"
    assert r2.cmd("AUTH LOGIN " + base64.b64encode(b"carol@example.test").decode()) \
        .startswith("334 UGFzc3dvcmQ6")
    assert r2.cmd(base64.b64encode(b"secret-carol").decode()).startswith("235")
    assert "secret-" not in server.log()


def test_submission_needs_auth(server, cert):
    s = auth_session(server)
    s.starttls(context=tls_context(cert))
    s.ehlo("client.example")
    code, text = s.mail("alice@example.test")
    assert code == 530 and b"5.7.0" in text
    s.quit()


def test_auth_advertise_no_and_plaintext_allowed(make_server):
    s = make_server(dict(BASE, auth_advertise="no", auth_require_tls="no"))
    c = auth_session(s, port="smtp")
    assert "auth" not in c.esmtp_features
    c.user, c.password = "alice@example.test", "secret-alice"
    assert c.auth("PLAIN", c.auth_plain)[0] == 235
    c.quit()
    assert "auth_require_tls = no" in s.ctl("check").stdout


def test_auth_lockout_per_ip(make_server):
    s = make_server(dict(BASE, auth_require_tls="no", auth_max_failures="3"))
    good = auth_session(s, port="smtp")
    good.login("alice@example.test", "secret-alice")
    good.quit()
    for i in range(3):
        c = auth_session(s, port="smtp", source="127.0.0.3")
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0alice@example.test\0guess{i}".encode()).decode())
        # The third failure locks the address out at once.
        assert (code, text[:5]) == ((535, b"5.7.8") if i < 2 else (421, b"4.7.0")), text
        c.close()
    c = auth_session(s, port="smtp", source="127.0.0.3")
    c.user, c.password = "alice@example.test", "secret-alice"
    code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(
        b"\0alice@example.test\0secret-alice").decode())
    assert code == 421 and b"4.7.0" in text, "locked out, even with the right password"
    assert "event=auth-lockout client=127.0.0.3" in s.log()
    # The real user, from where it logged in before, is not locked out.
    ok = auth_session(s, port="smtp")
    ok.login("alice@example.test", "secret-alice")
    ok.quit()


def test_swaks_auth(server):
    for mech in ("PLAIN", "LOGIN"):
        r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(server.ports["submission"]),
                            "--tls", "-a", mech, "-au", "carol@example.test", "-ap",
                            "secret-carol", "-f", "carol@example.test", "-t", "alice@example.test"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout
    r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(server.ports["submission"]),
                        "--tls", "-a", "PLAIN", "-au", "carol@example.test", "-ap", "bad",
                        "-f", "carol@example.test", "-t", "alice@example.test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 28
    assert len(server.messages("alice")) == 2


def test_check_warnings(make_server):
    s = make_server(dict(BASE, relay="anyone"), start=False)
    assert "OPEN RELAY" in s.ctl("check").stdout
    s.extra.update(relay="local-users", smtp_listen="0.0.0.0:0")
    s.write_conf()
    assert "forge" in s.ctl("check").stdout
    s.extra.update(relay="addresses", smtp_listen="127.0.0.1:0", relay_addresses="10.0.0.0/8")
    s.write_conf()
    assert "very large range" in s.ctl("check").stdout
    s.proc = None


def test_reload_while_session_open(make_server, sinks):
    sinks("127.0.0.2")
    s = make_server(dict(BASE, relay="anyone"))
    old = Raw(s.ports["smtp"])
    old.cmd("EHLO client.example")
    assert old.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert old.cmd("RCPT TO:<a@remote.example>").startswith("250")
    s.extra["relay"] = "none"
    s.write_conf()
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=reload result=ok relay=none" in s.log(), what="reload")
    # The open session keeps the config it started with ...
    assert old.cmd("RCPT TO:<b@remote.example>").startswith("250")
    # ... new sessions get the new one.
    assert rcpt_reply(s, "x@remote.example", "c@remote.example")[0] == 550
    # A broken config is refused and the running one stays.
    s.extra["relay"] = "sometimes"
    s.write_conf()
    r = s.ctl("reload", check=False)
    assert r.returncode == 1 and "postern.conf" in r.stderr and "relay" in r.stderr
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=reload result=fail" in s.log(), what="failed reload")
    assert rcpt_reply(s, "x@remote.example", "d@remote.example")[0] == 550
    s.extra["relay"] = "anyone"
    s.write_conf()
    s.ctl("reload")
    assert rcpt_reply(s, "x@remote.example", "e@remote.example")[0] == 250
    assert old.cmd("QUIT").startswith("221")


def test_starttls_forgets_auth(make_server, cert):
    s = make_server(dict(BASE, auth_require_tls="no"))
    r = Raw(s.ports["submission"])
    r.cmd("EHLO client.example")
    good = base64.b64encode(b"\0alice@example.test\0secret-alice").decode()
    assert r.cmd("AUTH PLAIN " + good).startswith("235")
    assert r.cmd("STARTTLS").startswith("220")
    r.starttls(tls_context(cert))
    r.cmd("EHLO client.example")
    assert r.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")
    assert r.cmd("AUTH PLAIN " + good).startswith("235")
    assert r.cmd("MAIL FROM:<alice@example.test>").startswith("250")


def test_rcpt_log_line_explains(make_server):
    s = make_server(dict(BASE, relay="local-users"))
    rcpt_reply(s, "x@remote.example", "far@remote.example")
    line = [l for l in s.log().splitlines() if "to=<far@remote.example>" in l][0]
    for part in ("session=", "client=127.0.0.1", "auth=-", "from=<x@remote.example>",
                 "result=reject", "code=550", "mode=local-users", "rule=default-deny",
                 "reason=\"Relaying denied"):
        assert part in line, (part, line)


def test_auth_before_ehlo(make_server):
    s = make_server(dict(BASE, auth_require_tls="no"))
    r = Raw(s.ports["submission"])
    good = base64.b64encode(b"\0alice@example.test\0secret-alice").decode()
    assert r.cmd("AUTH PLAIN " + good).startswith("503 5.5.1")
    r.cmd("EHLO client.example")
    assert r.cmd("AUTH PLAIN " + good).startswith("235")
