"""spool_min_free: unauthenticated DATA cannot fill data_dir's file system.
data_dir sits on a small tmpfs the test mounts (posternd runs as root
here); three sessions spool 9 MiB each while a small message still gets
through, the spools that would cross the reserve get 452 4.3.1 at the end
of DATA, and MAIL is refused with 452 when the space is short."""
import os
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from conftest import Raw, wait_for

MIB = 1024 * 1024


@pytest.fixture
def small_fs():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tempfile.mkdtemp(prefix="postern-fs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=755",
                        "tmpfs", d], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    yield d
    subprocess.run(["umount", "-l", d])
    shutil.rmtree(d, ignore_errors=True)


def fs_server(make_server, small_fs, extra):
    srv = make_server(dict({"data_dir": small_fs + "/data"}, **extra),
                      start=False)
    srv.data = small_fs + "/data"
    srv.start()
    return srv


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def open_data(port):
    r = Raw(port, timeout=60)
    assert r.cmd("EHLO c").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    return r


def body(size):
    line = b"line yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n"
    return line * (size // len(line))


def send_small(srv, subject):
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as c:
        c.sendmail("y@remote.example", ["bob@example.test"],
                   b"Subject: " + subject + b"\r\n\r\nhi\r\n")


def test_spools_stop_at_the_reserve(make_server, small_fs):
    srv = fs_server(make_server, small_fs, {"spool_min_free": "16M"})
    big = body(9 * MIB)
    rs = []
    for k in range(3):
        r = open_data(srv.ports["smtp"])
        r.sock.sendall(b"Subject: big%d\r\n\r\n" % k + big)
        rs.append(r)
    time.sleep(3)
    # The spools left the reserve free (less one chunk of slack).
    assert free_bytes(small_fs) > 15 * MIB
    assert "reason=\"spool_min_free\"" in srv.log()
    send_small(srv, b"small")  # no exception: 250
    for r in rs:
        r.send(b".\r\n")
    replies = [r.reply() for r in rs]
    print(replies)
    # Which spool crossed the reserve depends on the interleaving; at
    # most one 9 MiB message (and its copy) fits above it.
    assert all(x[:3] in ("250", "452", "451") for x in replies), replies
    assert sum(x.startswith("452 4.3.1") for x in replies) >= 1, replies
    accepted = sum(x.startswith("250") for x in replies)
    assert accepted >= 1, replies
    assert len(srv.messages("bob")) == 1
    assert len(srv.messages("alice")) == accepted
    for m in srv.messages("alice"):
        assert m.count(b"\nline y") == big.count(b"\r\n")  # all of it
    for r in rs:
        assert r.cmd("QUIT").startswith("221")
    # The refused spools are gone: the space comes back.
    wait_for(lambda: free_bytes(small_fs) > 20 * MIB, timeout=10,
             what="the refused spools freed")


def test_mail_refused_when_space_is_short(make_server, small_fs):
    srv = fs_server(make_server, small_fs, {"spool_min_free": "16M",
                                            "message_size_limit": "30M"})
    r = Raw(srv.ports["smtp"])
    assert r.cmd("EHLO c").startswith("250")
    # About 31.5 MiB are free: half the reserve (8 MiB) plus SIZE must be.
    reply = r.cmd("MAIL FROM:<x@remote.example> SIZE=%d" % (20 * MIB))
    assert reply.startswith("250"), reply
    assert r.cmd("RSET").startswith("250")
    reply = r.cmd("MAIL FROM:<x@remote.example> SIZE=%d" % (25 * MIB))
    assert reply.startswith("452 4.3.1"), reply
    # Fill the disk behind posternd's back: only MAIL can notice.
    with open(os.path.join(small_fs, "filler"), "wb") as f:
        f.write(b"\0" * (26 * MIB))
    try:
        time.sleep(1.5)  # the free-space figure is at most 1 s old
        r.cmd("NOOP")
        reply = ""
        deadline = time.time() + 10
        while time.time() < deadline:
            reply = r.cmd("MAIL FROM:<x@remote.example>")
            if reply.startswith("452"):
                break
            r.cmd("RSET")
            time.sleep(0.5)
        assert reply.startswith("452 4.3.1"), reply
    finally:
        os.unlink(os.path.join(small_fs, "filler"))
    deadline = time.time() + 10
    while time.time() < deadline:
        reply = r.cmd("MAIL FROM:<x@remote.example>")
        if reply.startswith("250"):
            break
        time.sleep(0.5)
    assert reply.startswith("250"), reply
    assert r.cmd("QUIT").startswith("221")


def test_reserve_larger_than_the_disk_refuses_at_mail(make_server, small_fs):
    srv = fs_server(make_server, small_fs, {"spool_min_free": "1G"})
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        send_small(srv, b"refused")
    assert e.value.smtp_code == 452
    assert b"4.3.1" in e.value.smtp_error
    # 0 turns the check off.
    srv.stop()
    srv.extra["spool_min_free"] = "0"
    srv.write_conf()
    srv.start()
    send_small(srv, b"accepted")
    assert len(srv.messages("bob")) == 1
