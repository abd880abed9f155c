"""A config that `posternctl check` passes must start, and one that
start-up refuses, check refuses too (issue 10).

The example etc/postern.conf is copied with its comments: only the values
of the keys that must differ here (ports, data_dir, user, certificate) are
rewritten, key by key, so the test keeps exercising the comments a new
admin copies."""
import os
import re
import smtplib
import subprocess

import pytest

from conftest import POSTERND, ROOT, free_port, run_user, wait_for

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="start-up as root")


def set_keys(text, values):
    """Rewrites the value of each `key = value` line named in values,
    keeping what follows it (a blank and a # comment); every key must be
    there exactly once."""
    for key, value in values.items():
        pat = re.compile(r"^(%s\s*=\s*)(.*?)(\s+#.*)?$" % re.escape(key), re.M)
        assert len(pat.findall(text)) == 1, f"{key} is not in the example once"
        text = pat.sub(lambda m: m.group(1) + value + (m.group(3) or ""), text)
    return text


def example_conf(s):
    text = open(os.path.join(ROOT, "etc/postern.conf")).read()
    # The example's trap: a comment after a value.
    assert re.search(r"^user = \S+\s+# ", text, re.M)
    text = set_keys(text, {
        "data_dir": s.data,
        "user": run_user(),
        "smtp_listen": "127.0.0.1:0",
        "submission_listen": "127.0.0.1:0",
        "submissions_listen": "127.0.0.1:0",
        "tls_cert": s.cert,
        "tls_key": s.key,
    })
    assert "# posternd drops root to this user" in text
    with open(s.conf, "w") as f:
        f.write(text)
    return text


def start_fails(s, timeout=30):
    """posternd -f with s's config must exit non-zero; its stderr."""
    p = subprocess.Popen([POSTERND, "-f", "-c", s.conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("posternd started although check refused")
    assert p.returncode != 0, out
    return out


def test_example_config_checks_starts_and_delivers(make_server):
    s = make_server(start=False, populate=False)
    example_conf(s)
    r = s.ctl("check")
    assert r.stdout.splitlines()[-1] == f"ok: {s.conf}", r.stdout + r.stderr
    assert not os.path.exists(s.data), "check created data_dir"
    s.ctl("domain", "add", "example.org")
    s.ctl("user", "add", "alice@example.org", input="alice-secret\n")
    s.start()
    assert f"user={run_user()} " in s.log() or os.geteuid() != 0
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.sendmail("someone@remote.example", ["alice@example.org"],
                   b"Subject: first try\r\n\r\nfrom the example config\r\n")
    got = wait_for(lambda: s.messages("alice", "example.org"), what="delivery")
    assert b"from the example config" in got[0]
    # The running daemon holds its ports: check still passes.
    assert s.ctl("check").stdout.splitlines()[-1] == f"ok: {s.conf}"


def other_key(s):
    key = os.path.join(s.base, "other-key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    return key


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def as_run_user_owned(path):
    import pwd
    pw = pwd.getpwnam(run_user())
    os.chown(path, pw.pw_uid, pw.pw_gid)


def plant_queue_link(s):
    os.makedirs(s.data, 0o750)
    as_run_user_owned(s.data)
    os.symlink("/etc", os.path.join(s.data, "queue"))


def not_a_database(s):
    os.makedirs(s.data, 0o750)
    as_run_user_owned(s.data)
    db = write(os.path.join(s.data, "postern.db"), "not sqlite\n" * 100, 0o600)
    as_run_user_owned(db)


# (id, keys to set, set-up before check, what check must say, root only).
# Every one of these stops posternd's start too.
REFUSALS = [
    ("missing-user", {"user": "postern-no-such-user"}, None,
     r"postern\.conf:\d+: user postern-no-such-user does not exist", True),
    ("bad-cert", {"tls_cert": "{base}/garbage.pem"},
     lambda s: write(os.path.join(s.base, "garbage.pem"), "not a certificate\n"),
     r"postern\.conf:\d+: tls_cert .*garbage\.pem", False),
    ("key-not-matching-cert", {"tls_key": "{other_key}"}, None,
     r"postern\.conf:\d+: tls_key .*other-key\.pem: key values mismatch", False),
    ("missing-accept-file", {"accept_file": "{base}/no-such-accept.txt"}, None,
     r"no-such-accept\.txt: No such file or directory", False),
    ("bad-accept-file", {"accept_file": "{base}/accept.txt"},
     lambda s: write(os.path.join(s.base, "accept.txt"), "user@@bad\n"),
     r"accept\.txt: ", False),
    ("data-dir-is-a-file", {}, lambda s: write(s.data, "x\n"),
     r"postern\.conf:\d+: data_dir: .*/data is not a directory", False),
    ("data-dir-parent-missing", {"data_dir": "{base}/no/such/data"}, None,
     r"data_dir: cannot create .*/no/such/data: No such file", False),
    ("data-dir-foreign-owner", {},
     lambda s: (os.makedirs(s.data), os.chown(s.data, 4242, 4242)),
     r"data_dir: .*/data is owned by uid 4242", True),
    ("planted-queue-link", {}, plant_queue_link,
     r"data_dir: .*/data/queue is a symbolic link", True),
    ("not-a-database", {}, not_a_database,
     r"directory: .*postern\.db: file is not a database", True),
    ("pid-file-link", {"pid_file": "{base}/pid-link"},
     lambda s: os.symlink("/etc/passwd", os.path.join(s.base, "pid-link")),
     r"postern\.conf:\d+: pid file .*pid-link is a symbolic link", False),
    ("pid-file-dir-missing", {"pid_file": "{base}/no/such/posternd.pid"}, None,
     r"pid file .*/no/such/posternd\.pid: No such file", False),
    ("listen-not-local", {"smtp_listen": "192.0.2.1:2525"}, None,
     r"postern\.conf:\d+: smtp listener 192\.0\.2\.1:2525: Cannot assign", False),
    ("listen-twice", {"smtp_listen": "127.0.0.1:{port}",
                      "submission_listen": "0.0.0.0:{port}"}, None,
     r"submission listener 0\.0\.0\.0:\d+: the port is also taken by "
     r"smtp_listen 127\.0\.0\.1:\d+", False),
    ("listen-unparsable", {"smtp_listen": "localhost:25"}, None,
     r"postern\.conf:\d+: smtp_listen: bad listen address", False),
    # posternd opens log_file after the privilege drop, as the run user.
    ("log-file-dir-missing", {"log_file": "{base}/no/such/dir/x.log"}, None,
     r"postern\.conf:\d+: log_file .*/no/such/dir/x\.log: No such file",
     False),
    ("log-file-link", {"log_file": "{base}/log-link"},
     lambda s: os.symlink(os.path.join(s.base, "real.log"),
                          os.path.join(s.base, "log-link")),
     r"postern\.conf:\d+: log_file .*log-link: Too many levels of symbolic "
     r"links \(a symbolic link: not followed\)", False),
    ("log-file-dir-root-only", {"log_file": "{base}/rootdir/x.log"},
     lambda s: os.makedirs(os.path.join(s.base, "rootdir"), 0o755),
     r"postern\.conf:\d+: log_file .*/rootdir/x\.log: Permission denied",
     True),
    ("data-dir-too-long", {"data_dir": "/tmp/" + "d" * 100}, None,
     r"data_dir too long", False),
]


# Where start-up words it differently.
START_MSG = {
    "listen-twice": r"submission listener 0\.0\.0\.0:\d+: Address already in use",
    "data-dir-foreign-owner": r"data_dir: .*/data is owned by uid 4242",
}


@pytest.mark.parametrize("name,keys,setup,msg,root_only", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_check_refuses_what_start_refuses(make_server, name, keys, setup, msg,
                                          root_only):
    if root_only and os.geteuid() != 0:
        pytest.skip("start-up as root")
    s = make_server(start=False, populate=False)
    fill = {"base": s.base, "port": free_port(), "other_key": ""}
    if "{other_key}" in str(keys):
        fill["other_key"] = other_key(s)
    s.extra.update({k: v.format(**fill) for k, v in keys.items()})
    s.write_conf()
    if setup:
        setup(s)
    before = sorted(os.listdir(s.base))
    r = s.ctl("check", check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(msg, r.stderr), r.stderr
    assert "ok:" not in r.stdout
    assert sorted(os.listdir(s.base)) == before, "check changed something"
    # posternd refuses it with the same words (less the FILE:LINE).
    out = start_fails(s)
    want = START_MSG.get(name, msg.replace(r"postern\.conf:\d+: ", ""))
    assert re.search(want, out), (want, out)


def test_ca_file_unreadable_or_garbage_is_a_warning(make_server):
    """posternd reads smtp_tls_ca_file at each outbound connection, not at
    start-up: check warns about it and still passes, and posternd starts."""
    s = make_server(start=False, populate=False)
    ca = write(os.path.join(s.base, "ca.pem"), "no certificates here\n")
    s.extra.update({"smtp_tls": "verify", "smtp_tls_ca_file": ca})
    s.write_conf()
    r = s.ctl("check", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"warning: .*smtp_tls_ca_file .*ca\.pem: no CA "
                     r"certificate", r.stdout), r.stdout
    assert "would refuse" not in r.stdout + r.stderr
    if os.geteuid() == 0:
        # Readable only by root: posternd reads it as the run user.
        subprocess.run(["cp", s.cert, ca], check=True)
        os.chmod(ca, 0o600)
        r = s.ctl("check", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"warning: .*smtp_tls_ca_file .*ca\.pem: Permission "
                         r"denied", r.stdout), r.stdout
        s.start()  # and posternd starts with it
        s.stop()
        os.chmod(ca, 0o644)
    else:
        subprocess.run(["cp", s.cert, ca], check=True)
    r = s.ctl("check")
    assert r.stdout.splitlines()[-1].startswith("ok: ")
    assert "smtp_tls_ca_file" not in r.stdout


def test_port_in_use_is_a_warning(make_server):
    port = free_port()
    a = make_server(extra={"smtp_listen": f"127.0.0.1:{port}"})
    r = a.ctl("check")
    assert re.search(rf"warning: .*postern\.conf:\d+: smtp listener 127\.0\.0\.1:{port}: "
                     r"Address already in use", r.stdout), r.stdout
    assert r.stdout.splitlines()[-1] == f"ok: {a.conf}"


@ROOT_ONLY
def test_check_changes_nothing(make_server):
    s = make_server(start=False, populate=False)
    s.ctl("domain", "add", "example.test")
    os.chmod(s.data, 0o775)
    os.chmod(os.path.join(s.data, "postern.db"), 0o644)
    snap = {p: os.lstat(os.path.join(s.data, p)) for p in os.listdir(s.data)}
    snap["."] = os.lstat(s.data)
    r = s.ctl("check")
    assert "0775 would be tightened to 0750" in r.stderr, r.stderr
    assert "0644 would be tightened to 0600" in r.stderr, r.stderr
    for p, st in snap.items():
        now = os.lstat(os.path.join(s.data, p))
        assert (now.st_mode, now.st_uid, now.st_ino) == (st.st_mode, st.st_uid, st.st_ino), p
    assert sorted(os.listdir(s.data)) == sorted(k for k in snap if k != ".")
