"""Outbound sending caps (issue 15 part 4, IMail's HAMR): a scripted
"hacked account" sends to remote recipients until it gets 451 4.7.1;
other senders go on; local recipients do not count; one log line and one
alert per trip; reset, restart, hold, and user over domain over system."""
import json
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
    assert "action=hold" in s.log()
    time.sleep(2)
    assert len(mx.messages) == 1
    wait_for(lambda: alerts(s), what="alert")
