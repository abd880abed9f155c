"""POP3 logins whose password check is held while something happens to
the session: SIGTERM, its session_timeout, the shutdown_timeout, the
client leaving, and a second login past auth_max_pending.  The check is
held by an exclusive lock on the directory database (directory_timeout
60 s; with PostgreSQL the tables locked, pg_query_timeout 60 s), as in
test_shutdown.py; plaintext USER/PASS over raw sockets so
every reply line is seen as sent."""
import re
import signal
import time

from conftest import DIRECTORY, Raw, wait_for

BASE = {"pop3_allow_plaintext": "yes", "directory_timeout": "60s"}
if DIRECTORY == "postgresql":
    BASE["pg_query_timeout"] = "60s"


def directory_locked(server):
    return server.directory_locked()


def pop_id(server, n):
    """The n-th POP3 session's id (by its connect line)."""
    ids = re.findall(r"pop3=(\w+) event=connect", server.log())
    assert len(ids) > n, ids
    return ids[n]


def send_login(c, user="alice"):
    assert c.cmd(f"USER {user}@example.test").startswith("+OK")
    c.send(f"PASS secret-{user}\r\n")


def test_sigterm_during_the_login_job(make_server):
    """SIGTERM while the password is checked: the login finishes (its
    +OK, the maildrop opened, logged), then the shutdown's -ERR at once,
    not at shutdown_timeout."""
    s = make_server(dict(BASE, shutdown_timeout="60s"))
    c = Raw(s.ports["pop3"])
    with directory_locked(s):
        send_login(c)
        time.sleep(0.5)  # the check waits on the lock
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "event=shutdown service=pop3" in s.log(), what="shutdown")
        c.sock.settimeout(0.5)
        try:
            early = c.line()
        except TimeoutError:
            early = None
        assert early is None, "nothing before the login's own reply: %r" % early
    c.sock.settimeout(20)  # shutdown_timeout is 60 s
    assert c.line().startswith("+OK alice@example.test has ")
    assert c.line() == "-ERR server shutting down"
    assert c.closed()
    assert s.proc.wait(30) == 0
    assert re.search(rf"pop3={pop_id(s, 0)} event=login result=ok client=127\.0\.0\.1 "
                     r"user=alice@example\.test messages=0", s.log())


def login_cut(s, c, trigger, want_reply, want_reason):
    """The check is held until trigger() says the session must end; then
    the check passes but the maildrop is not opened: no +OK, the end's
    reply, and one event=login line that says why."""
    with directory_locked(s):
        send_login(c)
        trigger()
    c.sock.settimeout(20)
    assert c.line() == want_reply, "no +OK: the maildrop was not opened"
    assert c.closed()
    sid = pop_id(s, 0)
    line = wait_for(lambda: re.findall(rf".*pop3={sid} event=login .*", s.log()),
                    what="the login's log line")
    want = (f"warning: pop3={sid} event=login result=tempfail "
            f'client=127.0.0.1 user=alice@example.test reason="{want_reason}"')
    assert len(line) == 1 and line[0].endswith(want), line
    assert "event=login result=ok" not in s.log()


def test_session_timeout_during_the_login_job(make_server):
    s = make_server(dict(BASE, session_timeout="1s"))
    c = Raw(s.ports["pop3"])
    login_cut(s, c, lambda: time.sleep(2.0),
              "-ERR session time limit exceeded, closing", "session timeout")
    assert f"pop3={pop_id(s, 0)} event=session-timeout" in s.log()


def test_shutdown_timeout_during_the_login_job(make_server):
    s = make_server(dict(BASE, shutdown_timeout="1s"))
    c = Raw(s.ports["pop3"])

    def sigterm_and_timeout():
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        # Released right at the timeout: the check ends within the 2 s
        # grace, so the session is forced, not dropped.
        wait_for(lambda: "event=shutdown-timeout service=pop3" in s.log(),
                 what="shutdown-timeout")

    login_cut(s, c, sigterm_and_timeout, "-ERR server shutting down",
              "server shutting down")
    assert s.proc.wait(30) == 0


def test_client_leaving_mid_login_gives_its_slots_back(make_server):
    """A client that leaves while its password is checked: the check
    ends and gives back its lock-out slot (auth_max_failures = 1: an
    attempt in flight counts as a failure) and its auth_max_pending
    place, so the next login from that address works."""
    s = make_server(dict(BASE, auth_max_failures="1", auth_max_pending="1"))
    a = Raw(s.ports["pop3"])
    with directory_locked(s):
        send_login(a)
        time.sleep(0.5)
        a.close()
        time.sleep(0.3)
    aid = pop_id(s, 0)
    wait_for(lambda: f"pop3={aid} event=disconnect" in s.log(),
             what="the session freed by its check's completion")
    # The check's end is logged, although nobody is left to answer.
    assert re.search(rf"pop3={aid} event=login result=gone client=127\.0\.0\.1 "
                     r'user=alice@example\.test reason="client left during the check"',
                     s.log()), s.log()
    b = Raw(s.ports["pop3"])
    send_login(b)
    assert b.reply().startswith("+OK alice@example.test has "), \
        "the slots of the client that left were given back"
    assert b.cmd("QUIT").startswith("+OK")


def test_auth_max_pending_refuses_the_next_login(make_server):
    """One login in flight with auth_max_pending = 1: a second is
    refused at once with [SYS/TEMP] and one log line, counting nothing;
    it works once the first is done."""
    s = make_server(dict(BASE, auth_max_pending="1"))
    a, b = Raw(s.ports["pop3"]), Raw(s.ports["pop3"])
    with directory_locked(s):
        send_login(a)
        aid = pop_id(s, 0)
        wait_for(lambda: re.search(rf"pop3={aid} event=login-check ", s.log()),
                 what="a's password check in flight")
        send_login(b, "bob")
        assert b.reply() == ("-ERR [SYS/TEMP] too many logins in progress, "
                             "try again later")
    bid = pop_id(s, 1)
    assert re.search(rf"warning: pop3={bid} event=login result=busy reason=pending "
                     r"client=127\.0\.0\.1$", s.log(), re.M), s.log()
    a.sock.settimeout(20)
    assert a.reply().startswith("+OK alice@example.test has ")
    send_login(b, "bob")
    assert b.reply().startswith("+OK bob@example.test has ")
    for c in (a, b):
        assert c.cmd("QUIT").startswith("+OK")
