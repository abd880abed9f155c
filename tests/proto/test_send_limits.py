"""Outbound sending caps (issue 15 part 4, IMail's HAMR): a scripted
"hacked account" sends to remote recipients until it gets 451 4.7.1;
other senders go on; local recipients do not count; one log line and one
alert per trip; reset, restart, hold, and user over domain over system."""
import json
import os
import re
import smtplib
import time

import pytest

from conftest import tls_context, wait_for

BODY = b"Subject: hello\r\n\r\nbuy now\r\n"
BASE = {"queue_retry_min": "1s", "queue_retry_max": "2s"}


def login(s, cert, user):
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30)
    c.ehlo("client.example")
    c.starttls(context=tls_context(cert))
    c.ehlo("client.example")
    c.login(f"{user}@example.test", f"secret-{user}")
    return c


def send(c, frm, rcpts):
    """One transaction: the RCPT replies; DATA's code when any was taken."""
    assert c.mail(frm)[0] == 250
    got = [c.rcpt(r) for r in rcpts]
    if any(code == 250 for code, _ in got):
        code, _ = c.data(BODY)
        assert code == 250
    else:
        c.rset()
    return got


def spam_until_refused(c, user, most=50):
    """Sends one remote message at a time; returns how many went."""
    for n in range(most):
        [(code, text)] = send(c, f"{user}@example.test", [f"victim{n}@remote.example"])
        if code != 250:
            assert code == 451 and b"4.7.1" in text, (code, text)
            assert f"Sending limit reached for {user}@example.test".encode() in text
            return n
    raise AssertionError("never refused")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def alerts(s):
    return [m for m in s.messages("postmaster") if b"Sending limit reached" in m]


def test_hacked_account_trips(make_server, sinks, cert):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="3/1h"))
    c = login(s, cert, "alice")
    assert spam_until_refused(c, "alice") == 3
    # Throttled: more refusals, still one log line and one alert.
    for i in range(3):
        [(code, _)] = send(c, "alice@example.test", [f"more{i}@remote.example"])
        assert code == 451
    # Local recipients do not count and are not refused.
    assert send(c, "alice@example.test", ["bob@example.test"]) == [(250, b"2.1.5 Ok")]
    c.quit()
    wait_for(lambda: len(mx.messages) == 3, what="3 relayed")
    assert len(s.messages("bob")) == 1
    wait_for(lambda: alerts(s), what="alert")  # the trip is logged before it
    log = s.log()
    trips = re.findall(r"event=send_limit result=tripped sender=(\S+) .*kind=(\w+) "
                       r"limit=(\S+)", log)
    assert trips == [("alice@example.test", "messages", "3/1h")], trips
    assert len(re.findall(r"rule=send-limit", log)) == 4
    [a] = wait_for(lambda: alerts(s), what="alert")
    assert b"Subject: Sending limit reached: alice@example.test (messages 3/1h)" in a
    assert b"posternctl limit reset alice@example.test" in a
    assert b"Return-Path: <>" in a
    # Another user is not affected.
    c = login(s, cert, "bob")
    assert spam_until_refused(c, "bob") == 3
    c.quit()


def test_recipients_limit(make_server, sinks, cert):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_recipients="5/1d"))
    c = login(s, cert, "alice")
    got = send(c, "alice@example.test", [f"r{i}@remote.example" for i in range(4)])
    assert [code for code, _ in got] == [250] * 4
    # The 6th recipient would pass 5: refused, the rest of the message goes.
    got = send(c, "alice@example.test", ["r4@remote.example", "r5@remote.example",
                                         "carol@example.test"])
    assert [code for code, _ in got] == [250, 451, 250]
    wait_for(lambda: sum(len(m["to"]) for m in mx.messages) == 5, what="5 relayed")
    c.quit()
    assert "kind=recipients limit=5/1d" in s.log()


def test_milter_refused_rcpt_gives_back_its_share(make_server, sinks, cert, milters):
    """A remote RCPT the cap reserved and a milter then refused: its share
    goes back, so the transaction's next RCPT within the cap is taken,
    and the message counts the recipients that went."""
    mx = sinks("127.0.0.2")
    m = milters({"rcpt_reject": ["bad@remote.example"]})
    s = make_server(dict(BASE, send_limit_recipients="2/1d", milters=m.spec(),
                         milter_command_timeout="5s", milter_content_timeout="5s"))
    c = login(s, cert, "alice")
    got = send(c, "alice@example.test",
               ["a@remote.example", "bad@remote.example", "c@remote.example"])
    assert [code for code, _ in got] == [250, 550, 250], got
    c.quit()
    wait_for(lambda: len(mx.messages) == 1, what="relayed")
    assert sorted(mx.messages[0]["to"]) == ["a@remote.example", "c@remote.example"]
    out = wait_for(lambda: (lambda o: "count=2" in o and o)(
        s.ctl("limit", "show", "alice@example.test").stdout), 10, "2 counted")
    assert "recipients" in out


def test_relay_client_counts_by_ip(make_server, sinks):
    """An unauthenticated relay client (relay_addresses) counts as ip:ADDR."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, relay="addresses", relay_addresses="127.0.0.1",
                         send_limit_messages="2/1h"))
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("client.example")
        for i in range(2):
            assert send(c, "x@client.example", [f"v{i}@remote.example"])[0][0] == 250
        [(code, text)] = send(c, "x@client.example", ["v9@remote.example"])
        assert code == 451 and b"Sending limit reached for ip:127.0.0.1" in text
    wait_for(lambda: len(mx.messages) == 2, what="2 relayed")
    assert "sender=ip:127.0.0.1" in s.log()


def test_hold_mode(make_server, sinks, cert):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="1/1h", send_limit_action="hold"))
    c = login(s, cert, "alice")
    assert send(c, "alice@example.test", ["a@remote.example"])[0][0] == 250
    assert send(c, "alice@example.test", ["b@remote.example"])[0][0] == 250
    c.quit()
    wait_for(lambda: len(mx.messages) == 1, what="first relayed")
    js = wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout), what="held")
    assert len(js) == 1 and js[0]["held"] is True, js
    assert "result=held sender=alice@example.test" in s.log()
    wait_for(lambda: "action=hold" in s.log(), what="trip logged")
    time.sleep(2)
    assert len(mx.messages) == 1
    wait_for(lambda: alerts(s), what="alert")


def test_reset_lifts_throttle(make_server, sinks, cert):
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="2/1h"))
    c = login(s, cert, "alice")
    assert spam_until_refused(c, "alice") == 2
    out = s.ctl("limit", "show", "alice@example.test").stdout
    assert "messages: limit=2/1h source=system count=2 throttled=yes" in out, out
    assert ("counts: directory" if s.pg else "counts: posternd") in out
    assert s.ctl("limit", "reset", "alice@example.test").stdout == \
        "alice@example.test: reset\n"
    assert "result=reset sender=alice@example.test held=yes" in s.log()
    assert spam_until_refused(c, "alice") == 2
    c.quit()
    wait_for(lambda: len(mx.messages) == 4, what="4 relayed")
    # A second trip after the reset: a second log line and alert
    # (PostgreSQL: logged once the shared trip is written).
    wait_for(lambda: len(re.findall(r"result=tripped sender=alice", s.log())) == 2,
             what="2 trips")
    wait_for(lambda: len(alerts(s)) == 2, what="2 alerts")
    time.sleep(1)
    assert len(re.findall(r"result=tripped sender=alice", s.log())) == 2
    assert s.ctl("limit", "reset", "bob@example.test").stdout == \
        "bob@example.test: nothing to reset\n"


def test_restart_keeps_counts(make_server, sinks, cert):
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="3/1h"))
    c = login(s, cert, "alice")
    for i in range(2):
        assert send(c, "alice@example.test", [f"v{i}@remote.example"])[0][0] == 250
    c.quit()
    # Written within about a second of the change, and at shutdown.
    wait_for(lambda: "alice@example.test messages" in read(f"{s.data}/sendlimits"),
             5, "sendlimits written")
    s.stop()
    out = s.ctl("limit", "show", "alice@example.test").stdout
    # SQLite: the file posternd left; PostgreSQL: the shared table.
    assert "count=2" in out, out
    assert ("counts: directory" if s.pg else "counts: file") in out, out
    s.start()
    assert re.search(r"event=send_limit result=loaded senders=1 ", s.log())
    c = login(s, cert, "alice")
    assert spam_until_refused(c, "alice") == 1
    c.quit()
    # Reset without posternd edits the file.
    s.stop()
    assert s.ctl("limit", "reset", "alice@example.test").stdout == \
        "alice@example.test: reset\n"
    s.start()
    c = login(s, cert, "alice")
    assert spam_until_refused(c, "alice") == 3
    c.quit()


def test_user_over_domain_over_system(make_server, sinks, cert):
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="5/1h"))
    s.ctl("limit", "set", "domain", "example.test", "--messages", "3/1h",
          "--recipients", "100/1d")
    s.ctl("limit", "set", "user", "alice@example.test", "--messages", "1/1h")
    s.ctl("limit", "set", "user", "carol@example.test", "--messages", "0")
    out = s.ctl("limit", "list").stdout
    assert out == ("system\t-\tmessages=5/1h\trecipients=0\n"
                   "domain\texample.test\tmessages=3/1h\trecipients=100/1d\n"
                   "user\talice@example.test\tmessages=1/1h\trecipients=default\n"
                   "user\tcarol@example.test\tmessages=0\trecipients=default\n"), out
    out = s.ctl("limit", "show", "alice@example.test").stdout
    assert "messages: limit=1/1h source=user" in out, out
    assert "recipients: limit=100/1d source=domain" in out, out
    for user, want in (("alice", 1), ("bob", 3)):
        c = login(s, cert, user)
        assert spam_until_refused(c, user) == want, user
        c.quit()
    c = login(s, cert, "carol")  # 0: no limit for her
    for i in range(6):
        assert send(c, "carol@example.test", [f"c{i}@remote.example"])[0][0] == 250
    c.quit()
    # unset: bob's domain row gone, the system's 5 applies (he sent 3).
    s.ctl("limit", "unset", "domain", "example.test")
    s.ctl("limit", "reset", "bob@example.test")
    c = login(s, cert, "bob")
    assert spam_until_refused(c, "bob") == 5
    c.quit()
    # Bad input: usage and value errors, nothing changed.
    r = s.ctl("limit", "set", "user", "alice@example.test", "--messages", "9/1w",
              check=False)
    assert r.returncode == 1 and "window unit" in r.stderr, r.stderr
    r = s.ctl("limit", "set", "user", "alice@example.test", check=False)
    assert r.returncode == 2, r.stderr
    r = s.ctl("limit", "unset", "user", "dave@example.test", check=False)
    assert r.returncode == 1 and "no limits set" in r.stderr, r.stderr
    assert "user\talice@example.test\tmessages=1/1h" in s.ctl("limit", "list").stdout


def test_two_nodes_share_counts(make_server, sinks, pg, cert):
    """PostgreSQL: the counts are the directory's, so a sender that spreads
    its mail over two nodes still gets its cap once in all; the trip one
    node saw throttles it at the other, and one reset lifts it on both."""
    mx = sinks("127.0.0.2")
    conf = dict(BASE, send_limit_messages="4/1h")
    a = make_server(conf, pg=pg)
    b = make_server(conf, pg=pg, db=a.dbname, populate=False)
    for node in (a, b):
        c = login(node, cert, "alice")
        for i in range(2):
            assert send(c, "alice@example.test", [f"n{i}@remote.example"])[0][0] == 250
        c.quit()
    # Counted on the directory by a worker after each 250: wait for it.
    wait_for(lambda: "count=4" in a.ctl("limit", "show", "alice@example.test").stdout,
             10, "4 counted")
    out = b.ctl("limit", "show", "alice@example.test").stdout
    assert "count=4" in out and "counts: directory" in out, out
    c = login(a, cert, "alice")
    assert spam_until_refused(c, "alice") == 0
    c.quit()
    wait_for(lambda: "throttled=yes" in b.ctl("limit", "show", "alice@example.test").stdout,
             10, "trip shared")
    c = login(b, cert, "alice")
    assert spam_until_refused(c, "alice") == 0
    c.quit()
    # One trip, one log line and one alert, at the node that saw it.
    assert len(re.findall("result=tripped", a.log() + b.log())) == 1
    a.ctl("limit", "reset", "alice@example.test")
    c = login(b, cert, "alice")
    assert spam_until_refused(c, "alice") == 4
    c.quit()
    wait_for(lambda: len(mx.messages) == 8, what="8 relayed")


def test_alert_to_a_remote_address(make_server, sinks, cert):
    """send_limit_alert in another domain: the alert goes through the
    queue to its MX like any mail, from the null sender."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_recipients="1/1h",
                         send_limit_alert="noc@remote.example"))
    c = login(s, cert, "alice")
    got = send(c, "alice@example.test", ["a@remote.example", "b@remote.example"])
    assert [code for code, _ in got] == [250, 451]
    c.quit()
    m = wait_for(lambda: [m for m in mx.messages if m["to"] == ["noc@remote.example"]],
                 what="alert relayed")[0]
    assert m["from"] in ("", "<>") and b"Sending limit reached: alice@example.test" in m["data"]
    assert b"(recipients 1/1h)" in m["data"]
    assert alerts(s) == []


def test_bad_alert_address_is_refused(make_server):
    # SQLite: a PostgreSQL server would run db init first, on the bad file.
    s = make_server(dict(send_limit_alert="not an address"), populate=False,
                    start=False, directory="sqlite")
    r = s.ctl("check", check=False)
    assert r.returncode == 1 and "send_limit_alert" in r.stdout + r.stderr, (r.stdout, r.stderr)
    for bad in ("200/1w", "abc", "0/1h"):
        s = make_server(dict(send_limit_messages=bad), populate=False, start=False,
                        directory="sqlite")
        r = s.ctl("check", check=False)
        assert r.returncode == 1 and "send_limit_messages" in r.stdout + r.stderr, bad


def test_alert_nowhere_to_go(make_server, sinks, cert):
    """An alert address with no mailbox behind it: logged, and the sender
    is throttled all the same."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="1/1h",
                         send_limit_alert="nobody@example.test"))
    c = login(s, cert, "alice")
    assert spam_until_refused(c, "alice") == 1
    c.quit()
    wait_for(lambda: "result=alert-error to=<nobody@example.test>" in s.log(),
             what="alert error logged")
    assert alerts(s) == []


def test_directory_error_defers(make_server, sinks, pg, cert):
    """PostgreSQL: the caps cannot be read (the table is gone): the remote
    RCPT gets 451 4.3.0, never an unchecked accept; local mail goes on."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="5/1h"), pg=pg)
    s.psql("DROP TABLE send_limits")
    c = login(s, cert, "alice")
    [(code, text)] = send(c, "alice@example.test", ["far@remote.example"])
    assert code == 451 and b"4.3.0" in text, (code, text)
    assert send(c, "alice@example.test", ["bob@example.test"])[0][0] == 250
    c.quit()
    assert re.search(r"result=tempfail code=451 .*rule=send-limit", s.log())


def test_db_export_import_carries_caps(make_server, tmp_path):
    """posternctl db export writes the caps rows after the list members;
    db import sets them again (another backend included)."""
    s = make_server(start=False)
    s.ctl("limit", "set", "domain", "example.test", "--recipients", "500/1d")
    s.ctl("limit", "set", "user", "alice@example.test", "--messages", "10/1h",
          "--recipients", "0")
    want = s.ctl("limit", "list").stdout
    path = str(tmp_path / "dir.jsonl")
    s.ctl("db", "export", path)
    lines = open(path).read().splitlines()
    assert lines[-3:-1] == [
        '{"type":"send_limit","kind":"domain","name":"example.test",'
        '"messages":"default","recipients":"500/1d"}',
        '{"type":"send_limit","kind":"user","name":"alice@example.test",'
        '"messages":"10/1h","recipients":"0"}'], lines[-4:]
    for directory in ("sqlite", "postgresql"):
        dst = make_server(populate=False, start=False, directory=directory)
        dst.ctl("db", "init")
        dst.ctl("db", "import", path)
        assert dst.ctl("limit", "list").stdout == want, directory
    bad = [l for l in lines[:-1]] + [
        '{"type":"send_limit","kind":"user","name":"bob@example.test",'
        '"messages":"5/1w","recipients":"default"}',
        '{"type":"end","records":%d}' % (len(lines) - 1)]
    dst = make_server(populate=False, start=False)
    dst.ctl("db", "init")
    r = dst.ctl("db", "import", input="\n".join(bad) + "\n", check=False)
    assert r.returncode == 1 and "window unit" in r.stderr, r.stderr
    assert dst.ctl("limit", "list").stdout.count("\n") == 1  # nothing imported


def test_save_error_is_logged(make_server, sinks, cert):
    """data_dir/sendlimits cannot be written (data_dir made read-only for
    the run user once posternd runs): logged, the caps go on from memory."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="1/1h"))
    mode = os.stat(s.data).st_mode & 0o7777
    os.chmod(s.data, 0o555)
    try:
        c = login(s, cert, "alice")
        assert spam_until_refused(c, "alice") == 1
        c.quit()
        wait_for(lambda: "event=send_limit result=save-error" in s.log(), 5, "save error")
        assert not os.path.exists(os.path.join(s.data, "sendlimits"))
        assert not [f for f in os.listdir(s.data) if f.startswith("sendlimits")]
    finally:
        os.chmod(s.data, mode)


# ---- review-dc findings (issue 15 part 4) ----------------------------------

def test_backup_mx_inbound_is_not_capped(make_server, sinks):
    """relay_domains (backup MX): mail *to* remote.example from any
    internet host is inbound, not an authenticated user's or relay
    client's outbound mail: never counted, never refused, no alert."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, relay_domains="remote.example",
                         send_limit_messages="2/1h"))
    codes = []
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30,
                      source_address=("127.0.0.77", 0)) as c:
        c.ehlo("mx.sender.example")
        for i in range(4):
            [(code, text)] = send(c, f"news{i}@sender.example", [f"u{i}@remote.example"])
            codes.append((code, text))
    log = s.log()
    assert "sender=ip:127.0.0.77" not in log and all(c == 250 for c, _ in codes), \
        (codes, re.findall(r".*send_limit.*", log))
    wait_for(lambda: len(mx.messages) == 4, what="4 relayed")
    assert alerts(s) == []


def test_alias_to_remote_is_not_counted(make_server, sinks, cert):
    """fwd@example.test is an alias for someone@remote.example: mail to it
    goes to a remote domain and counts against the sender's caps."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="2/1h"))
    c = login(s, cert, "alice")
    codes = []
    for i in range(6):
        [(code, _)] = send(c, "alice@example.test", ["fwd@example.test"])
        codes.append(code)
    c.quit()
    assert codes == [250, 250, 451, 451, 451, 451], codes
    wait_for(lambda: len(mx.messages) >= 2, what="relayed")
    time.sleep(1)
    assert len(mx.messages) == 2, len(mx.messages)
    assert "result=tripped sender=alice@example.test" in s.log()


def test_parallel_sessions_multiply_recipients_cap(make_server, sinks, cert):
    """recipients 5/1d: four sessions of the same account each try 5
    remote RCPTs before any DATA.  Open transactions reserve their share,
    so at most 5 are accepted in all and at most 5 go out; a RSET (or a
    session that ends) gives its reservation back."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_recipients="5/1d"))
    # A reservation given back by RSET lets the next session go on.
    c = login(s, cert, "alice")
    assert c.mail("alice@example.test")[0] == 250
    assert [c.rcpt(f"q{i}@remote.example")[0] for i in range(3)] == [250] * 3
    c.rset()
    c.quit()
    cs = [login(s, cert, "alice") for _ in range(4)]
    took = []
    for n, c in enumerate(cs):
        assert c.mail("alice@example.test")[0] == 250
        took.append(sum(c.rcpt(f"p{n}-{i}@remote.example")[0] == 250
                        for i in range(5)))
    assert took == [5, 0, 0, 0], took
    for c, n in zip(cs, took):
        if n:
            assert c.data(BODY)[0] == 250
        c.quit()
    wait_for(lambda: sum(len(m["to"]) for m in mx.messages) >= 5, what="relayed")
    time.sleep(1)
    total = sum(len(m["to"]) for m in mx.messages)
    assert total == 5, f"{total} remote recipients sent under a 5/1d cap"
    assert "count=5" in s.ctl("limit", "show", "alice@example.test").stdout


def test_hold_mode_accepts_without_bound(make_server, sinks, cert):
    """send_limit_action = hold: after the trip at most the cap again is
    held (here one message of 20 recipients), then 451 4.7.1."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="1/1h", send_limit_action="hold"))
    c = login(s, cert, "alice")
    took = 0
    last = None
    for i in range(20):
        got = send(c, "alice@example.test", [f"h{i}-{j}@remote.example" for j in range(20)])
        took += sum(code == 250 for code, _ in got)
        last = got[-1]
    c.quit()
    assert took == 40, f"{took} remote recipients accepted (20 sent, 20 held)"
    assert last[0] == 451 and b"4.7.1" in last[1], last
    js = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert len([e for e in js if e["held"]]) == 1, js


def test_alert_flood_many_relay_ips(make_server, sinks):
    """A relay client counts under the relay_addresses entry it matched:
    one host hopping 20 addresses of its /24 is one sender, one trip and
    one alert, and sends its cap once."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(BASE, relay="addresses", relay_addresses="127.0.0.0/24",
                         send_limit_messages="1/1h"))
    n = 20
    codes = []
    for i in range(n):
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30,
                          source_address=(f"127.0.0.{100 + i}", 0)) as c:
            c.ehlo("h")
            codes += [send(c, "x@client.example", ["a@remote.example"])[0][0]]
    assert codes == [250] + [451] * (n - 1), codes
    wait_for(lambda: len(alerts(s)) == 1, what="alert")
    time.sleep(2)
    assert len(alerts(s)) == 1 and len(mx.messages) == 1
    assert re.findall(r"result=tripped sender=(\S+)", s.log()) == ["net:127.0.0.0/24"]
    out = s.ctl("limit", "show", "net:127.0.0.0/24").stdout
    assert "count=1 throttled=yes" in out, out


def test_alerts_bounded_in_total(make_server, sinks):
    """Alerts are bounded in total, not only in flight: 12 relay hosts
    (one-host entries: each its own ip:ADDR) trip; 10 alerts are sent in
    10 minutes, the other 2 trips are logged result=alert-skipped."""
    sinks("127.0.0.2")
    hosts = [f"127.0.0.{100 + i}" for i in range(12)]
    s = make_server(dict(BASE, relay="addresses", relay_addresses=", ".join(hosts),
                         send_limit_messages="1/1h"))
    for h in hosts:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30,
                          source_address=(h, 0)) as c:
            c.ehlo("h")
            assert send(c, "x@client.example", ["a@remote.example"])[0][0] == 250
            [(code, text)] = send(c, "x@client.example", ["b@remote.example"])
            assert code == 451 and f"ip:{h}".encode() in text, (code, text)
    # PostgreSQL: a trip is logged when its shared write is done.
    wait_for(lambda: len(re.findall(r"result=tripped", s.log())) == 12, what="12 trips")
    wait_for(lambda: len(alerts(s)) == 10, what="10 alerts")
    time.sleep(2)
    assert len(alerts(s)) == 10
    skipped = re.findall(r"result=alert-skipped sender=(\S+) skipped=(\d+)", s.log())
    # In trip order (PostgreSQL: as the shared writes finish, any order).
    assert [n for _, n in skipped] == ["1", "2"], skipped
    alerted = {re.search(rb"Sending limit reached: (\S+)", a).group(1).decode()
               for a in alerts(s)}
    assert alerted | {k for k, _ in skipped} == {f"ip:{h}" for h in hosts}


def test_limit_set_on_alias_domain_applies(make_server, sinks, cert):
    """mail.example.test is an alias of example.test: a cap set under the
    alias name applies to alice; unknown users and domains are refused."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE))
    s.ctl("limit", "set", "user", "alice@mail.example.test", "--messages", "1/1h")
    assert "user\talice@example.test\tmessages=1/1h" in s.ctl("limit", "list").stdout
    c = login(s, cert, "alice")
    codes = [send(c, "alice@example.test", [f"z{i}@remote.example"])[0][0] for i in range(3)]
    c.quit()
    assert codes == [250, 451, 451], (codes, s.ctl("limit", "list").stdout)
    s.ctl("limit", "set", "domain", "mail.example.test", "--recipients", "9/1d")
    assert "domain\texample.test\tmessages=default\trecipients=9/1d" in \
        s.ctl("limit", "list").stdout
    for args, why in ((("user", "nobody@example.test"), "no such user"),
                      (("user", "fwd@example.test"), "no such user"),
                      (("domain", "elsewhere.example"), "no such domain"),
                      (("user", "x@elsewhere.example"), "no such domain")):
        r = s.ctl("limit", "set", *args, "--messages", "5/1h", check=False)
        assert r.returncode == 1 and why in r.stderr, (args, r.stderr)
    assert s.ctl("limit", "list").stdout.count("\n") == 3


def test_limit_show_ip_normalised(make_server):
    """limit show/reset ip:ADDR key the address as posternd does: an IPv6
    address as its ipv6_prefix_length network."""
    s = make_server(start=False)
    out = s.ctl("limit", "show", "ip:2001:db8:1:2::7").stdout
    assert out.startswith("sender: ip:2001:db8:1:2::/64\n"), out
    out = s.ctl("limit", "reset", "ip:2001:DB8:1:2:0:0:0:9").stdout
    assert out == "ip:2001:db8:1:2::/64: nothing to reset\n", out
    assert s.ctl("limit", "show", "ip:192.0.2.7").stdout.startswith("sender: ip:192.0.2.7\n")


def test_pg_two_nodes_trip_at_once_alert_twice(make_server, sinks, pg, cert):
    """PostgreSQL: a sender over its cap on two nodes at the same moment
    is one trip: one log line and one alert, by the node whose trip
    statement flipped the shared flag (a node whose statement found it
    flipped logs result=trip-shared)."""
    import threading
    sinks("127.0.0.2")
    conf = dict(BASE, send_limit_messages="1/1h")
    a = make_server(conf, pg=pg)
    b = make_server(conf, pg=pg, db=a.dbname, populate=False)
    c = login(a, cert, "alice")
    assert send(c, "alice@example.test", ["first@remote.example"])[0][0] == 250
    c.quit()
    wait_for(lambda: "count=1" in a.ctl("limit", "show", "alice@example.test").stdout,
             10, "counted")
    cs = [login(n, cert, "alice") for n in (a, b, a, b)]
    for c in cs:
        assert c.mail("alice@example.test")[0] == 250
    go = threading.Barrier(len(cs))
    codes = []

    def rcpt(c):
        go.wait()
        codes.append(c.rcpt("x@remote.example")[0])
    ts = [threading.Thread(target=rcpt, args=(c,)) for c in cs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for c in cs:
        c.quit()
    assert codes == [451] * 4, codes
    time.sleep(2)
    trips = len(re.findall("result=tripped", a.log() + b.log()))
    assert trips == 1, f"{trips} trips logged"
    assert len(alerts(a)) + len(alerts(b)) == 1


def test_corrupt_sendlimits_file_at_start(make_server, sinks, cert):
    """Garbage, over-long lines and a far-future trip in data_dir/sendlimits:
    posternd starts, counts them bad, and the line whose window ends in
    the year 3000 (no window is longer than 366d) throttles nobody."""
    sinks("127.0.0.2")
    s = make_server(dict(BASE, send_limit_messages="5/1h"), start=False)
    with open(os.path.join(s.data, "sendlimits"), "wb") as f:
        f.write(b"\x00\xff garbage\n" + b"A" * 100000 + b"\n")
        f.write(b"alice@example.test messages 32503680000 0 1\n")
    s.start()
    assert re.search(r"event=send_limit result=loaded senders=0 lines=0 bad=3", s.log())
    c = login(s, cert, "alice")
    [(code, text)] = send(c, "alice@example.test", ["y@remote.example"])
    c.quit()
    assert code == 250, (code, text)
