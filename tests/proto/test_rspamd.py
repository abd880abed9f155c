"""rspamd as a milter (issue 15 part 2): the real rspamd (Debian's) from a
private configuration in the test's directory, its proxy worker in milter
mode on a loopback port, its DNS the tests' dnsmasq, no redis, no system
paths (dbdir, rundir, logdir, local.d: the test's)."""
import os
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from conftest import free_port, port_open, run_user, wait_for

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
MSG = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
       b"Subject: hello\r\nMessage-ID: <t1@example.test>\r\n"
       b"Date: Fri, 04 Dec 2026 04:00:00 +0000\r\n\r\nJust a note.\r\n")

CONF = """
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
    control_socket = "$RUNDIR/rspamd.sock mode=0600";
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%(port)d";
    milter = yes;
    timeout = 60s;
    upstream "local" { default = yes; self_scan = yes; }
    count = 1;
    reject_message = "Spam message rejected";
}
"""


@pytest.fixture(scope="module")
def rspamd(dns):
    if shutil.which("rspamd") is None:
        pytest.skip("rspamd is not installed (scripts/deps.sh test)")
    base = tempfile.mkdtemp(prefix="postern-rspamd-")
    os.chmod(base, 0o755)
    for d in ("db", "run", "log", "local.d"):
        os.mkdir(os.path.join(base, d))
    local = {
        "milter_headers.conf": 'use = ["authentication-results"];\n'
                               "skip_local = false;\n",
        # The tests' dnsmasq, never the machine's resolver.
        "options.inc": 'dns { nameserver = ["%s"]; timeout = 1s; retransmits = 1; }\n'
                       % dns,
        # No fuzzy servers on the Internet (their names are resolved at
        # start-up by the system's resolver).
        "fuzzy_check.conf": "enabled = false;\n",
        # Mail from loopback is checked like any other (the test's
        # client is on 127.0.0.1).
        "spf.conf": "check_local = true;\n",
        "dkim.conf": "check_local = true;\n",
    }
    for name, text in local.items():
        with open(os.path.join(base, "local.d", name), "w") as f:
            f.write(text)
    port = free_port()
    conf = os.path.join(base, "rspamd.conf")
    with open(conf, "w") as f:
        f.write(CONF % {"port": port})
    user = run_user()
    group = subprocess.run(["id", "-gn", user], capture_output=True, text=True).stdout.strip()
    if os.geteuid() == 0:
        for d in ("db", "run", "log"):
            shutil.chown(os.path.join(base, d), user, group)
    args = ["rspamd", "-c", conf, "-f", "-u", user, "-g", group,
            "--var=DBDIR=" + base + "/db", "--var=RUNDIR=" + base + "/run",
            "--var=LOGDIR=" + base + "/log", "--var=LOCAL_CONFDIR=" + base]
    out = open(os.path.join(base, "stdout"), "wb")
    proc = subprocess.Popen(args, stdout=out, stderr=out)
    deadline = time.time() + 60
    while not port_open(port):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            with open(os.path.join(base, "stdout"), "rb") as f:
                why = f.read().decode("utf-8", "replace")[-2000:]
            pytest.skip("rspamd could not start on this machine: " + why)
        time.sleep(0.2)
    yield port
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if os.environ.get("KEEP_RSPAMD") is None:
        shutil.rmtree(base, ignore_errors=True)


def server_for(make_server, port, **extra):
    conf = {"milters": f"inet:127.0.0.1:{port}", "milter_command_timeout": "30s",
            "milter_content_timeout": "60s"}
    conf.update(extra)
    return make_server(conf)


def test_authentication_results_added(make_server, rspamd):
    s = server_for(make_server, rspamd)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=90) as c:
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    msg = wait_for(lambda: s.messages("bob"), 30, "delivery")[0]
    head = msg.partition(b"\n\n")[0]
    assert b"\nAuthentication-Results: " in head, head.decode()
    assert b"spf=" in head.partition(b"\nAuthentication-Results: ")[2]
    assert b"Just a note.\n" in msg


def test_gtube_rejected_with_rspamds_reply(make_server, rspamd):
    s = server_for(make_server, rspamd)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=90) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.test", ["bob@example.test"],
                       MSG.replace(b"Just a note.", GTUBE))
    assert 500 <= e.value.smtp_code < 600, e.value
    # rspamd's own reply for the GTUBE rule, passed through as it chose it.
    assert e.value.smtp_code == 554 and b"5.7.1 Gtube pattern" in e.value.smtp_error
    assert 'reply="554 5.7.1 Gtube pattern"' in s.log()
    time.sleep(0.3)
    assert s.messages("bob") == []
    assert "event=milter stage=eom result=reject" in s.log()


@pytest.mark.parametrize("action,want", [("tempfail", 451), ("accept", 250)])
def test_rspamd_unreachable_default_action(make_server, action, want):
    s = server_for(make_server, free_port(), milter_default_action=action)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        code, _ = c.ehlo("x")
        assert code == want
        if want == 250:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    if want == 250:
        wait_for(lambda: s.messages("bob"), 20, "delivery")
    else:
        assert s.messages("bob") == []
    assert "result=fail action=" + action in s.log()
