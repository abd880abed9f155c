"""The dashboard's counters and the /metrics gauges against a known load,
read from the real daemon through its control socket ("metrics": the
Prometheus exposition /metrics serves): messages received and delivered
locally, relays refused, logins failed and lock-outs, remote recipients
relayed, deferred and bounced, sessions, the queue and the commit
batches.  Each counter must move by exactly what the load did, and not
for what it must not count (docs/admin.md, "Counters and metrics")."""
import base64
import os
import re
import smtplib
import socket
import time

from conftest import wait_for

PLAINTEXT = {"auth_require_tls": "no", "pop3_allow_plaintext": "yes",
             "imap_listen": "127.0.0.1:0", "imap_allow_plaintext": "yes"}
FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics_text(server):
    """The exposition, through data_dir/control.sock."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(os.path.join(server.data, "control.sock"))
    sock.sendall(b"metrics\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    text = data.decode()
    assert text.startswith("ok\n"), text
    return text[3:]


def metrics(server):
    """{"name" or "name{labels}": value}; checks each family is typed
    before its samples and the histogram is consistent."""
    text = metrics_text(server)
    assert text.endswith("\n")
    typed, out = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, line
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, "untyped sample: " + line
        out[name + labels] = float(value)
    h = "postern_commit_batch_renames"
    assert out[h + '_bucket{le="+Inf"}'] == out[h + "_count"]
    buckets = [v for k, v in out.items() if k.startswith(h + "_bucket")]
    assert buckets == sorted(buckets), buckets
    return out


COUNTERS = {
    "received": "postern_messages_received_total",
    "delivered": "postern_local_deliveries_total",
    "relayed": "postern_relayed_total",
    "deferred": "postern_deferred_total",
    "bounced": "postern_bounced_total",
    "refused": "postern_relay_refused_total",
    "auth": "postern_auth_failures_total",
    "lockouts": "postern_lockouts_total",
}


def counts(server):
    m = metrics(server)
    return {k: int(m[v]) for k, v in COUNTERS.items()}


def delta(before, after):
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def send(server, frm, to, port="smtp"):
    with smtplib.SMTP("127.0.0.1", server.ports[port], timeout=20) as c:
        c.sendmail(frm, to, b"Subject: count me\r\n\r\nhello\r\n")


def rcpt_code(server, rcpt, frm="someone@elsewhere.example"):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.ehlo("client.example")
        assert c.mail(frm)[0] == 250
        return c.rcpt(rcpt)[0]


def plain(user, password):
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def pop_login(server, user, password, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30,
                                    source_address=(source, 0))
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    sock.sendall(f"USER {user}\r\n".encode())
    assert f.readline().startswith(b"+OK")
    sock.sendall(f"PASS {password}\r\n".encode())
    r = f.readline().decode()
    f.close()
    sock.close()
    return r


def test_a_fresh_server_counts_nothing(server):
    m = metrics(server)
    for name in COUNTERS.values():
        assert m[name] == 0, name
    assert abs(m["postern_start_time_seconds"] - time.time()) < 120
    for svc in ("smtp", "pop3", "imap"):
        assert m['postern_sessions{service="%s"}' % svc] == 0
    assert m["postern_queue_messages"] == 0
    assert m["postern_queue_oldest_age_seconds"] == 0
    for pool in ("dir", "store", "auth"):
        assert 'postern_worker_pending{pool="%s"}' % pool in m


def test_received_delivered_and_relays_refused(make_server):
    """N messages to local users (one of them to an alias with two
    mailboxes, one to a list), M relay attempts refused by the relay rule;
    refusals by other rules count as nothing."""
    s = make_server()  # relay = none: no unauthenticated relaying
    before = counts(s)
    for _ in range(3):
        send(s, "x@elsewhere.example", ["alice@example.test"])
    send(s, "x@elsewhere.example", ["info@example.test"])  # alice + bob
    send(s, "x@elsewhere.example", ["team@example.test", "bob@example.test"])
    # team: alice, carol, info (alice, bob) -> alice, bob, carol: 3 copies
    assert delta(before, counts(s)) == {"received": 5, "delivered": 3 + 2 + 3}
    before = counts(s)
    for i in range(4):
        assert rcpt_code(s, f"r{i}@remote.example") == 550
    # Not the relay rule: an unknown local user.
    assert rcpt_code(s, "nobody@example.test") == 550
    # A refused recipient beside an accepted one: both counted.
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.ehlo("client.example")
        c.mail("x@elsewhere.example")
        assert c.rcpt("r9@remote.example")[0] == 550
        assert c.rcpt("carol@example.test")[0] == 250
        assert c.data(b"Subject: mixed\r\n\r\nhi\r\n")[0] == 250
    assert delta(before, counts(s)) == {"refused": 5, "received": 1, "delivered": 1}
    log = s.log()
    assert log.count("rule=default-deny") == 5
    assert log.count("event=accepted ") == 6


def test_auth_failures_and_lockouts(make_server):
    """Wrong passwords and unknown names over POP3, SMTP AUTH and IMAP,
    unusable credentials, then a client locked out: one lock-out, and the
    refusals of the locked client that check nothing count no failure."""
    s = make_server(dict(PLAINTEXT, auth_max_failures="8"))
    before = counts(s)
    assert pop_login(s, "alice@example.test", "wrong").startswith("-ERR")
    assert pop_login(s, "nobody@example.test", "wrong").startswith("-ERR")
    assert pop_login(s, "alice@example.test", "secret-alice").startswith("+OK")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.ehlo("client.example")
        assert c.docmd("AUTH", plain("bob@example.test", "wrong"))[0] == 535
        assert c.docmd("AUTH", "PLAIN =")[0] == 535  # no credentials
        assert c.docmd("AUTH", "PLAIN !!!")[0] == 501  # not base64: no login
    sock = socket.create_connection(("127.0.0.1", s.ports["imap"]), timeout=30)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    sock.sendall(b"a LOGIN carol@example.test wrong\r\n")
    assert f.readline().startswith(b"a NO")
    sock.close()
    assert delta(before, counts(s)) == {"auth": 5}
    # A client of its own, locked after auth_max_failures (8) failures.
    before = counts(s)
    for i in range(8):
        assert pop_login(s, "carol@example.test", f"guess{i}",
                         source="127.0.0.9").startswith("-ERR")
    wait_for(lambda: "scope=client" in s.log(), what="lock-out line")
    # Locked: refused without a check, no failure counted.
    assert "too many" in pop_login(s, "carol@example.test", "guess", source="127.0.0.9")
    assert delta(before, counts(s)) == {"auth": 8, "lockouts": 1}
    assert s.log().count("event=auth-lockout") == counts(s)["lockouts"]


def test_relayed_deferred_bounced(make_server, sinks):
    """Remote recipients: two sent at once, one deferred once then sent,
    one refused for good (whose DSN to the local sender is one more local
    delivery)."""
    mx = sinks("127.0.0.2", fail_first=1)
    s = make_server(FAST)
    before = counts(s)
    send(s, "alice@example.test", ["bob@remote.example"])  # 451 first, then 250
    wait_for(lambda: len(mx.messages) == 1, what="first delivery")
    wait_for(lambda: counts(s)["relayed"] == before["relayed"] + 1, what="relayed")
    send(s, "alice@example.test", ["c@remote.example", "d@remote.example"])
    wait_for(lambda: len(mx.messages) == 2, what="second delivery")
    wait_for(lambda: counts(s)["relayed"] == before["relayed"] + 3, what="relayed")
    assert delta(before, counts(s)) == {"received": 2, "relayed": 3, "deferred": 1}
    mx.mode = "rcpt550"
    before = counts(s)
    send(s, "alice@example.test", ["gone@remote.example"])
    wait_for(lambda: s.messages("alice"), what="the bounce")
    wait_for(lambda: counts(s)["delivered"] == before["delivered"] + 1, what="count")
    assert delta(before, counts(s)) == {"received": 1, "bounced": 1, "delivered": 1}
    log = s.log()
    assert log.count("status=sent") == 3
    assert log.count("status=deferred") == 1
    assert log.count("status=bounced") == 1


def test_gauges_sessions_queue_and_commits(make_server, sinks):
    """Sessions open now per service; a message the next hop keeps
    deferring stays in the queue, then on hold; commit batches add up."""
    mx = sinks("127.0.0.2", mode="mail451")
    s = make_server(dict(FAST, queue_retry_min="1h", queue_retry_max="1h"))
    c1 = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=10)
    c2 = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=10)
    p = socket.create_connection(("127.0.0.1", s.ports["pop3"]), timeout=10)
    for c in (c1, c2, p):
        assert c.recv(100)  # greeted: admitted
    m = metrics(s)
    assert m['postern_sessions{service="smtp"}'] == 2
    assert m['postern_sessions{service="pop3"}'] == 1
    assert m['postern_sessions{service="imap"}'] == 0
    for c in (c1, c2, p):
        c.close()
    wait_for(lambda: metrics(s)['postern_sessions{service="smtp"}'] == 0,
             what="sessions gone")
    send(s, "alice@example.test", ["x@remote.example", "y@remote.example"])
    send(s, "alice@example.test", ["bob@example.test"])
    wait_for(lambda: mx.mails >= 1, what="an attempt")
    wait_for(lambda: counts(s)["deferred"] == 2, what="deferred")
    m = metrics(s)
    assert m["postern_queue_messages"] == 1
    assert m["postern_queue_recipients"] == 2
    assert m["postern_queue_held_messages"] == 0
    assert 0 <= m["postern_queue_oldest_age_seconds"] < 60
    # Two messages, each one commit of its files: at least those renames.
    h = "postern_commit_batch_renames"
    assert 1 <= m[h + "_count"] <= 2
    assert m[h + "_sum"] >= 2
    qid = s.ctl("queue", "list").stdout.split("\t")[0]
    s.ctl("queue", "hold", qid)
    assert metrics(s)["postern_queue_held_messages"] == 1
    time.sleep(1.2)
    assert metrics(s)["postern_queue_oldest_age_seconds"] >= 1
    s.ctl("queue", "delete", qid)
    m = metrics(s)
    assert m["postern_queue_messages"] == 0
    assert m["postern_queue_recipients"] == 0
    assert m["postern_queue_oldest_age_seconds"] == 0


def control(server, line):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(os.path.join(server.data, "control.sock"))
    sock.sendall(line.encode() + b"\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data.decode()


def log_search(server, needle, max_lines=1000):
    reply = control(server, f"log {max_lines} {needle}")
    assert reply.startswith("ok\n"), reply
    return reply[3:].splitlines()


def test_log_ring_search(make_server):
    """The in-memory log, searched through control.sock: the lines as
    log_file has them, newest first, case-insensitive, at most MAX; a
    reload resizes it (0: off); bad requests are refused."""
    s = make_server()
    [start] = log_search(s, "EVENT=START ")
    assert " posternd[" in start and "event=start version=" in start
    assert start in s.log()  # the same line stderr got
    send(s, "x@elsewhere.example", ["alice@example.test"])
    [acc] = [l for l in s.log().splitlines() if "event=accepted" in l]
    qid = re.search(r"id=(\w+)", acc).group(1)
    # Newest first: the search's own control line, then the message's.
    control_line, *lines = log_search(s, qid.lower())
    assert "event=control" in control_line
    assert len(lines) >= 3 and all(qid in l for l in lines)
    events = [re.search(r"event=(\S+)", l).group(1) for l in lines if "event=" in l]
    assert events.index("accepted") < events.index("mail"), "newest first"
    assert len(log_search(s, "", 2)) == 2
    # Only the search's own control line holds this needle.
    assert len(log_search(s, "no-such-thing-1234")) == 1
    for bad in ("log 0 x", "log 1001 x", "log x", "log 5" + "x" * 300,
                "log 5 " + "y" * 300):
        assert control(s, bad).startswith("error: usage: log MAX"), bad
    s.extra["log_memory"] = "0"
    s.write_conf()
    assert s.ctl("reload").returncode == 0
    assert log_search(s, "") == []
    s.extra["log_memory"] = "64k"
    s.write_conf()
    assert s.ctl("reload").returncode == 0
    assert len(log_search(s, "event=start")) == 0  # dropped when it was off
    assert len(log_search(s, "event=control")) >= 1
