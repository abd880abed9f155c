"""The directory backend out of reach, against the real daemon: RCPT
answers 451 4.3.0 (never 550) and nothing is delivered; AUTH answers 454
4.7.0 with no lock-out strike; once the database is back the same daemon
works again without a restart (each worker re-opens its handle at the
next lookup).  The database is broken in place (garbage), then replaced
by a file the daemon cannot read, then put back by a rename: a handle
that kept the old file open would never see the good one."""
import base64
import os
import poplib
import re
import smtplib
import sqlite3
import time

from conftest import sqlite_only

PLAINTEXT = {"auth_require_tls": "no", "pop3_allow_plaintext": "yes"}


def plain(user, password):
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Db:
    """The server's postern.db, broken and put back."""

    def __init__(self, server):
        self.path = os.path.join(server.data, "postern.db")
        st = os.stat(self.path)
        self.uid, self.gid, self.mode = st.st_uid, st.st_gid, st.st_mode & 0o777
        with open(self.path, "rb") as f:
            self.good = f.read()

    def garbage_in_place(self):
        with open(self.path, "r+b") as f:
            f.write(b"x" * len(self.good))
            f.flush()
            os.fsync(f.fileno())

    def replace(self, data, mode, owner=True):
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        if owner:
            os.chown(tmp, self.uid, self.gid)
        os.chmod(tmp, mode)
        os.rename(tmp, self.path)

    def unreadable(self):
        # Owned by whoever runs the test (root: not the run user), mode 0:
        # the daemon's user cannot open it.
        self.replace(self.good, 0o000, owner=os.geteuid() != 0)

    def restore(self):
        self.replace(self.good, self.mode)


def rcpt(server, to, sender="x@remote.example"):
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
    c.ehlo("client.example")
    assert c.mail(sender)[0] == 250
    code, text = c.rcpt(to)
    data = c.docmd("DATA")[0]
    c.close()
    return code, text.decode(), data


def auth(server, user, password, source="127.0.0.41"):
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30,
                     source_address=(source, 0))
    c.ehlo("client.example")
    code, text = c.docmd("AUTH", plain(user, password))
    c.close()
    return code, text.decode()


@sqlite_only("breaks postern.db in place (test_multinode.py stops PostgreSQL)")
def test_rcpt_tempfails_while_the_directory_is_out_of_reach(make_server):
    s = make_server()
    db = Db(s)
    for broken in (db.garbage_in_place, db.unreadable):
        broken()
        # Several times: every worker thread's handle is hit.
        for _ in range(6):
            for to in ("alice@example.test", "nobody@example.test",
                       "y@remote.example"):
                code, text, data = rcpt(s, to)
                assert (code, text[:5]) == (451, "4.3.0"), (broken, to, text)
                assert data in (503, 554), data  # no recipient: no DATA
    assert s.messages("alice") == []
    assert os.listdir(os.path.join(s.data, "queue", "entries")) == []
    assert "result=tempfail" in s.log()
    db.restore()
    # Back without a restart, on every worker.
    for _ in range(6):
        assert rcpt(s, "nobody@example.test")[0] == 550
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30)
    c.sendmail("x@remote.example", ["alice@example.test"],
               b"Subject: back\r\n\r\nhello\r\n")
    c.quit()
    assert len(s.messages("alice")) == 1


@sqlite_only("breaks postern.db in place (test_multinode.py stops PostgreSQL)")
def test_auth_tempfails_and_counts_nothing_then_works(make_server):
    s = make_server(dict(PLAINTEXT, auth_max_failures="1",
                         auth_account_max_failures="1"))
    db = Db(s)
    db.garbage_in_place()
    for _ in range(4):
        code, text = auth(s, "alice@example.test", "secret-alice")
        assert (code, text[:5]) == (454, "4.7.0"), text
        code, text = auth(s, "alice@example.test", "wrong")
        assert (code, text[:5]) == (454, "4.7.0"), text
    # POP3 the same: a temporary answer, no strike.
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=30)
    p.user("alice@example.test")
    try:
        p.pass_("secret-alice")
        assert False, "POP3 login with the directory broken"
    except poplib.error_proto as e:
        assert e.args[0].startswith(b"-ERR [SYS/TEMP]"), e
    p.close()
    # The log says why: the backend's own text, not a bare "directory
    # error" (SQLite: "file is not a database").
    log = s.log()
    for event in (r"session=\S+ event=auth", r"pop3=\S+ event=login"):
        m = re.search(event + r' result=tempfail .*reason="([^"]*)"', log)
        assert m, event
        assert m.group(1).startswith("directory: "), m.group(0)
        assert "not a database" in m.group(1), m.group(0)
    db.unreadable()
    code, text = auth(s, "alice@example.test", "secret-alice")
    assert (code, text[:5]) == (454, "4.7.0"), text
    db.restore()
    # No strike was counted (auth_max_failures = 1 would lock at once).
    assert auth(s, "alice@example.test", "secret-alice")[0] == 235
    assert "event=auth-lockout" not in s.log()
    # And sender match works on the re-opened handle: alice may use the
    # alias that points to her, spelt through the host alias too.
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30,
                     source_address=("127.0.0.41", 0))
    c.ehlo("client.example")
    c.login("alice@example.test", "secret-alice")
    for sender, want in (("info@mail.example.test", 250),
                         ("alice@example.test", 250),
                         ("bob@example.test", 553)):
        assert c.mail(sender)[0] == want, sender
        c.rset()
    c.quit()


@sqlite_only("renames files over postern.db")
def test_database_replaced_by_a_rename_is_seen(make_server):
    """A healthy connection keeps the file it opened; a database put in
    place by a rename (a restored backup, a garbage file) is seen within
    about a second by every worker, without a restart."""
    s = make_server()
    db = Db(s)
    assert rcpt(s, "alice@example.test")[0] == 250
    # A copy without alice, renamed over the live file.
    copy = db.path + ".copy"
    with open(copy, "wb") as f:
        f.write(db.good)
    con = sqlite3.connect(copy)
    con.execute("DELETE FROM users WHERE local = 'alice'")
    con.commit()
    con.close()
    with open(copy, "rb") as f:
        without_alice = f.read()
    os.unlink(copy)
    db.replace(without_alice, db.mode)
    time.sleep(1.5)
    for _ in range(6):
        assert rcpt(s, "alice@example.test")[0] == 550
    db.replace(b"x" * len(db.good), db.mode)
    time.sleep(1.5)
    for _ in range(6):
        code, text, _ = rcpt(s, "alice@example.test")
        assert (code, text[:5]) == (451, "4.3.0"), text
    db.restore()
    for _ in range(6):
        assert rcpt(s, "alice@example.test")[0] == 250


def test_bounce_reaches_a_local_sender_while_rcpts_run(make_server):
    """A bounce expands its recipient on the directory pool and is written
    on the storage pool: with sessions keeping every directory thread
    busy with RCPTs, the bounce still arrives, and no RCPT meanwhile
    answers anything but its right verdict (no 451 from a pool that the
    bounce held)."""
    import threading
    s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1",
                     "queue_retry_min": "1s", "queue_retry_max": "2s"})
    # Accepted ones only: a 550 counts towards max_errors.
    want = {"alice@example.test": 250, "info@example.test": 250,
            "info@mail.example.test": 250}
    stop = threading.Event()
    bad, counts = [], [0] * 6

    def load(k):
        # A session at a per-session limit is closed by the server: a
        # fresh one then, the RCPTs never stop.
        while not stop.is_set():
            try:
                c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30)
                c.ehlo("client.example")
                while not stop.is_set():
                    c.mail("x@remote.example")
                    for to, code in want.items():
                        got = c.rcpt(to)[0]
                        counts[k] += 1
                        if got != code:
                            bad.append((to, got))
                    c.rset()
                c.quit()
            except (smtplib.SMTPServerDisconnected, OSError):
                pass

    threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        before = sum(counts)
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.sendmail("alice@example.test", ["u@nullmx.example"],
                       b"Subject: will bounce\r\n\r\nbody\r\n")
        deadline = time.time() + 30
        while not s.messages("alice") and time.time() < deadline:
            time.sleep(0.1)
        during = sum(counts) - before
        arrived = s.messages("alice")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(arrived) == 1, "no bounce while the RCPTs ran"
    assert b"Status: 5.1.10" in arrived[0]
    assert during > 0, "the load did not run alongside the bounce"
    assert bad == [], bad[:5]
