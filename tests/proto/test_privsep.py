"""Root never follows what the run user planted in data_dir.

The run user owns data_dir and everything in it, so a compromised run
user can replace any entry with a symbolic link (or, where hard links are
not protected, a hard link) to a root-only file.  posternd started as
root, and posternctl run as root, must refuse such an entry with a clear
reason and leave the target's owner, mode and content untouched.  Also:
the database is created 0600, a data_dir looser than 0750 is tightened."""
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import POSTERND, run_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs a root start")


def as_run_user(*cmd):
    subprocess.run(["runuser", "-u", run_user(), "--", *cmd], check=True, timeout=30)


def snapshot(path):
    st = os.lstat(path)
    content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink, content


@pytest.fixture
def victim():
    """Root-only things a run user must never get: a secret file, an empty
    file (SQLite would turn it into a database), a directory, and a name
    that does not exist yet in a root-only directory."""
    d = tempfile.mkdtemp(prefix="postern-victim-")
    os.chmod(d, 0o700)
    v = {"dir": os.path.join(d, "dir"), "secret": os.path.join(d, "secret"),
         "empty": os.path.join(d, "empty"), "absent": os.path.join(d, "absent")}
    os.mkdir(v["dir"], 0o700)
    with open(v["secret"], "w") as f:
        f.write("root:top-secret\n")
    open(v["empty"], "w").close()
    for k in ("secret", "empty"):
        os.chmod(v[k], 0o600)
    v["before"] = {k: snapshot(v[k]) for k in ("dir", "secret", "empty")}
    v["root"] = d
    yield v
    shutil.rmtree(d, ignore_errors=True)


def untouched(v):
    for k, snap in v["before"].items():
        assert snapshot(v[k]) == snap, f"{k} changed"
    assert not os.path.lexists(v["absent"]), "a file was created in a root-only directory"


def plant(s, rel, target):
    """As the run user: replace data_dir/rel with a symlink to target."""
    path = os.path.join(s.data, rel)
    if os.path.lexists(path):
        as_run_user("rm", "-rf", path)
    as_run_user("ln", "-s", target, path)
    return path


def installed(make_server):
    """A server that has run once (so its whole tree exists), stopped."""
    s = make_server()
    s.stop()
    return s


def start_refused(s, why, victim):
    """Starts posternd as root; it must exit at once, saying why, and
    leave the victim alone (checked first: that is the harm)."""
    p = subprocess.Popen([POSTERND, "-f", "-c", s.conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.terminate()
        _, err = p.communicate(timeout=30)
    untouched(victim)
    assert p.returncode != 0, err
    assert why in err, err
    return err


@pytest.mark.parametrize("rel,target", [
    ("queue/corrupt", "secret"),
    ("queue/corrupt", "dir"),
    ("queue/tmp", "secret"),
    ("queue/entries", "dir"),
    ("queue", "dir"),
    ("mail", "dir"),
    ("postern.db", "secret"),
    ("postern.db", "empty"),
    ("postern.db", "absent"),
    ("postern.db-journal", "secret"),
    ("postern.db-wal", "empty"),
])
def test_root_start_refuses_planted_symlink(make_server, victim, rel, target):
    s = installed(make_server)
    path = plant(s, rel, victim[target])
    start_refused(s, f"{path} is a symbolic link", victim)
    assert os.path.islink(path)


def test_root_start_refuses_hard_linked_database(make_server, victim):
    # The kernel's protected_hardlinks stops the run user from linking a
    # root file; without it (or on another system) it could: made as root.
    s = installed(make_server)
    os.unlink(os.path.join(s.data, "postern.db"))
    os.link(victim["empty"], os.path.join(s.data, "postern.db"))
    victim["before"]["empty"] = snapshot(victim["empty"])  # nlink is now 2
    start_refused(s, "postern.db has 2 hard links", victim)


def test_root_start_refuses_symlinked_pid_file(make_server, victim):
    s = make_server(start=False)
    path = plant(s, "posternd.pid", victim["secret"])
    start_refused(s, f"pid file {path} is a symbolic link", victim)


def test_root_start_refuses_symlinked_data_dir_of_the_run_user(make_server, victim):
    # data_dir in a directory the run user may write (here: its own): the
    # way to data_dir is not root's, so nothing there is trusted.
    s = make_server(start=False, populate=False)
    uid = pwd.getpwnam(run_user()).pw_uid
    os.chown(s.base, uid, -1)
    as_run_user("ln", "-s", victim["dir"], s.data)
    why = f"{s.base} is owned by uid {uid}, not root"
    start_refused(s, why, victim)
    r = s.ctl("domain", "list", check=False)
    assert r.returncode == 1 and why in r.stderr
    untouched(victim)


def test_root_start_refuses_a_data_dir_link_of_the_run_user(make_server, victim):
    # In a root-owned parent, a link root does not own (lchown) is refused.
    s = make_server(start=False, populate=False)
    uid = pwd.getpwnam(run_user()).pw_uid
    os.symlink(victim["dir"], s.data)
    os.lchown(s.data, uid, -1)
    start_refused(s, f"{s.data} is a symbolic link", victim)
    r = s.ctl("domain", "list", check=False)
    assert r.returncode == 1 and f"{s.data} is a symbolic link" in r.stderr
    untouched(victim)


def test_root_owned_data_dir_link_is_the_admins(make_server):
    # A link root made (data_dir moved to another disk) is followed.
    s = make_server(start=False, populate=False)
    real = os.path.join(s.base, "real-data")
    os.mkdir(real, 0o750)
    os.symlink(real, s.data)
    s.populate()
    s.start()
    assert os.stat(real).st_uid == pwd.getpwnam(run_user()).pw_uid
    assert os.path.exists(os.path.join(real, "postern.db"))


def test_symlinked_mail_domain_is_reported_never_followed_by_root(make_server, victim):
    s = installed(make_server)
    path = plant(s, "mail/example.test", victim["dir"])
    s.start()
    assert f"{path} is a symbolic link" in s.log()
    untouched(victim)


@pytest.mark.parametrize("rel,target", [
    ("postern.db", "absent"),
    ("postern.db", "empty"),
    ("postern.db-journal", "secret"),
    ("queue/tmp", "dir"),
])
def test_root_posternctl_refuses_planted_symlink(make_server, victim, rel, target):
    s = installed(make_server)
    path = plant(s, rel, victim[target])
    for args in (("domain", "add", "b.example"), ("user", "list"),
                 ("relay-check", "--client", "127.0.0.1", "--from", "a@b.example",
                  "--to", "alice@example.test")):
        r = s.ctl(*args, check=False)
        untouched(victim)
        assert r.returncode == 1, r
        assert f"{path} is a symbolic link" in r.stderr


def test_root_posternctl_queue_reads_as_the_run_user(make_server, victim):
    s = installed(make_server)
    qid = "0000000000001"
    as_run_user("ln", "-s", victim["secret"],
                os.path.join(s.data, "queue/entries", qid + ".msg"))
    r = s.ctl("queue", "show", qid, check=False)
    assert r.returncode == 1 and "no such message" in r.stderr
    assert "top-secret" not in r.stdout + r.stderr
    untouched(victim)


def test_database_0600_and_data_dir_tightened(make_server):
    s = make_server(start=False)
    uid = pwd.getpwnam(run_user()).pw_uid
    db = os.path.join(s.data, "postern.db")
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(s.data).st_mode) == 0o750
    assert os.stat(db).st_uid == uid and os.stat(s.data).st_uid == uid
    s.start()
    s.stop()
    for name in os.listdir(s.data):
        if name.startswith("postern.db"):
            assert stat.S_IMODE(os.stat(os.path.join(s.data, name)).st_mode) == 0o600, name
    # An older install: loose modes are tightened at the next start.
    os.chmod(s.data, 0o777)
    os.chmod(db, 0o644)
    shm = db + "-shm"
    open(shm, "w").close()
    os.chown(shm, uid, -1)
    os.chmod(shm, 0o666)
    s.start()
    assert stat.S_IMODE(os.stat(s.data).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(shm).st_mode) == 0o600
    log = s.log()
    assert f"event=data-dir path={s.data} mode=0777 tightened=0750" in log
    assert f"{db} mode 0644 tightened to 0600" in log


def test_posternctl_tightens_a_loose_data_dir(make_server):
    s = make_server(start=False, populate=False)
    os.mkdir(s.data, 0o755)
    os.chmod(s.data, 0o775)
    r = s.ctl("domain", "add", "example.test")
    assert f"{s.data} mode 0775 tightened to 0750" in r.stderr
    assert stat.S_IMODE(os.stat(s.data).st_mode) == 0o750
    assert os.stat(s.data).st_uid == pwd.getpwnam(run_user()).pw_uid


def test_root_posternctl_needs_the_run_user(make_server):
    s = make_server(start=False, populate=False)
    s.extra["user"] = "postern-no-such-user"
    s.write_conf()
    r = s.ctl("domain", "list", check=False)
    assert r.returncode == 1 and "user postern-no-such-user does not exist" in r.stderr
    assert not os.path.exists(s.data)
