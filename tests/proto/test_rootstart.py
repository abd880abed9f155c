"""Root start-up against a compromised run user, beyond data_dir's contents
(issue 9, security review): the way to data_dir must be root's before
root changes data_dir; a FIFO where a regular file is expected never hangs
start-up; the run user has no root group; no privilege comes back.

Each test starts the real posternd (or posternctl) as root and checks the
harm first (a root-owned directory given away, a hang), then the reason."""
import os
import pwd
import stat
import subprocess

import pytest

from conftest import POSTERNCTL, POSTERND, run_user
from test_privsep import (as_run_user, installed, snapshot, start_refused,  # noqa: F401
                          untouched, victim)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs a root start")

RULE = "data_dir's parents must be root-owned and not writable by others"


def uid():
    return pwd.getpwnam(run_user()).pw_uid


def moved_data_dir(s, parent_owner):
    """data_dir as a root-owned link (the admin moved the data) to
    BASE/disk/postern, BASE/disk owned by parent_owner."""
    disk = os.path.join(s.base, "disk")
    os.mkdir(disk, 0o755)
    os.chown(disk, parent_owner, -1)
    real = os.path.join(disk, "postern")
    os.mkdir(real, 0o750)
    os.symlink(real, s.data)
    return disk, real


def test_root_never_gives_away_what_a_run_user_link_points_to(make_server, victim):
    # The review's reproduction: the run user owns BASE/disk, so it can
    # replace BASE/disk/postern with a link to a root-only directory.
    s = make_server(start=False, populate=False)
    disk, real = moved_data_dir(s, uid())
    as_run_user("mv", real, real + ".old")
    as_run_user("ln", "-s", victim["dir"], real)
    start_refused(s, f"{disk} is owned by uid {uid()}, not root: {RULE}", victim)
    r = s.ctl("domain", "list", check=False)
    untouched(victim)
    assert r.returncode == 1 and RULE in r.stderr, r.stderr
    r = s.ctl("check", check=False)
    untouched(victim)
    assert r.returncode == 1 and f"{disk} is owned by uid {uid()}" in r.stderr, r.stderr


def test_root_refuses_a_data_dir_in_a_run_user_directory_before_creating(make_server, victim):
    # Same layout, nothing swapped yet: refused all the same (the run user
    # could swap it at any time), and no directory is made through it.
    s = make_server(start=False, populate=False)
    disk = os.path.join(s.base, "disk")
    os.mkdir(disk, 0o755)
    os.chown(disk, uid(), -1)
    as_run_user("ln", "-s", victim["dir"], os.path.join(disk, "to-victim"))
    s.data = s.extra["data_dir"] = os.path.join(disk, "to-victim", "postern")
    s.write_conf()
    start_refused(s, f"{disk} is owned by uid {uid()}, not root", victim)
    assert os.listdir(victim["dir"]) == []


@pytest.mark.parametrize("mode,ok", [(0o775, False), (0o757, False), (0o1777, True)])
def test_data_dir_parent_writable_by_others(make_server, mode, ok):
    s = make_server(start=False, populate=False)
    parent = os.path.join(s.base, "p")
    os.mkdir(parent)
    os.chmod(parent, mode)
    s.data = s.extra["data_dir"] = os.path.join(parent, "data")
    s.write_conf()
    if ok:  # sticky, like /tmp: nobody can rename what root made there
        s.populate()
        s.start()
        assert os.stat(s.data).st_uid == uid()
        return
    p = subprocess.run([POSTERND, "-f", "-c", s.conf], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    who = "others" if mode & 0o002 else "its group"
    assert f"{parent} is writable by {who} (mode {mode:04o}): {RULE}" in p.stderr, p.stderr
    assert not os.path.exists(s.data), "data_dir was created before the refusal"
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and f"{parent} is writable by {who}" in r.stderr, r.stderr


def test_run_user_link_on_the_way_is_refused(make_server, victim):
    # A link made by root but given to the run user (lchown) is not root's.
    s = make_server(start=False, populate=False)
    link = os.path.join(s.base, "via")
    os.symlink(victim["root"], link)
    os.lchown(link, uid(), -1)
    s.data = s.extra["data_dir"] = os.path.join(link, "dir")
    s.write_conf()
    start_refused(s, f"{link} is a symbolic link: refusing to follow it", victim)


def test_root_owned_links_all_the_way_are_followed(make_server):
    # /x/data -> /x/mnt/postern, /x/mnt -> /x/disk: all root's.
    s = make_server(start=False, populate=False)
    disk = os.path.join(s.base, "disk")
    os.mkdir(disk, 0o755)
    os.symlink("disk", os.path.join(s.base, "mnt"))
    os.symlink(os.path.join(s.base, "mnt", "postern"), s.data)
    s.populate()
    s.start()
    real = os.path.join(disk, "postern")
    assert os.stat(real).st_uid == uid()
    assert os.path.exists(os.path.join(real, "postern.db"))
    assert s.ctl("check").returncode == 0


def test_check_as_run_user_warns_about_the_parents(make_server):
    s = make_server(start=False)
    os.chmod(s.base, 0o777)
    try:
        r = subprocess.run(["runuser", "-u", run_user(), "--", POSTERNCTL, "-c", s.conf,
                            "check"], capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(s.base, 0o755)
    assert f"{s.base} is writable by others" in r.stdout, (r.stdout, r.stderr)
    assert "posternd started as root would refuse to start" in r.stdout


# ---- no FIFO (or other non-file) hangs start-up --------------------------

def run_start(s, foreground):
    """posternd started as root must come back (the parent too, without -f)."""
    cmd = [POSTERND, "-c", s.conf] + (["-f"] if foreground else [])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        pytest.fail("posternd start-up hangs")
    return p.returncode, err


@pytest.mark.parametrize("foreground", [True, False])
def test_fifo_pid_file_is_refused_not_waited_on(make_server, foreground):
    s = installed(make_server)
    pidf = os.path.join(s.data, "posternd.pid")
    if os.path.lexists(pidf):
        os.unlink(pidf)
    as_run_user("mkfifo", pidf)
    rc, err = run_start(s, foreground)
    assert rc != 0
    assert f"pid file {pidf} is not a regular file" in err, err
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and f"pid file {pidf} is not a regular file" in r.stderr


def test_pid_file_of_another_user_is_refused(make_server):
    s = installed(make_server)
    pidf = os.path.join(s.data, "posternd.pid")
    if os.path.lexists(pidf):
        os.unlink(pidf)
    with open(pidf, "w") as f:
        f.write("1\n")
    os.chmod(pidf, 0o666)  # root's, even though anybody may write it
    rc, err = run_start(s, True)
    assert rc != 0 and f"pid file {pidf} is owned by uid 0, not uid {uid()}" in err, err
    assert open(pidf).read() == "1\n"


@pytest.mark.parametrize("name", ["postern.db", "postern.db-wal", "postern.db-journal"])
def test_fifo_database_file_is_refused(make_server, name):
    s = installed(make_server)
    path = os.path.join(s.data, name)
    if os.path.lexists(path):
        os.unlink(path)
    as_run_user("mkfifo", path)
    rc, err = run_start(s, True)
    assert rc != 0 and f"{path} is not a regular file" in err, err


def test_fifo_control_socket_is_replaced(make_server):
    s = installed(make_server)
    sock = os.path.join(s.data, "control.sock")
    if os.path.lexists(sock):
        os.unlink(sock)
    as_run_user("mkfifo", sock)
    s.start()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert s.ctl("reload").returncode == 0


def test_fifo_in_the_queue_does_not_hang_the_load(make_server):
    s = installed(make_server)
    qid = "0000000000001"
    entries = os.path.join(s.data, "queue", "entries")
    as_run_user("mkfifo", os.path.join(entries, qid + ".msg"))
    r = s.ctl("queue", "show", qid, check=False)  # no daemon: reads the file
    assert r.returncode == 1
    s.start()  # waits for the daemon to be ready: it would time out on a hang
    assert "result=corrupt" in s.log() and qid in s.log()
    assert stat.S_ISFIFO(os.lstat(os.path.join(s.data, "queue", "corrupt",
                                               qid + ".msg")).st_mode)


# ---- the run user and what it keeps --------------------------------------

def test_no_new_privileges_after_the_drop(make_server):
    s = make_server()
    status = open(f"/proc/{s.proc.pid}/status").read()
    fields = dict(l.split(":\t", 1) for l in status.splitlines() if ":\t" in l)
    assert fields["NoNewPrivs"].strip() == "1", status
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapPrm"].strip() == "0000000000000000"
    assert fields["Uid"].split()[:3] == [str(uid())] * 3
    assert "0" not in fields["Gid"].split() and fields["Groups"].split() == fields["Gid"].split()[:1]


@pytest.fixture
def gid0_user():
    name = f"postern-g0-{os.getpid()}"
    subprocess.run(["useradd", "-r", "-M", "-N", "-g", "0", "-d", "/nonexistent",
                    "-s", "/usr/sbin/nologin", name], check=True, capture_output=True, timeout=60)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)


def test_run_user_with_group_0_is_refused(make_server, gid0_user):
    s = make_server(start=False, populate=False)
    s.extra["user"] = gid0_user
    s.write_conf()
    why = f"user {gid0_user} has primary group 0 (root)"
    p = subprocess.run([POSTERND, "-f", "-c", s.conf], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and why in p.stderr, p.stderr
    assert not os.path.exists(s.data)
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and why in r.stderr, r.stderr
    r = s.ctl("domain", "list", check=False)
    assert r.returncode == 1 and why in r.stderr, r.stderr
    assert not os.path.exists(s.data)


def test_root_owned_journal_left_by_root_sqlite3_stops_the_start(make_server):
    # What root's sqlite3 leaves behind (admin.md: import as the run user).
    s = installed(make_server)
    journal = os.path.join(s.data, "postern.db-journal")
    with open(journal, "w"):
        pass
    rc, err = run_start(s, True)
    assert rc != 0 and f"{journal} is owned by uid 0, not uid {uid()}" in err, err
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and f"{journal} is owned by uid 0" in r.stderr, r.stderr
