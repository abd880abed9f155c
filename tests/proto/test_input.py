"""Client input that must never change meaning after a decision: address
length limits (RFC 5321 4.5.3.1), log field injection, SIZE counted on
the wire (RFC 1870)."""
import os
import re
import shutil
import subprocess

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


# ---- log field injection -------------------------------------------------

# The syslog shape: time, host, tag[pid], then a level word unless info.
LINE = re.compile(r"^\S+ \S+ posternd(?:/(\w+))?\[\d+\]: (?:(?:warning|error|debug): )?(.*)$")
TOKEN = r'[^\s="]+=(?:"[^"]*"|[^\s"]*)'
KV_LINE = re.compile(rf"{TOKEN}(?: {TOKEN})*")
# The lines tagged posternd/smtpd, /qmgr, /virtual and /smtp keep
# Postfix's shape for pflogsumm.
DELIVERY = re.compile(r"^(\w+): to=<([^<>\s,]*)>, relay=([^<>\s,]+), delay=\d+, "
                      r"dsn=\d\.\d{1,3}\.\d{1,3}, status=(\w+) \(([^()]*)\)$")
POSTFIX = {
    "smtpd": re.compile(r"^(?:(\w+): client=unknown\[[0-9a-f.:]+\](?:, sasl_username=[^\s,]+)?"
                        r"|NOQUEUE: reject: RCPT from unknown\[[0-9a-f.:]+\]: \d{3} \d\.\d{1,3}\.\d{1,3} "
                        r"<[^<>\s]*>: [^;<>=\\]*; from=<[^<>\s]*> to=<[^<>\s]*> "
                        r"proto=E?SMTP helo=<[^<>\s]*>)$"),
    "qmgr": re.compile(r"^(\w+): from=<([^<>\s,]*)>, size=\d+, nrcpt=\d+ \(queue active\)$"),
    "virtual": DELIVERY,
    "smtp": DELIVERY,
}
# The fields the server writes, per event (a set means exactly these).
FIELDS = {
    "mail": {"session", "id", "event", "from"},
    "rcpt": {"session", "id", "event", "client", "auth", "from", "to", "result",
             "code", "mode", "rule", "reason"},
    "accepted": {"session", "id", "event", "client", "auth", "from", "to", "nrcpt",
                 "mailboxes", "queued", "size"},
    "reject": {"session", "id", "event", "client", "cmd", "code", "reason"},
    "queued": {"id", "event", "from", "nrcpt"},
    "syntax-error": {"session", "event", "client", "reply", "line"},
}


def parse_kv(body):
    """key=value fields of one line; None if it is not a key=value line."""
    if not KV_LINE.fullmatch(body):
        return None
    fields = {}
    for tok in re.findall(TOKEN, body):
        k, v = tok.split("=", 1)
        assert k not in fields, f"duplicate field {k} in: {body}"
        fields[k] = v
    return fields


def check_log_fields(log):
    """Every line parses into exactly the fields the server wrote."""
    seen = {}
    for raw in log.splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        tag, body = m.group(1), m.group(2)
        if body.startswith("event=config "):
            continue  # the server's own free-text warnings
        if tag is not None:
            d = POSTFIX[tag].match(body)
            assert d, f"not in Postfix's {tag} shape: {body}"
            if tag == "smtp":
                seen.setdefault("delivery", []).append(d.groups())
            seen.setdefault(tag, []).append(d.groups())
            continue
        fields = parse_kv(body)
        assert fields is not None, "not key=value: " + body
        ev = fields.get("event")
        if ev in FIELDS:
            assert set(fields) == FIELDS[ev], body
        seen.setdefault(ev, []).append(fields)
    return seen


EVIL_FROM = '"a result=accept rule=x"@example.test'
EVIL_FROM_LOGGED = r"\x22a\x20result\x3daccept\x20rule\x3dx\x22@example.test"


def test_log_fields_cannot_be_injected(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(dict(OPEN, routes="*.example.org=[127.0.0.2]"))
    evil_to = '"b>, relay=evil, status=sent (x) c=d"@remote.example.org'
    r = Raw(s.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd(f"MAIL FROM:<{EVIL_FROM}>").startswith("250")
    assert r.cmd('RCPT TO:<"x result=accept"@example.test>').startswith("550")
    assert r.cmd(f"RCPT TO:<{evil_to}>").startswith("250")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: log\r\n\r\nbody\r\n.\r\n")
    assert r.reply().startswith("250")
    # A syntax error quotes the line: '=' and '"' are escaped there too.
    assert r.cmd('MAIL FROM:<"x" rule="y">').startswith("5")
    r.cmd("QUIT")
    wait_for(lambda: mx.messages, what="delivery")
    log = wait_for(lambda: "status=sent" in s.log() and s.log(), what="delivery line")
    seen = check_log_fields(log)
    assert [f["from"] for f in seen["mail"]] == ["<" + EVIL_FROM_LOGGED + ">"]
    rcpts = seen["rcpt"]
    assert [f["result"] for f in rcpts] == ["reject", "accept", "accept"]
    assert rcpts[0]["to"] == r"<\x22x\x20result\x3daccept\x22@example.test>"
    assert all(f["from"] == "<" + EVIL_FROM_LOGGED + ">" for f in rcpts)
    assert seen["queued"][0]["from"] == "<" + EVIL_FROM_LOGGED + ">"
    assert "rule=y" not in log and 'rule=\\x3d' not in log
    [(qid, to, relay, status, text)] = seen["delivery"]
    assert to == (r"\x22b\x3e\x2c\x20relay\x3devil\x2c\x20status\x3dsent\x20(x)"
                  r"\x20c\x3dd\x22@remote.example.org")
    assert relay.endswith("[127.0.0.2]:%d" % s.sink_port), relay
    assert status == "sent" and text.startswith("250")
    # What was delivered is the address as given, not the logged form.
    assert mx.messages[0]["to"] == [evil_to]
    assert mx.messages[0]["from"] == EVIL_FROM
    # pflogsumm reads the daemon's own lines (syslog shape, Postfix tags):
    # one message received, delivered to alice and to the escaped address.
    pflogsumm = shutil.which("pflogsumm")
    if pflogsumm is None:
        pytest.skip("pflogsumm not installed")
    out = subprocess.run([pflogsumm, "--syslog-name=posternd", s.logpath],
                         capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"^\s+1\s+received$", out, re.M), out
    assert re.search(r"^\s+2\s+delivered$", out, re.M), out
    assert "remote.example.org" in out
