"""Milters (issue 15 part 2): posternd as a milter client, against a real
libmilter milter (python3-milter, tests/proto/milter_script.py) scripted
per test on a Unix socket in the test's directory, and against raw
socket "milters" that hang or send garbage."""
import json
import smtplib
import socket
import struct
import threading
import time

import pytest

from conftest import wait_for

MSG = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
       b"Subject: milter test\r\nX-Old: one\r\n\r\nline one\r\nline two\r\n")


def server_with(make_server, specs, **extra):
    conf = {"milters": " ".join(specs), "milter_command_timeout": "5s",
            "milter_content_timeout": "5s", "milter_connect_timeout": "2s"}
    conf.update(extra)
    return make_server(conf)


def send(s, to=("bob@example.test",), frm="alice@example.test", msg=MSG):
    try:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.ehlo("client.example")
            return c.sendmail(frm, list(to), msg)
    except smtplib.SMTPException:
        print("\n".join(l for l in s.log().splitlines() if "milter" in l))
        raise


def smtp_error(fn):
    with pytest.raises(smtplib.SMTPException) as e:
        fn()
    return e.value


def stored(s, user="bob"):
    return wait_for(lambda: s.messages(user), what="delivery")


# ---- replies at each stage --------------------------------------------------

def test_passes_and_sees_every_stage(make_server, milters):
    m = milters()
    s = server_with(make_server, [m.spec()])
    send(s)
    body = stored(s)[0]
    assert b"line one\nline two\n" in body
    stages = [r["stage"] for r in m.seen()]
    for st in ("connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"):
        assert st in stages, (st, stages)
    hdrs = [(r["name"], r["value"]) for r in m.seen("header")]
    # postern's own Received header goes first, as Postfix's does.
    assert hdrs[0][0] == "Received" and "by mx.example.test (postern)" in hdrs[0][1]
    assert ("Subject", "milter test") in hdrs
    assert "line one\r\nline two\r\n" in "".join(r["text"] for r in m.seen("body"))


def test_macros(make_server, milters):
    m = milters()
    s = server_with(make_server, [m.spec()])
    with smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30) as c:
        c.starttls()
        c.login("alice@example.test", "secret-alice")
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    stored(s)
    con = m.seen("connect")[0]["macros"]
    assert con["j"] == "mx.example.test"
    assert con["{client_addr}"] == "127.0.0.1"
    assert con["{daemon_name}"] == "postern"
    assert int(con["{client_port}"]) > 0
    assert "{tls_version}" in m.seen("helo")[-1]["macros"]
    mail = m.seen("mail")[0]["macros"]
    assert mail["{auth_authen}"] == "alice@example.test"
    assert mail["{auth_type}"] == "PLAIN"  # smtplib's choice
    assert mail["{mail_addr}"] == "alice@example.test"
    qid = mail["i"]
    assert qid and f"id={qid}" in s.log()
    rcpt = m.seen("rcpt")[0]["macros"]
    assert rcpt["{rcpt_addr}"] == "bob@example.test"
    assert rcpt["{rcpt_mailer}"] == "local"
    assert m.seen("eom")[0]["macros"]["i"] == qid


def test_reject_at_connect_refuses_every_command(make_server, milters):
    m = milters({"connect": ["reply", "554", "5.7.1", "go away"]})
    s = server_with(make_server, [m.spec()])
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        code, text = c.ehlo("x")
        assert code == 554 and b"go away" in text
        code, _ = c.docmd("MAIL FROM:<alice@example.test>")
        assert code == 554
        code, _ = c.docmd("NOOP")
        assert code == 421  # the third: closed, as for a DNSBL (review)
    assert s.messages("bob") == []


@pytest.mark.parametrize("stage,code", [
    ("helo", 550), ("mail", 550), ("rcpt", 550), ("data", 550),
    ("header", 550), ("eoh", 550), ("body", 550), ("eom", 550),
])
def test_reject_at_stage(make_server, milters, stage, code):
    m = milters({stage: "reject"})
    s = server_with(make_server, [m.spec()])
    if stage == "helo":
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            code, text = c.ehlo("x")
            assert code == 550 and b"5.7.1" in text
            code, _ = c.docmd("MAIL FROM:<alice@example.test>")
            assert code == 503  # no HELO was taken
        return
    err = smtp_error(lambda: send(s))
    text = str(err)
    assert "550" in text and "5.7.1" in text, text
    time.sleep(0.3)
    assert s.messages("bob") == []
    assert f"event=milter stage=" in s.log()


@pytest.mark.parametrize("stage", ["mail", "rcpt", "eom"])
def test_tempfail_and_replycode(make_server, milters, stage):
    m = milters({stage: ["reply", "451", "4.7.1", "come back later"]})
    s = server_with(make_server, [m.spec()])
    text = str(smtp_error(lambda: send(s)))
    assert "451" in text and "come back later" in text, text
    time.sleep(0.3)
    assert s.messages("bob") == []


def test_rcpt_reject_only_that_recipient(make_server, milters):
    m = milters({"rcpt_reject": ["carol@example.test"]})
    s = server_with(make_server, [m.spec()])
    refused = send(s, to=("bob@example.test", "carol@example.test"))
    assert list(refused) == ["carol@example.test"] and refused["carol@example.test"][0] == 550
    stored(s, "bob")
    assert s.messages("carol") == []


def test_discard(make_server, milters):
    m = milters({"eom": "discard"})
    s = server_with(make_server, [m.spec()])
    assert send(s) == {}  # 250: the client is told it was taken
    time.sleep(0.5)
    assert s.messages("bob") == []
    assert "result=discard" in s.log()


def test_accept_skips_the_rest(make_server, milters):
    m = milters({"mail": "accept"})
    s = server_with(make_server, [m.spec()])
    send(s)
    stored(s)
    assert m.seen("rcpt") == [] and m.seen("eom") == []


def test_quarantine_holds_in_queue(make_server, milters):
    m = milters({"mods": [["quarantine", "looks bad"]]})
    s = server_with(make_server, [m.spec()])
    send(s)
    js = wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout), what="queue")
    assert js[0]["held"] is True
    assert "result=quarantine" in s.log()
    assert s.messages("bob") == []


# ---- modifications ----------------------------------------------------------

def test_header_add_change_insert(make_server, milters):
    m = milters({"mods": [["addheader", "X-Added", "yes"],
                          ["chgheader", "Subject", 1, "changed subject"],
                          ["chgheader", "X-Old", 1, ""],
                          ["insheader", 0, "X-Top", "first"],
                          ["addheader", "X-Folded", "a\r\n\tb"]]})
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = stored(s)[0]
    head, _, body = msg.partition(b"\n\n")
    lines = head.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <alice@example.test>")
    assert lines[1].startswith(b"Received: from")
    i_top = lines.index(b"X-Top: first")
    assert all(not l.startswith((b"From:", b"To:", b"Subject:")) for l in lines[:i_top])
    assert b"Subject: changed subject" in lines and b"Subject: milter test" not in head
    assert not any(l.startswith(b"X-Old") for l in lines)
    assert lines[-3:] == [b"X-Added: yes", b"X-Folded: a", b"\tb"]
    assert body == b"line one\nline two\n"
    assert b"\r" not in msg


def test_change_sender_in_queue_envelope(make_server, milters, sinks):
    mx = sinks("127.0.0.2")
    m = milters({"mods": [["chgfrom", "<bounces@example.test>"]]})
    s = server_with(make_server, [m.spec()], relay="addresses",
                    relay_addresses="127.0.0.1", queue_retry_min="1s")
    send(s, to=("someone@remote.example", "bob@example.test"))
    wait_for(lambda: mx.messages, what="relay")
    assert mx.messages[0]["from"] == "bounces@example.test"
    assert stored(s)[0].startswith(b"Return-Path: <bounces@example.test>")


def test_add_and_delete_recipients(make_server, milters, sinks):
    mx = sinks("127.0.0.2")
    m = milters({"mods": [["addrcpt", "<carol@example.test>"],
                          ["addrcpt", "<far@remote.example>"],
                          ["delrcpt", "<bob@example.test>"]]})
    s = server_with(make_server, [m.spec()], queue_retry_min="1s")
    send(s, to=("bob@example.test", "alice@example.test"))
    stored(s, "carol")
    stored(s, "alice")
    wait_for(lambda: mx.messages, what="relay to the added remote recipient")
    assert mx.messages[0]["to"] == ["far@remote.example"]
    time.sleep(0.3)
    assert s.messages("bob") == []
    assert "added=<carol@example.test>" in s.log() and "deleted=<bob@example.test>" in s.log()


def test_replace_body(make_server, milters):
    m = milters({"mods": [["replacebody", "new body\r\nsecond\r\n"]]})
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = stored(s)[0]
    assert msg.endswith(b"\n\nnew body\nsecond\n") and b"line one" not in msg
    assert b"Subject: milter test" in msg


def test_replace_body_large_spooled_message(make_server, milters):
    """A message past the spool threshold (its start in the spool file):
    headers parsed from the spool, body replaced, size right."""
    m = milters({"mods": [["addheader", "X-Seen", "big"]]})
    s = server_with(make_server, [m.spec()])
    big = MSG + (b"x" * 900 + b"\r\n") * 600
    send(s, msg=big)
    msg = stored(s)[0]
    assert b"\nX-Seen: big\n" in msg
    assert msg.count(b"x" * 900 + b"\n") == 600
    assert "".join(r["text"] for r in m.seen("body")).count("x" * 900 + "\r\n") == 600


def test_two_milters_in_order(make_server, milters):
    a = milters({"mods": [["addheader", "X-First", "1"]]}, name="a")
    b = milters({"mods": [["addheader", "X-Second", "2"]]}, name="b")
    s = server_with(make_server, [a.spec(), b.spec()])
    send(s)
    msg = stored(s)[0]
    assert msg.index(b"X-First: 1") < msg.index(b"X-Second: 2")
    # The second milter saw the first one's header.
    assert ("X-First", "1") in [(r["name"], r["value"]) for r in b.seen("header")]


def test_second_milter_rejects(make_server, milters):
    a = milters({}, name="a")
    b = milters({"rcpt": ["reply", "550", "5.7.1", "second says no"]}, name="b")
    s = server_with(make_server, [a.spec(), b.spec()])
    assert "second says no" in str(smtp_error(lambda: send(s)))


# ---- failures: default action -----------------------------------------------

@pytest.mark.parametrize("action,want", [("tempfail", 451), ("reject", 550), ("accept", 250)])
def test_not_listening_default_action(make_server, action, want):
    s = server_with(make_server, ["unix:/nonexistent/postern-milter.sock"],
                    milter_default_action=action)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        code, _ = c.ehlo("x")
        assert code == want, (action, code)
        if want == 250:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    if want == 250:
        stored(s)
    else:
        assert s.messages("bob") == []
    assert s.log().count("result=fail action=" + action) == 1


class RawMilter:
    """A socket "milter": mode hang (reads, never answers), huge (a reply
    header claiming 16 MiB), garbage (an unknown reply), optneg_then_hang
    (negotiates, then never answers a command)."""

    def __init__(self, mode):
        self.mode = mode
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.recv(65536)
            if self.mode == "huge":
                c.sendall(struct.pack(">I", 16 << 20) + b"O" + b"\0" * 1000)
            elif self.mode == "garbage":
                c.sendall(struct.pack(">I", 5) + b"Zjunk")
            elif self.mode == "optneg_then_hang":
                c.sendall(struct.pack(">IcIII", 13, b"O", 6, 0x1ff, 0))
            while c.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("mode", ["hang", "huge", "garbage", "optneg_then_hang"])
def test_bad_milter_gets_default_action(make_server, mode):
    rm = RawMilter(mode)
    try:
        s = server_with(make_server, [f"inet:127.0.0.1:{rm.port}"],
                        milter_command_timeout="1s")
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            code, _ = c.ehlo("x")
            assert code == 451, code
        assert time.monotonic() - t0 < 10
        assert s.messages("bob") == []
        log = s.log()
        assert log.count("event=milter stage=connect milter=") == 1
        want = {"hang": "timeout", "huge": "packet too long", "garbage": "unknown reply",
                "optneg_then_hang": "timeout"}[mode]
        assert f'error="{want}"' in log, log[-3000:]
    finally:
        rm.close()


def test_config_rejects_bad_milter(make_server):
    s = make_server(start=False)
    for bad in ("tcp:1.2.3.4:5", "inet:localhost:11332", "unix:relative", "inet:127.0.0.1:0"):
        s.extra["milters"] = bad
        s.write_conf()
        r = s.ctl("check", check=False)
        assert r.returncode != 0 and "milter" in (r.stderr + r.stdout), (bad, r.stderr)
    s.extra["milters"] = " ".join(f"unix:/tmp/m{i}" for i in range(9))
    s.write_conf()
    r = s.ctl("check", check=False)
    assert r.returncode != 0 and "at most 8" in r.stderr + r.stdout


# ---- bounds: past each, the milter has failed (default action) --------------

@pytest.mark.parametrize("mods,extra,why", [
    ([["addheader", f"X-N{i}", "v"] for i in range(1001)], {}, "too many modifications"),
    ([["addheader", f"X-Big{i}", "\r\n\t".join(["v" * 990] * 10)] for i in range(7)], {},
     "too much header text added"),
    ([["replacebody", ("y" * 900 + "\r\n") * 4], ["replacebody", ("z" * 900 + "\r\n") * 4]],
     {"message_size_limit": "4096"}, "replaced body over message_size_limit"),
    # Lines the next hop would refuse after our 250 (RFC 5322 2.1.1).
    ([["addheader", "X-Long", "v" * 1100]], {},
     "header line over 998 octets, with no blank to fold it at"),
    ([["chgheader", "Subject", 1, "a\r\n\t" + "w" * 1000]], {},
     "header line over 998 octets, with no blank to fold it at"),
    ([["replacebody", "x" * 2000 + "\r\n"]], {}, "replaced body has a line over 998 octets"),
    ([["replacebody", "x" * 600], ["replacebody", "x" * 600 + "\r\n"]], {},
     "replaced body has a line over 998 octets"),
])
def test_modification_bounds(make_server, milters, mods, extra, why):
    m = milters({"mods": mods})
    s = server_with(make_server, [m.spec()], **extra)
    text = str(smtp_error(lambda: send(s)))
    assert "451" in text and "4.7.1" in text, text
    time.sleep(0.3)
    assert s.messages("bob") == []
    log = s.log()
    assert f'result=fail action=tempfail error="{why}"' in log, log[-2000:]
    # Logged once.
    assert log.count("result=fail action=tempfail") == 1


def test_long_header_is_folded(make_server, milters):
    """A milter's header with a line over 998 octets that has blanks (a
    spam report on one line): folded before a blank, every line within
    the bound, the words all there."""
    words = [f"TEST_{i:03d}=0.1" for i in range(150)]  # about 1800 octets
    m = milters({"mods": [["addheader", "X-Spam-Report", " ".join(words)]]})
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = stored(s)[0]
    head = msg.split(b"\n\n", 1)[0].decode()
    i = head.index("X-Spam-Report:")
    field = head[i:].split("\nX-", 1)[0]
    lines = field.split("\n")
    assert len(lines) >= 2 and all(len(l) <= 998 for l in lines), [len(l) for l in lines]
    assert all(l[0] in " \t" for l in lines[1:])
    assert field[len("X-Spam-Report:"):].split() == words


@pytest.mark.parametrize("stage,key", [("rcpt", "milter_command_timeout"),
                                       ("body", "milter_content_timeout"),
                                       ("eom", "milter_content_timeout")])
def test_milter_hangs_mid_session(make_server, milters, stage, key):
    """A libmilter milter that stops answering at one stage: that stage's
    timeout, then the default action (tempfail), logged once; nothing
    stored."""
    m = milters({stage: "hang"})
    s = server_with(make_server, [m.spec()], **{key: "1s"})
    t0 = time.monotonic()
    text = str(smtp_error(lambda: send(s)))
    assert "451" in text and "4.7.1" in text, text
    assert time.monotonic() - t0 < 6
    assert s.messages("bob") == []
    assert s.log().count('result=fail action=tempfail error="timeout"') == 1


def test_rset_aborts_the_milters_transaction(make_server, milters):
    m = milters()
    s = server_with(make_server, [m.spec()])
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        assert c.mail("carol@example.test")[0] == 250
        assert c.rcpt("carol@example.test")[0] == 250
        c.rset()
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    stored(s)
    stages = [r["stage"] for r in m.seen()]
    # The first transaction ended with an ABORT before the second MAIL.
    i_abort = stages.index("abort")
    assert stages.index("mail") < i_abort < len(stages) - 1 - stages[::-1].index("mail")
    assert [r["addr"] for r in m.seen("mail")] == ["<carol@example.test>", "<alice@example.test>"]
    assert s.messages("carol") == []
