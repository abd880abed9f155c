"""kill -9 of posternd during IMAP APPEND, COPY, MOVE and EXPUNGE: after a
restart nothing is lost, nothing is duplicated, and each folder's index
agrees with its Maildir (UIDs unique and ascending, below UIDNEXT, one per
file)."""
import os
import re
import signal
import time

import pytest

from imapdiff import login, ok

USER, PASSWORD = "alice@example.test", "secret-alice"
IMAP = {"imap_listen": "127.0.0.1:0", "imap_allow_plaintext": "yes"}
N = 300




def msg(i, size=0):
    return (f"Subject: m{i}\r\nMessage-ID: <m{i}@crash>\r\n\r\nbody {i}\r\n".encode()
            + b"x" * size)


def fill(s, n=N, box="INBOX"):
    c = login(s)
    for i in range(n):
        data = msg(i)
        ok(c.command(b"APPEND %s {%d+}\r\n" % (box.encode(), len(data)) + data))
    c.close()


def contents(s, box):
    """(UIDs in order, Message-IDs) of box after a fresh login; checks the
    index against the Maildir and the UIDs against UIDNEXT."""
    c = login(s)
    r = ok(c.command(f"SELECT {box}"))
    uidnext = int(re.search(rb"UIDNEXT (\d+)", b"\n".join(r)).group(1))
    exists = int(next(re.match(rb"\* (\d+) EXISTS", ln).group(1)
                      for ln in r if re.match(rb"\* \d+ EXISTS", ln)))
    uids, ids = [], []
    if exists:
        r = ok(c.command("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
        for ln in r[:-1]:
            uids.append(int(re.search(rb"UID (\d+)", ln).group(1)))
            ids.append(re.search(rb"<(m\d+)@crash>", ln).group(1).decode())
    c.command("LOGOUT")
    c.close()
    assert len(uids) == exists
    assert uids == sorted(set(uids)), "UIDs not unique and ascending"
    assert not uids or uids[-1] < uidnext
    d = s.maildir("alice")
    if box != "INBOX":
        d = os.path.join(d, "." + box)
    files = [n for sub in ("cur", "new") for n in os.listdir(os.path.join(d, sub))]
    assert len(files) == exists, (files, exists)
    return uids, ids


def kill_restart(s):
    s.stop(sig=signal.SIGKILL)
    s.start()


def send_and_kill(s, c, command, delay):
    """Sends command without waiting for its reply, kills the daemon after
    delay seconds, restarts it."""
    c.seq += 1
    c.sock.sendall(b"t%d " % c.seq + command + b"\r\n")
    time.sleep(delay)
    kill_restart(s)
    c.close()


def filled(make_server, target):
    """A server with N messages in INBOX, a session with INBOX selected,
    and (target) an empty folder Target."""
    s = make_server(extra=IMAP)
    fill(s)
    c = login(s)
    if target:
        ok(c.command("CREATE Target"))
    ok(c.command("SELECT INBOX"))
    return s, c


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_kill_during_copy(make_server, delay):
    s, c = filled(make_server, True)
    send_and_kill(s, c, b"COPY 1:* Target", delay)
    _, src = contents(s, "INBOX")
    assert sorted(src) == sorted(f"m{i}" for i in range(N)), "source changed"
    _, dst = contents(s, "Target")
    assert len(dst) == len(set(dst)), "a copy duplicated"
    assert set(dst) <= set(src)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_kill_during_move(make_server, delay):
    s, c = filled(make_server, True)
    send_and_kill(s, c, b"MOVE 1:* Target", delay)
    _, src = contents(s, "INBOX")
    _, dst = contents(s, "Target")
    both = src + dst
    assert sorted(both) == sorted(f"m{i}" for i in range(N)), \
        "lost or duplicated by a MOVE cut short"


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_kill_during_expunge(make_server, delay):
    s, c = filled(make_server, False)
    ok(c.command("STORE 1:200 +FLAGS.SILENT (\\Deleted)"))
    send_and_kill(s, c, b"EXPUNGE", delay)
    _, ids = contents(s, "INBOX")
    assert len(ids) == len(set(ids))
    # the 100 kept are all there; of the 200 deleted some may remain
    assert {f"m{i}" for i in range(200, N)} <= set(ids)
    c = login(s)
    ok(c.command("SELECT INBOX"))
    r = ok(c.command("SEARCH DELETED"))
    deleted = r[0].split()[2:]
    assert len(deleted) == len(ids) - 100, "a deleted message lost its flag"
    c.close()


@pytest.mark.parametrize("where", ["mid-literal", "after-literal"])
def test_kill_during_append(make_server, where):
    s = make_server(extra=IMAP)
    fill(s, 5)
    c = login(s)
    data = msg(99, 8 << 20)
    c.seq += 1
    c.sock.sendall(b"t%d APPEND INBOX {%d+}\r\n" % (c.seq, len(data)))
    if where == "mid-literal":
        c.sock.sendall(data[: len(data) // 2])
    else:
        c.sock.sendall(data + b"\r\n")
    time.sleep(0.1)
    kill_restart(s)
    c.close()
    uids, ids = contents(s, "INBOX")
    assert sorted(ids)[:5] == [f"m{i}" for i in range(5)]
    if where == "mid-literal":
        assert ids == [f"m{i}" for i in range(5)], "half a message was stored"
    else:
        assert ids in ([f"m{i}" for i in range(5)], [f"m{i}" for i in range(5)] + ["m99"])
    # a new APPEND gets a UID above every one given before
    c = login(s)
    d = msg(100)
    r = ok(c.command(b"APPEND INBOX {%d+}\r\n" % len(d) + d))
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", r[-1]).group(1))
    assert uid > max(uids)
    c.close()
