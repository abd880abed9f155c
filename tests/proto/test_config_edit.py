"""posternctl config get/set/unset/list against the real daemon: a change
is written in place (comments and order kept), validated before the file
is replaced, and applied by a reload (checked over SMTP); an invalid one
leaves the file byte for byte and the running server as it was."""
import os
import smtplib
import subprocess
import threading
import time

from conftest import POSTERNCTL, wait_for

HEAD = "# postern.conf for the config-edit tests\n# second comment line\n\n"
TAIL = "\n# the end: kept too\n"



def entries(d):
    """A directory's names, without the editors' lock file (.NAME.lock,
    which stays between edits)."""
    return sorted(n for n in os.listdir(d) if not (n.startswith(".") and n.endswith(".lock")))

def rcpt_code(s, frm="x@remote.example", to="far@remote.example"):
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.ehlo("client.example")
    assert c.mail(frm)[0] == 250
    code, text = c.rcpt(to)
    c.quit()
    return code, text.decode()


def commented(s, extra_line="relay = none   # closed until set"):
    """The server's config with comments, a blank line and a trailing
    comment on the relay line (the conftest writes bare key = value)."""
    with open(s.conf) as f:
        body = f.read()
    text = HEAD + body.replace("relay = none\n", extra_line + "\n") + TAIL
    with open(s.conf, "w") as f:
        f.write(text)
    return text


def read(path):
    with open(path, "rb") as f:
        return f.read()


def ctl(conf, *args):
    return subprocess.run([POSTERNCTL, "-c", conf, *args], capture_output=True,
                          text=True, timeout=60)


def test_set_relay_applies_live_and_keeps_the_file(make_server):
    s = make_server(dict(relay="none"), start=False)
    before = commented(s)
    s.start()
    code, text = rcpt_code(s)
    assert code == 550 and "5.7.1" in text
    r = ctl(s.conf, "config", "set", "relay", "anyone")
    assert r.returncode == 0, r.stderr
    assert "relay = anyone" in r.stdout
    assert "OPEN RELAY" in r.stdout            # check's warning
    assert f"posternd reloaded {s.conf}" in r.stdout
    # Only the relay line changed, its comment kept; everything else byte
    # for byte, in order.
    after = read(s.conf).decode()
    assert after == before.replace("relay = none   # closed until set",
                                   "relay = anyone   # closed until set")
    assert rcpt_code(s)[0] == 250
    wait_for(lambda: "event=reload result=ok relay=anyone" in s.log(), what="reload")
    # unset: the line goes, the default (none) applies again.
    r = ctl(s.conf, "config", "unset", "relay")
    assert r.returncode == 0, r.stderr
    assert "relay unset (default: none)" in r.stdout
    assert read(s.conf).decode() == before.replace(
        "relay = none   # closed until set\n", "")
    assert rcpt_code(s)[0] == 550
    # A key not in the file is appended at the end.
    r = ctl(s.conf, "config", "set", "relay_addresses", "127.0.0.1", "relay", "addresses")
    assert r.returncode == 0, r.stderr
    assert read(s.conf).decode().endswith(
        TAIL + "relay_addresses = 127.0.0.1\nrelay = addresses\n")
    assert rcpt_code(s)[0] == 250


def test_invalid_change_leaves_file_and_server(make_server):
    s = make_server(dict(relay="none"), start=False)
    commented(s)
    s.start()
    before = read(s.conf)
    names = entries(s.base)
    for args, want in [
        (("relay", "open"), "relay: want anyone"),
        (("relay", "anyone", "workers", "0"), "workers: value out of range"),
        (("no_such_key", "1"), 'unknown key "no_such_key"'),
        (("hostname", "a\nrelay = anyone"), "control character"),
        # Cross-key: valid alone, refused as a whole config.
        (("tls_cert", ""), "tls_cert and tls_key must be set together"),
        # The list files it names are read as config_load reads them.
        (("accept_file", "/nonexistent/accept.txt"), "/nonexistent/accept.txt"),
    ]:
        r = ctl(s.conf, "config", "set", *args)
        assert r.returncode == 1, (args, r.stdout)
        assert want in r.stderr and "is unchanged" in r.stderr, r.stderr
        assert read(s.conf) == before, args
        # No temporary file left behind.
        assert entries(s.base) == names, args
    assert "posternd reloaded" not in r.stdout
    code, _ = rcpt_code(s)
    assert code == 550                         # still relay = none
    assert "event=reload" not in s.log()       # nothing was reloaded
    # An odd number of words is a usage error.
    r = ctl(s.conf, "config", "set", "relay")
    assert r.returncode == 2 and read(s.conf) == before


def test_get_and_list(make_server):
    s = make_server(dict(relay="local-hosts", greet_pause="0"), start=False)
    commented(s, "relay = local-hosts  # hosts")
    r = ctl(s.conf, "config", "get", "relay", "max_errors", "hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "relay = local-hosts\nmax_errors = 20\nhostname = mx.example.test\n"
    r = ctl(s.conf, "config", "get", "relay", "nope")
    assert r.returncode == 1 and 'unknown key "nope"' in r.stderr and r.stdout == ""
    every = ctl(s.conf, "config", "list")
    assert every.returncode == 0
    lines = every.stdout.splitlines()
    assert "relay = local-hosts" in lines and "max_errors = 20  # default" in lines
    assert ctl(s.conf, "config", "get").stdout == every.stdout
    only = ctl(s.conf, "config", "list", "--set").stdout.splitlines()
    assert "relay = local-hosts" in only and "greet_pause = 0" in only
    assert not any("max_errors" in l for l in only)
    assert ctl(s.conf, "config", "list", "--bogus").returncode == 2


def test_not_running_and_restart_keys(make_server):
    s = make_server(start=False)
    r = ctl(s.conf, "config", "set", "greet_pause", "1s")
    assert r.returncode == 0, r.stderr
    assert "posternd is not running" in r.stdout and "nothing reloaded" in r.stdout
    s.start()
    r = ctl(s.conf, "config", "set", "workers", "3", "greet_pause", "2s")
    assert r.returncode == 0, r.stderr
    assert "workers changes at restart" in r.stdout
    assert "greet_pause changes" not in r.stdout
    assert "posternd reloaded" in r.stdout
    # posternd's reload note names the key from the same list.
    wait_for(lambda: "keys=workers" in s.log(), what="reload note")
    note = [l for l in s.log().splitlines() if "change only at restart" in l][-1]
    assert "listeners=-" in note and "keys=workers" in note, note
    r = ctl(s.conf, "config", "set", "tls_cert", "", "tls_key", "",
            "submissions_listen", "", "pop3s_listen", "")
    assert r.returncode == 0, r.stderr
    assert "turning TLS on or off changes at restart" in r.stdout


def test_symlinked_conf_refused(make_server, tmp_path):
    s = make_server(start=False)
    link = tmp_path / "link.conf"
    link.symlink_to(s.conf)
    before = read(s.conf)
    r = ctl(str(link), "config", "set", "relay", "anyone")
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert read(s.conf) == before
    assert entries(tmp_path) == ["link.conf"]
    # Reading through it is fine.
    assert ctl(str(link), "config", "get", "relay").stdout == "relay = none\n"


def test_concurrent_sets_all_applied(make_server):
    """Two editors at once, each adding keys of its own: the directory
    lock serialises them, so no edit is lost to the other's rename."""
    s = make_server(start=False)
    keys = [["greet_pause", "max_errors", "recipient_limit", "expansion_limit",
             "auth_max_failures", "smtp_timeout", "pop3_timeout", "imap_timeout"],
            ["text_line_limit", "max_sessions", "max_sessions_per_ip",
             "queue_lifetime", "queue_retry_max", "queue_retry_min",
             "command_line_limit", "header_size_limit"]]
    values = {"greet_pause": "3s", "max_errors": "7", "recipient_limit": "77",
              "expansion_limit": "70", "auth_max_failures": "6",
              "smtp_timeout": "301s", "pop3_timeout": "11m", "imap_timeout": "31m",
              "text_line_limit": "2000", "max_sessions": "999",
              "max_sessions_per_ip": "49", "queue_lifetime": "4d",
              "queue_retry_max": "2h", "queue_retry_min": "6m",
              "command_line_limit": "2048", "header_size_limit": "204800"}
    errors = []

    def editor(mine):
        for k in mine:
            r = ctl(s.conf, "config", "set", k, values[k])
            if r.returncode != 0:
                errors.append(r.stderr)

    threads = [threading.Thread(target=editor, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    r = ctl(s.conf, "config", "list", "--set")
    got = dict(l.split(" = ", 1) for l in r.stdout.splitlines())
    for k, v in values.items():
        assert got.get(k) == v, (k, r.stdout)
    assert [n for n in os.listdir(s.base) if ".edit." in n] == []


def test_reload_failure_reported(make_server, tmp_path):
    """What config_load does not open (the log file) only the reload
    finds: the file is written, the reload's error is printed, exit 1,
    and the running server keeps its config."""
    s = make_server(dict(relay="none"))
    missing = str(tmp_path / "no-such-dir" / "postern.log")
    r = ctl(s.conf, "config", "set", "log_file", missing, "relay", "anyone")
    assert r.returncode == 1, r.stdout
    assert "written, but the reload failed" in r.stderr and "no-such-dir" in r.stderr, r.stderr
    assert f"log_file = {missing}" in read(s.conf).decode()
    wait_for(lambda: "event=reload result=fail" in s.log(), what="failed reload")
    assert rcpt_code(s)[0] == 550              # the old config still runs


def test_a_lock_on_the_directory_blocks_nothing(make_server):
    """Any local user may open postern.conf's directory and flock it:
    editors lock a 0600 file of their own instead, so that blocks
    nobody; and one editor holding the lock stops another within a
    bound, with an error, never a hang."""
    import fcntl
    s = make_server()
    d = os.open(os.path.dirname(s.conf), os.O_RDONLY)
    fcntl.flock(d, fcntl.LOCK_EX)
    try:
        r = s.ctl("config", "set", "log_level", "info")
        assert r.returncode == 0
    finally:
        os.close(d)
    lock = os.path.join(os.path.dirname(s.conf), ".postern.conf.lock")
    assert os.stat(lock).st_mode & 0o777 == 0o600
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        t = time.time()
        r = s.ctl("config", "set", "log_level", "debug", check=False)
        assert r.returncode == 1 and "another edit holds the lock" in r.stderr
        assert time.time() - t < 30
    finally:
        os.close(fd)
    assert "log_level = info" in open(s.conf).read()
