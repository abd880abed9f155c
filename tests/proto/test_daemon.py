"""The daemon: detaching, pid file, privilege drop, graceful shutdown,
refusing bad config."""
import os
import pwd
import signal
import subprocess
import time

import pytest

from conftest import POSTERND, Raw, run_user


def test_daemonizes_and_writes_pid_file(make_server):
    s = make_server(start=False)
    p = s.start(foreground=False, wait=False)
    assert p.wait(60) == 0, s.log()
    pidfile = os.path.join(s.data, "posternd.pid")
    deadline = time.time() + 10
    while not os.path.exists(pidfile) and time.time() < deadline:
        time.sleep(0.05)
    pid = int(open(pidfile).read())
    os.kill(pid, 0)
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("daemon did not stop")
    assert not os.path.exists(pidfile)


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_drops_privileges(server):
    uid = pwd.getpwnam(run_user()).pw_uid
    status = open(f"/proc/{server.proc.pid}/status").read()
    uids = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()[1:]
    assert all(int(u) == uid for u in uids)
    with __import__("smtplib").SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["alice@example.test"], b"Subject: o\r\n\r\nx\r\n")
    new = os.path.join(server.maildir("alice"), "new")
    assert os.stat(new).st_uid == uid
    assert os.stat(os.path.join(new, os.listdir(new)[0])).st_uid == uid
    assert "event=privileges-dropped user=" + run_user() in server.log()


def test_graceful_shutdown_lets_transaction_finish(make_server):
    s = make_server()
    idle = Raw(s.ports["smtp"])
    idle.cmd("EHLO idle.example")
    busy = Raw(s.ports["smtp"])
    busy.cmd("EHLO busy.example")
    busy.cmd("MAIL FROM:<x@remote.example>")
    busy.cmd("RCPT TO:<alice@example.test>")
    s.proc.send_signal(signal.SIGTERM)
    assert idle.reply().startswith("421 4.3.2")
    assert busy.cmd("DATA").startswith("354")
    assert busy.cmd("Subject: last\r\n\r\nx\r\n.").startswith("250")
    assert busy.reply().startswith("421 4.3.2")
    assert s.proc.wait(30) == 0
    assert len(s.messages("alice")) == 1
    # No new sessions once stopping: the port is closed.
    with pytest.raises(OSError):
        Raw(s.ports["smtp"])


def test_shutdown_timeout_bounds_slow_clients(make_server):
    s = make_server({"shutdown_timeout": "1s"})
    slow = Raw(s.ports["smtp"])
    slow.cmd("EHLO slow.example")
    slow.cmd("MAIL FROM:<x@remote.example>")
    s.proc.send_signal(signal.SIGTERM)
    assert slow.reply().startswith("421 4.3.2")
    assert s.proc.wait(30) == 0
    assert "event=shutdown-timeout" in s.log()


def test_sighup_does_not_stop(server):
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert server.proc.poll() is None
    assert Raw(server.ports["smtp"]).greeting.startswith("220")


@pytest.mark.parametrize("line,msg", [
    ("bogus_key = 1", "postern.conf:{n}: unknown key \"bogus_key\""),
    ("message_size_limit = lots", "postern.conf:{n}: message_size_limit"),
    ("text_line_limit = 5", "postern.conf:{n}: text_line_limit: value out of range"),
    ("garbage", "postern.conf:{n}: expected \"key = value\""),
    ("smtp_tls = sometimes", "postern.conf:{n}: smtp_tls: want may, encrypt, verify or none"),
    ("routes = example.net", "postern.conf:{n}: routes: bad route"),
    ("relay_addresses = 10.0.0.0/33", "postern.conf:{n}: relay_addresses: bad address"),
])
def test_bad_config_refused(make_server, line, msg):
    s = make_server(start=False, populate=False)
    msg = msg.format(n=len(open(s.conf).readlines()) + 1)
    with open(s.conf, "a") as f:
        f.write(line + "\n")
    r = subprocess.run([POSTERND, "-f", "-c", s.conf], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert msg in r.stderr
    r = s.ctl("check", check=False)
    assert r.returncode != 0 and msg in r.stderr
    s.proc = None


def test_port_in_use_is_reported(make_server):
    a = make_server()
    b = make_server(start=False, populate=False)
    b.extra["smtp_listen"] = f"127.0.0.1:{a.ports['smtp']}"
    b.write_conf()
    r = subprocess.run([POSTERND, "-f", "-c", b.conf], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "Address already in use" in r.stderr
