"""Client input that must never change meaning after a decision: address
length limits (RFC 5321 4.5.3.1), log field injection, SIZE counted on
the wire (RFC 1870)."""
import os
import re

import pytest

from conftest import Raw, wait_for


def domain(n):
    """A domain name of exactly n octets (63-octet labels)."""
    labels, left = [], n
    while left > 0:
        take = min(63, left)
        if left - take == 1:  # never leave a lone dot to end on
            take -= 2
        labels.append("d" * take)
        left -= take + 1
    d = ".".join(labels)
    assert len(d) == n
    return d


def entries(server):
    path = os.path.join(server.data, "queue", "entries")
    return os.listdir(path) if os.path.isdir(path) else []


# relay = anyone: the policy approves every recipient, so only the address
# limits stand between a long path and the queue.
OPEN = {"relay": "anyone"}


def test_source_routed_long_recipient_refused_not_truncated(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(dict(OPEN, routes="*.example.org=[127.0.0.2]"))
    r = Raw(s.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    # The attack: a route, a 64-octet local part and a 255-octet
    # domain (mailbox 320 octets) used to be approved, then cut to 264.
    long_rcpt = "@route.example:" + "l" * 64 + "@" + domain(255)
    rep = r.cmd(f"RCPT TO:<{long_rcpt}>")
    assert rep.startswith("501 5.1.3"), rep
    # One octet over the path limit, with and without a route.
    over = "l" * 64 + "@" + domain(178) + ".example.org"  # 255 octets
    assert len(over) == 255
    assert r.cmd(f"RCPT TO:<{over}>").startswith("501 5.1.3")
    assert r.cmd(f"RCPT TO:<@route.example:{over}>").startswith("501 5.1.3")
    # Nothing accepted: nothing can be queued or delivered.
    assert r.cmd("DATA").startswith("554 5.5.1")
    assert r.cmd("RSET").startswith("250")
    # Exactly at the limit (254-octet mailbox, path 256): accepted, even
    # behind a route that makes the path as sent longer, and queued and
    # delivered under exactly that address.
    fits = "l" * 64 + "@" + domain(177) + ".example.org"
    assert len(fits) == 254
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd(f"RCPT TO:<@route.example,@r2.example:{fits}>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: fits\r\n\r\nbody\r\n.\r\n")
    assert r.reply().startswith("250")
    r.cmd("QUIT")
    wait_for(lambda: mx.messages, what="delivery")
    assert [m["to"] for m in mx.messages] == [[fits]]
    assert s.all_files() == []


def test_long_sender_refused(server):
    r = Raw(server.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd("MAIL FROM:<" + "l" * 65 + "@remote.example>").startswith("501 5.1.3")
    assert r.cmd("MAIL FROM:<@r.example:" + "l" * 64 + "@" + domain(190) + ">"
                 ).startswith("501 5.1.3")
    # A quoted local part counts as written: 65 octets with its quotes and
    # backslashes even though it decodes to 61.
    q = '"' + "\\a\\b" + "c" * 59 + '"'
    assert len(q) == 65
    assert r.cmd(f"MAIL FROM:<{q}@remote.example>").startswith("501 5.1.3")
    # Syntax errors keep their own code.
    assert r.cmd("MAIL FROM:<a..b@remote.example>").startswith("501 5.1.7")
    assert r.cmd("MAIL FROM:<" + "l" * 64 + "@" + domain(189) + ">").startswith("250")


def test_route_longer_than_command_line_refused(server):
    r = Raw(server.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    route = ",".join("@r%d.example" % i for i in range(100))  # > 1024 octets
    rep = r.cmd(f"RCPT TO:<{route}:alice@example.test>")
    assert rep.startswith("500 5.5.2"), rep
    assert r.cmd("DATA").startswith("554")
    assert server.all_files() == [] and entries(server) == []


def test_size_counts_crlf_on_the_wire(make_server):
    """RFC 1870: SIZE counts CRLF line ends; stored LF size is smaller."""
    s = make_server({"message_size_limit": "4k"})
    r = Raw(s.ports["smtp"])
    assert "SIZE 4096" in r.cmd("EHLO client.example")
    over = "Subject: big\r\n\r\n" + ("x" * 39 + "\r\n") * 100
    assert len(over.replace("\r\n", "\n")) < 4096 < len(over)
    assert r.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send(over + ".\r\n")
    rep = r.reply()
    assert rep.startswith("552 5.3.4"), rep
    assert s.all_files() == [] and entries(s) == []
    # Exactly 4096 octets on the wire, with stuffed dots (not counted).
    fits = "Subject: x\r\n\r\n" + ("." + "x" * 37 + "\r\n") * 102 + "\r\n"
    assert len(fits) == 4096
    wire = fits.replace("\r\n.", "\r\n..")
    assert r.cmd("MAIL FROM:<x@remote.example> SIZE=4096").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send(wire + ".\r\n")
    assert r.reply().startswith("250")
    [m] = s.messages("alice")
    assert m.endswith(fits.replace("\r\n", "\n").encode())
