"""Several posternd nodes sharing one PostgreSQL directory (issue 13), all
on loopback with real clients: two nodes, each with its own data_dir and
ports, one database.

- What an admin changes through one node's posternctl applies at the other
  node at its next lookup (no cache, no reload): a new user receives mail
  and logs in there, a deleted one is refused (550), a new password is
  the one that works.
- PostgreSQL stopped under load: while it is down every node answers
  temporarily (RCPT 451 4.3.0, SMTP AUTH 454 4.7.0, POP3 -ERR [SYS/TEMP],
  IMAP NO [UNAVAILABLE]), never 5xx and never "accepted" without storing;
  every message that got its 250 is in exactly one Maildir exactly once,
  none refused is stored; once PostgreSQL is back the nodes accept again
  by themselves, and each node logged the outage once (one
  event=directory-down, one event=directory-up).

The outage test stops a cluster of its own, never the session's."""
import base64
import collections
import os
import re
import smtplib
import socket
import threading
import time

import pytest

from conftest import PgCluster, wait_for

NODE = {"auth_require_tls": "no", "pop3_allow_plaintext": "yes",
        "imap_listen": "127.0.0.1:0", "imap_allow_plaintext": "yes"}
# dir_pgsql.c's events: one line per process when the directory becomes
# unreachable, one when it answers again.
DOWN, UP = "event=directory-down", "event=directory-up"


def two_nodes(make_server, pg, extra=None):
    """Node A (db init and the usual users, through A's posternctl) and
    node B on the same database, B's data_dir and ports its own."""
    conf = dict(NODE, **(extra or {}))
    a = make_server(conf, pg=pg)
    b = make_server(conf, pg=pg, db=a.dbname, populate=False)
    assert a.data != b.data and a.ports["smtp"] != b.ports["smtp"]
    return a, b


def plain(user, password):
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def rcpt(server, to, sender="x@remote.example"):
    """(code, text) of RCPT TO:<to> in a fresh session."""
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
    try:
        c.ehlo("client.example")
        assert c.mail(sender)[0] == 250
        code, text = c.rcpt(to)
        return code, text.decode()
    finally:
        c.close()


def send(server, to, subject):
    """Sends one message to one recipient; the server's answer to DATA."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as c:
        c.sendmail("x@remote.example", [to],
                   f"Subject: {subject}\r\nMessage-ID: <{subject}@client.example>\r\n"
                   f"\r\nbody of {subject}\r\n".encode())


def smtp_auth(server, user, password, source="127.0.0.1"):
    """(code, text) of one AUTH PLAIN in a fresh session from source."""
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30,
                     source_address=(source, 0))
    try:
        c.ehlo("client.example")
        code, text = c.docmd("AUTH", plain(user, password))
        return code, text.decode()
    finally:
        c.close()


def fail_auths(server, user, n, source):
    """n failed SMTP AUTHs (a wrong password) for user at server from the
    loopback address source; their codes.  For the lock-out shared between
    nodes."""
    return [smtp_auth(server, user, "wrong-password-%d" % i, source)[0] for i in range(n)]


def lines(sock_file):
    return sock_file.readline().decode("utf-8", "replace").rstrip("\r\n")


def pop_login(server, user, password, source="127.0.0.1"):
    """The reply to PASS (USER/PASS over a raw socket from source)."""
    s = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30,
                                 source_address=(source, 0))
    f = s.makefile("rb")
    try:
        assert lines(f).startswith("+OK")
        s.sendall(f"USER {user}\r\n".encode())
        assert lines(f).startswith("+OK")
        s.sendall(f"PASS {password}\r\n".encode())
        return lines(f)
    finally:
        f.close()
        s.close()


def imap_login(server, user, password, source="127.0.0.1"):
    """The tagged reply to LOGIN (raw socket from source), e.g.
    "a1 OK ..." or "a1 NO [UNAVAILABLE] ..."."""
    s = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30,
                                 source_address=(source, 0))
    f = s.makefile("rb")
    try:
        assert lines(f).startswith("* OK")
        s.sendall(f'a1 LOGIN "{user}" "{password}"\r\n'.encode())
        while True:
            line = lines(f)
            if not line:
                raise EOFError("closed before the tagged reply")
            if line.startswith("a1 "):
                return line
    finally:
        f.close()
        s.close()


# ---- changes made at one node apply at the other at once -------------------

def test_user_added_at_a_is_served_by_b_at_once(make_server, pg):
    a, b = two_nodes(make_server, pg)
    assert rcpt(b, "dave@example.test")[0] == 550
    assert pop_login(b, "dave@example.test", "pw-dave").startswith("-ERR")
    a.ctl("user", "add", "dave@example.test", input="pw-dave\n")
    # At once: no reload, no wait.
    assert rcpt(b, "dave@example.test")[0] == 250
    send(b, "dave@example.test", "hello-dave")
    got = b.messages("dave")
    assert len(got) == 1 and b"Subject: hello-dave" in got[0]
    assert a.messages("dave") == []  # B stored it, in B's data_dir
    assert pop_login(b, "dave@example.test", "pw-dave").startswith("+OK")
    assert imap_login(b, "dave@example.test", "pw-dave").startswith("a1 OK")
    assert smtp_auth(b, "dave@example.test", "pw-dave")[0] == 235
    # And the other way: an alias made at B routes at A.
    b.ctl("alias", "add", "d@example.test", "dave@example.test")
    send(a, "d@example.test", "via-alias")
    assert len(a.messages("dave")) == 1


def test_password_change_at_a_applies_at_b_next_login(make_server, pg):
    a, b = two_nodes(make_server, pg)
    assert pop_login(b, "alice@example.test", "secret-alice").startswith("+OK")
    a.ctl("user", "passwd", "alice@example.test", input="new-alice\n")
    # The old password is wrong at B's next login, on every protocol (one
    # failure each, from distinct clients: no lock-out in the way).
    assert pop_login(b, "alice@example.test", "secret-alice",
                     "127.0.0.51").startswith("-ERR [AUTH]")
    assert imap_login(b, "alice@example.test", "secret-alice",
                      "127.0.0.52").startswith("a1 NO")
    assert smtp_auth(b, "alice@example.test", "secret-alice", "127.0.0.53")[0] == 535
    assert pop_login(b, "alice@example.test", "new-alice").startswith("+OK")
    assert imap_login(b, "alice@example.test", "new-alice").startswith("a1 OK")
    assert smtp_auth(b, "alice@example.test", "new-alice")[0] == 235


def test_user_deleted_at_a_is_refused_at_b_at_once(make_server, pg):
    a, b = two_nodes(make_server, pg)
    assert rcpt(b, "carol@example.test")[0] == 250
    assert imap_login(b, "carol@example.test", "secret-carol").startswith("a1 OK")
    a.ctl("user", "del", "carol@example.test")
    code, text = rcpt(b, "carol@example.test")
    assert (code, text[:5]) == (550, "5.1.1"), text
    assert pop_login(b, "carol@example.test", "secret-carol",
                     "127.0.0.54").startswith("-ERR [AUTH]")
    assert imap_login(b, "carol@example.test", "secret-carol",
                      "127.0.0.55").startswith("a1 NO")
    # The list that had her still delivers to the others, at B.
    send(b, "team@example.test", "team-after-del")
    assert len(b.messages("alice")) == 1 and b.messages("carol") == []


# ---- PostgreSQL stopped under load ---------------------------------------

USERS = ("alice", "bob", "carol")
SUBJECT = re.compile(rb"^Subject: (load-\d+-\d+)\r?$", re.M)


class Load:
    """Client threads, each sending one message per transaction in a loop
    to one node (alternating by thread), one recipient each, every message
    with its own Subject and Message-ID.  Each outcome is recorded with its
    time: "250" (accepted), "4xx" (a temporary refusal at MAIL, RCPT or
    DATA: not stored), "unsent" (the session broke before DATA: cannot be
    stored), "unknown" (broke during DATA: stored at most once)."""

    def __init__(self, nodes, threads=10):
        self.nodes, self.stop = nodes, threading.Event()
        self.results = []  # (subject, node index, user, outcome, code, time)
        self.lock = threading.Lock()
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(threads)]

    def record(self, *r, t=None):
        with self.lock:
            self.results.append(r + (t or time.monotonic(),))

    def connect(self, node):
        c = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
        c.ehlo("client.example")
        return c

    def one(self, c, k, n):
        """One transaction; the session stays usable unless it raised."""
        ni = k % len(self.nodes)
        user = USERS[(k + n) % len(USERS)]
        subject = f"load-{k}-{n}"
        phase, t = "unsent", None
        try:
            code = c.mail("x@remote.example")[0]
            if code == 250:
                code = c.rcpt(f"{user}@example.test")[0]
                t = time.monotonic()
            if code == 250:
                phase = "unknown"
                code = c.data(f"Subject: {subject}\r\nMessage-ID: <{subject}@client.example>\r\n"
                              f"From: x@remote.example\r\n\r\nbody {subject}\r\n".encode())[0]
        except (smtplib.SMTPException, OSError):
            self.record(subject, ni, user, phase, None, t=t)
            raise
        if code == 250:
            self.record(subject, ni, user, "250", code, t=t)
        else:
            self.record(subject, ni, user, "4xx" if 400 <= code < 500 else "other", code, t=t)
            c.rset()

    def run(self, k):
        c, n = None, 0
        while not self.stop.is_set():
            try:
                if c is None:
                    c = self.connect(self.nodes[k % len(self.nodes)])
                self.one(c, k, n)
            except (smtplib.SMTPException, OSError) as e:
                with self.lock:
                    self.errors.append(repr(e))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)
            n += 1
        if c is not None:
            try:
                c.quit()
            except (smtplib.SMTPException, OSError):
                c.close()

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads)

    def between(self, t0, t1, outcome):
        with self.lock:
            return sum(1 for r in self.results if r[3] == outcome and t0 <= r[5] < t1)


def stored_subjects(nodes):
    """Counter of (node index, user, subject) over every message file in
    every node's Maildirs (tmp, new and cur)."""
    seen = collections.Counter()
    for ni, node in enumerate(nodes):
        for user in USERS:
            md = node.maildir(user)
            for sub in ("tmp", "new", "cur"):
                d = os.path.join(md, sub)
                for name in os.listdir(d) if os.path.isdir(d) else []:
                    with open(os.path.join(d, name), "rb") as f:
                        m = SUBJECT.search(f.read(4096))
                    if m:
                        seen[(ni, user, m.group(1).decode(), sub)] += 1
    return seen


@pytest.fixture
def own_pg():
    """A cluster of this test's own: it is stopped and started again."""
    c = PgCluster()
    yield c
    c.stop()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_stopped_under_load(make_server, own_pg, mode):
    a, b = two_nodes(make_server, own_pg)
    nodes = (a, b)
    for n in nodes:
        assert rcpt(n, "alice@example.test")[0] == 250
    load = Load(nodes)
    load.start()
    try:
        t_start = time.monotonic()
        wait_for(lambda: load.between(t_start, 1e18, "250") >= 40, what="load accepted")
        t_down = time.monotonic()
        own_pg.down(mode)
        t_downed = time.monotonic()
        # While it is down: the exact temporary answers, at each node
        # (several RCPTs: every directory worker's connection is hit).
        for i, n in enumerate(nodes):
            for to in ("alice@example.test", "nobody@example.test", "y@remote.example"):
                code, text = rcpt(n, to)
                assert (code, text[:5]) == (451, "4.3.0"), (n.dbname, to, text)
            src = f"127.0.0.{60 + i}"
            code, text = smtp_auth(n, "alice@example.test", "secret-alice", src)
            assert (code, text[:5]) == (454, "4.7.0"), text
            r = pop_login(n, "bob@example.test", "secret-bob", src)
            assert r.startswith("-ERR [SYS/TEMP]"), r
            r = imap_login(n, "carol@example.test", "secret-carol", src)
            assert r.startswith("a1 NO [UNAVAILABLE]"), r
        # Down long enough for the load to meet it on every connection
        # and for the reconnects to back off.
        time.sleep(2)
        assert load.between(t_downed, 1e18, "4xx") >= 40
        assert load.between(t_downed, time.monotonic(), "250") == 0
        t_up = time.monotonic()
        own_pg.up()
        # Back by themselves: no reload, no restart of either node.
        for n in nodes:
            wait_for(lambda n=n: rcpt(n, "alice@example.test")[0] == 250, timeout=30,
                     what="node accepting again")
        t_back = time.monotonic()
        wait_for(lambda: load.between(t_back, 1e18, "250") >= 40, what="load accepted again")
    finally:
        load.finish()
    res = load.results
    outcomes = collections.Counter(r[3] for r in res)
    assert outcomes["other"] == 0, [r for r in res if r[3] == "other"][:5]
    assert outcomes["4xx"] > 0 and outcomes["250"] > 0, outcomes
    codes = collections.Counter(r[4] for r in res if r[3] == "4xx")
    assert set(codes) <= {451, 452, 454, 421}, codes
    # Before the stop nothing was refused.
    assert load.between(0, t_down, "4xx") == 0
    stored = stored_subjects(nodes)
    assert not [k for k in stored if k[3] == "tmp"], "files left in tmp/"
    by_subject = collections.Counter()
    for (ni, user, subject, _sub), count in stored.items():
        by_subject[subject] += count
    for subject, ni, user, outcome, _code, _t in res:
        where = sum(stored[(ni, user, subject, sub)] for sub in ("new", "cur"))
        if outcome == "250":
            assert by_subject[subject] == 1 and where == 1, (subject, outcome, stored)
        elif outcome == "unknown":
            assert by_subject[subject] <= 1 and by_subject[subject] == where, subject
        else:
            assert by_subject[subject] == 0, (subject, outcome)
    sent = {r[0] for r in res}
    assert set(by_subject) <= sent, set(by_subject) - sent
    # The outage in each node's log once, and its end once.
    for n in nodes:
        log = n.log()
        assert log.count(DOWN) == 1, [l for l in log.splitlines() if DOWN in l]
        assert log.count(UP) == 1, [l for l in log.splitlines() if UP in l]
        assert log.index(DOWN) < log.index(UP)
    print(f"mode={mode} outcomes={dict(outcomes)} down {t_up - t_downed:.1f}s "
          f"back after {t_back - t_up:.1f}s; 250/4xx before {load.between(0, t_down, '250')}/"
          f"{load.between(0, t_down, '4xx')}, down {load.between(t_downed, t_up, '250')}/"
          f"{load.between(t_downed, t_up, '4xx')}, after {load.between(t_back, 1e18, '250')}/"
          f"{load.between(t_back, 1e18, '4xx')}")


def pg_connections(pg, db):
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
                       "AND application_name = 'postern'"))


def test_a_connection_idle_through_the_outage(make_server, own_pg):
    """A login worker whose connection sat idle through the whole outage
    (only RCPTs ran meanwhile) finds it dead after PostgreSQL is back:
    that is the same outage, already logged and already over, so the
    login works (the dead connection replaced, not the login failed) and
    the log still has one directory-down and one directory-up."""
    s = make_server(dict(NODE, dir_workers="1", auth_workers="2"), pg=own_pg)
    assert rcpt(s, "alice@example.test")[0] == 250

    def parallel_logins(first):
        """Four logins at once: both login workers take some."""
        out = []
        ts = [threading.Thread(target=lambda i=i: out.append(
            smtp_auth(s, "alice@example.test", "secret-alice", f"127.0.0.{first + i}")[0]))
            for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sorted(out)

    # Both login workers connected (and the one directory worker).
    wait_for(lambda: parallel_logins(70) == [235] * 4 and pg_connections(own_pg, s.dbname) >= 3,
             what="every worker connected")
    own_pg.down("fast")
    for _ in range(3):
        code, text = rcpt(s, "alice@example.test")
        assert (code, text[:5]) == (451, "4.3.0"), text
    own_pg.up()
    wait_for(lambda: rcpt(s, "alice@example.test")[0] == 250, timeout=30, what="back")
    answers = parallel_logins(80) + parallel_logins(90)
    assert answers == [235] * 8, answers
    log = s.log()
    downs = [l for l in log.splitlines() if DOWN in l]
    ups = [l for l in log.splitlines() if UP in l]
    assert (len(downs), len(ups)) == (1, 1), downs + ups
