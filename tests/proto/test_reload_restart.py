"""A reload that changes what a service binds at start (any service's
listeners, posternd asks each one in its registry) logs that a restart is
needed and keeps the old sockets; the rest of the reload applies."""
import poplib

from conftest import wait_for


def reload_log(s, n):
    """The log after the n-th successful reload."""
    s.ctl("reload")
    wait_for(lambda: s.log().count("event=reload result=ok") >= n, what="reload")
    return s.log()


def test_listener_change_needs_restart(make_server):
    s = make_server()
    pop3 = s.ports["pop3"]
    # Unchanged listeners: no warning.
    assert "change only at restart" not in reload_log(s, 1)
    # POP3's listener, one of its keys, changed: the same warning as SMTP's.
    s.extra["pop3_listen"] = "127.0.0.1:1"
    s.write_conf()
    text = reload_log(s, 2)
    [line] = [l for l in text.splitlines() if "change only at restart" in l]
    assert "event=reload" in line and "listeners=pop3_listen" in line, line
    # The old socket still serves.
    p = poplib.POP3("127.0.0.1", pop3, timeout=10)
    p.quit()
    s.extra["pop3s_listen"] = "127.0.0.1:2"
    s.extra["smtp_listen"] = "127.0.0.1:3"
    s.write_conf()
    text = reload_log(s, 3)
    lines = [l for l in text.splitlines() if "change only at restart" in l]
    assert "listeners=smtp_listen,pop3_listen,pop3s_listen" in lines[-1], lines


def test_daemon_keys_change_at_restart(make_server):
    """Keys posternd reads only at start (the directory handles, the
    outbound threads) log the same note on a reload that changes them."""
    s = make_server()
    for n, (key, value) in enumerate([("directory_timeout", "7s"),
                                      ("smtp_max_connections", "3"),
                                      ("queue_state_workers", "3")], 1):
        s.extra[key] = value
        s.write_conf()
        text = reload_log(s, n)
        lines = [l for l in text.splitlines() if "change only at restart" in l]
        assert len(lines) == n, (key, lines)
        assert key in lines[-1] and "listeners=-" in lines[-1], lines[-1]
