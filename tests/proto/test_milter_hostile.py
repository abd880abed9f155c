"""Review of the milter client (be116b8): a hostile milter and a hostile
SMTP client.  Each test states what it shows; a failing test is a
finding."""
import json
import os
import signal
import smtplib
import socket
import struct
import threading
import time

import pytest

from conftest import Raw, wait_for
from hostile_milter import HostileMilter, pkt

MSG = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
       b"Subject: hostile\r\n\r\nline one\r\nline two\r\n")


def server_with(make_server, specs, **extra):
    conf = {"milters": " ".join(specs), "milter_command_timeout": "2s",
            "milter_content_timeout": "2s", "milter_connect_timeout": "2s"}
    conf.update(extra)
    return make_server(conf)


@pytest.fixture
def hostile():
    made = []

    def factory(*a, **kw):
        m = HostileMilter(*a, **kw)
        made.append(m)
        return m
    yield factory
    for m in made:
        m.close()


def smtp_dialog(s, lines, timeout=20):
    """Sends a whole transaction with a raw client; returns the replies
    (joined lines) in order."""
    r = Raw(s.ports["smtp"], timeout=timeout)
    out = []
    for l in lines:
        r.send(l)
        out.append(r.reply())
    return r, out


def progress_forever(seconds):
    def act(c):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.sendall(pkt("p"))
            time.sleep(0.3)
        c.sendall(pkt("c"))
    return act


# ---- time: a milter that never finishes ----------------------------------

def test_progress_forever_bounded(make_server, hostile):
    """SMFIR_PROGRESS restarted the deadline with no total bound: a milter
    that sends one every 0.3 s held the session (and a milter thread)
    as long as it liked.  Now the whole end-of-DATA stage of a milter
    ends within 4 x milter_content_timeout: the milter has failed and
    milter_default_action (tempfail) answers."""
    m = hostile(lambda cmd, data, st: [progress_forever(40)] if cmd == "E" else None)
    s = server_with(make_server, [m.spec()], milter_content_timeout="1s")
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.ehlo("x")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    took = time.monotonic() - t0
    assert e.value.smtp_code == 451
    assert 3.5 < took < 7, f"end of DATA answered after {took:.1f}s (1s content timeout)"
    assert "error=\"timeout\"" in s.log()
    assert s.messages("bob") == []


def test_progress_at_command_bounded(make_server, hostile):
    """PROGRESS at MAIL: the stage ends within 4 x milter_command_timeout."""
    m = hostile(lambda cmd, data, st: [progress_forever(40)] if cmd == "M" else None)
    s = server_with(make_server, [m.spec()], milter_command_timeout="1s")
    r = Raw(s.ports["smtp"], timeout=20)
    r.cmd("EHLO x")
    t0 = time.monotonic()
    rep = r.cmd("MAIL FROM:<alice@example.test>")
    took = time.monotonic() - t0
    assert rep.startswith("451 "), rep
    assert 3.5 < took < 7, took


def test_progress_within_bound_passes(make_server, hostile):
    """A milter that sends PROGRESS for 2 s (twice its 1 s timeout, under
    the 4 s bound) and then continues: the message is taken."""
    m = hostile(lambda cmd, data, st: [progress_forever(2)] if cmd == "E" else None)
    s = server_with(make_server, [m.spec()], milter_content_timeout="1s")
    send(s)
    wait_for(lambda: s.messages("bob"), 10, "delivery")


def test_shutdown_with_progress_milter(make_server, hostile):
    """SIGTERM while a milter job runs (PROGRESS forever): posternd should
    exit within shutdown_timeout + grace; smtp_server_free's
    workers_free(milter_workers) waits for the job."""
    m = hostile(lambda cmd, data, st: [progress_forever(90)] if cmd == "E" else None)
    s = server_with(make_server, [m.spec()], milter_content_timeout="1s",
                    shutdown_timeout="2s")

    def client():
        try:
            with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=60) as c:
                c.ehlo("x")
                c.sendmail("alice@example.test", ["bob@example.test"], MSG)
        except Exception:
            pass
    threading.Thread(target=client, daemon=True).start()
    wait_for(lambda: "E" in m.cmds(), 10, "EOM sent")
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        s.proc.wait(30)
    except Exception:
        s.proc.kill()
        s.proc.wait()
        pytest.fail("posternd still running 30s after SIGTERM (shutdown_timeout 2s)")
    assert time.monotonic() - t0 < 15


def test_slow_milter_vs_smtp_timeout(make_server, hostile):
    """A milter slower than smtp_timeout (but inside its own timeout): the
    idle timeout fires while the *server* is working and the client,
    which did nothing wrong, gets 421 'timeout exceeded'."""
    def slow(cmd, data, st):
        if cmd == "E":
            return [lambda c: (time.sleep(3.5), c.sendall(pkt("c")))]
        return None
    m = hostile(slow)
    s = server_with(make_server, [m.spec()], milter_content_timeout="10s",
                    smtp_timeout="2s")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    wait_for(lambda: s.messages("bob"), 10, "delivery")


def test_slow_milter_at_rcpt_then_idle(make_server, hostile):
    """A milter 3.5 s slow at RCPT, smtp_timeout 2 s: the RCPT is
    answered (the wait is not the client's idle time); after the reply
    the idle timer runs again and an idle client gets 421 in ~2 s."""
    def slow(cmd, data, st):
        if cmd == "R":
            return [lambda c: (time.sleep(3.5), c.sendall(pkt("c")))]
        return None
    m = hostile(slow)
    s = server_with(make_server, [m.spec()], milter_command_timeout="10s",
                    smtp_timeout="2s")
    r = Raw(s.ports["smtp"], timeout=15)
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<alice@example.test>")
    assert r.cmd("RCPT TO:<bob@example.test>").startswith("250")
    t0 = time.monotonic()
    rep = r.reply()
    assert rep.startswith("421 ") and 1.5 < time.monotonic() - t0 < 5, rep


# ---- replies ----------------------------------------------------------------

def mail_reply_to(make_server, hostile, text):
    """The reply to MAIL when the milter answers it with REPLYCODE text."""
    m = hostile(lambda cmd, data, st: [b"y" + text + b"\0"] if cmd == "M" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"], timeout=5)
    r.send("EHLO x\r\n")
    r.reply()
    r.send("MAIL FROM:<alice@example.test>\r\n")
    try:
        rep = r.reply()
    except (socket.timeout, TimeoutError):
        pytest.fail("MAIL's reply never ended; buffered %r" % r.buf[-200:])
    return s, r, rep


def test_long_multiline_replycode_is_well_formed(make_server, hostile):
    """SMFIR_REPLYCODE over the 1023-byte reply buffer was cut mid-line:
    the client got '550-...' as the last line and waited for ever.  Now
    such a reply is malformed: the milter has failed, and the client
    gets milter_default_action's reply (tempfail), whole."""
    text = "\r\n".join(["550-5.7.1 " + "a" * 400] * 3 + ["550 5.7.1 end"])
    s, r, rep = mail_reply_to(make_server, hostile, text.encode())
    assert rep.startswith("451 4.7.1 "), rep[:80]
    assert "\n" not in rep and "\r" not in rep
    assert "bad REPLYCODE" in s.log()
    assert r.cmd("RSET").startswith("250")


def test_reply_line_length(make_server, hostile):
    """One REPLYCODE line of 1000 characters (under the buffer) was relayed
    as is; RFC 5321 4.5.3.1.5 allows 512 with CRLF: now refused, the
    default action answers."""
    s, r, rep = mail_reply_to(make_server, hostile, b"550 5.7.1 " + b"b" * 1000)
    assert rep.startswith("451 4.7.1 "), rep[:80]
    assert max(len(l) for l in rep.split("\n")) <= 510, len(rep)


def test_reply_line_at_limit_passes(make_server, hostile):
    """Two lines of exactly 510 characters (1022 bytes with the CRLF,
    the buffer's most): relayed whole."""
    text = "550-5.7.1 " + "c" * 500 + "\r\n550 5.7.1 " + "c" * 500
    s, r, rep = mail_reply_to(make_server, hostile, text.encode())
    lines = rep.split("\n")
    assert len(lines) == 2 and lines[-1].startswith("550 5.7.1 c"), rep[:80]
    assert max(len(l) for l in lines) == 510


@pytest.mark.parametrize("text", [b"550 5.7.1 bare\ncr", b"550 5.7.1 bare\rlf",
                                  b"550 5.7.1 nul\0x", b"550 5.7.1 x\r\n",
                                  b"550-5.7.1 x\r\n550 5.7.1 \x01"])
def test_reply_control_bytes_refused(make_server, hostile, text):
    """CR, LF or NUL other than CRLF between lines, or a control byte:
    the reply is refused, the default action answers."""
    s, r, rep = mail_reply_to(make_server, hostile, text)
    assert rep.startswith("451 4.7.1 "), rep[:80]


# ---- quarantine ------------------------------------------------------------

def quarantine_milter(hostile, on=None):
    """Quarantines every message, or while on["q"] is true."""
    def q(cmd, data, st):
        if cmd == "E" and (on is None or on["q"]):
            return [b"qsuspicious\0", b"c"]
        return None
    return hostile(q)


def quarantine_one(s, rcpts):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        assert c.sendmail("alice@example.test", rcpts, MSG) == {}
    js = wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout), what="queue")
    assert len(js) == 1 and js[0]["held"] is True
    return js[0]["id"]


def test_quarantine_release_reaches_local_mailbox(make_server, hostile):
    """Quarantine holds the local mailboxes in the queue entry, marked
    local; nothing reaches a Maildir until the release, which stores the
    message in each one (once), with its Return-Path, and empties the
    queue -- also across a restart of the server while it is held."""
    m = quarantine_milter(hostile)
    s = server_with(make_server, [m.spec()], queue_retry_min="1s")
    qid = quarantine_one(s, ["bob@example.test", "carol@example.test"])
    with open(os.path.join(s.data, "queue", "entries", qid + ".msg"), "rb") as f:
        env = f.read().split(b"\n\n", 1)[0]
    assert env.count(b"\tlocal") == 2, env
    js = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert [r["local"] for r in js[0]["recipients"]] == [True, True]
    time.sleep(1.5)
    assert s.messages("bob") == [] and s.messages("carol") == []
    # Held across a restart: the entry and its local marks are on disk.
    s.stop()
    s.start()
    s.ctl("queue", "release", qid)
    for user in ("bob", "carol"):
        got = wait_for(lambda: s.messages(user), 20, f"{user}'s delivery after release")
        assert len(got) == 1
        assert got[0].startswith(b"Return-Path: <alice@example.test>\n"), got[0][:200]
        assert b"line one\nline two\n" in got[0]
    wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout) == [], 20, "queue empty")
    assert "relay=local" in s.log()
    time.sleep(1)
    assert len(s.messages("bob")) == 1 and s.messages("alice") == []


def test_quarantine_release_after_a_lower_size_limit_is_whole(make_server, hostile):
    """A held 1.6 MB message released after a reload lowered
    message_size_limit to 100 kB: the Maildir copy is the whole message,
    byte for byte (review: it was cut at the new limit and logged
    delivered), and its ,W= size counts every line end."""
    m = quarantine_milter(hostile)
    s = server_with(make_server, [m.spec()], queue_retry_min="1s")
    body = b"".join(b"%07d " % i + b"x" * 70 + b"\r\n" for i in range(20000))
    msg = MSG + body + b"THE-END\r\n"
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        assert c.sendmail("alice@example.test", ["bob@example.test"], msg) == {}
    qid = wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout), what="queue")[0]["id"]
    s.extra["message_size_limit"] = "100000"
    s.write_conf()
    s.ctl("reload")
    s.ctl("queue", "release", qid)
    got = wait_for(lambda: s.messages("bob"), 20, "delivery")[0]
    assert got.endswith(body.replace(b"\r\n", b"\n") + b"THE-END\n")
    name = os.listdir(os.path.join(s.maildir("bob"), "new"))[0]
    wsize = len(got) + got.count(b"\n")
    assert f",W={wsize}" in name, name


def test_quarantine_release_to_a_deleted_user_bounces(make_server, hostile):
    """A user deleted while its mail was held is not written a Maildir
    at the release: the recipient fails 5.1.1 and the sender (local
    here) gets the DSN; the other recipient is still delivered."""
    m = quarantine_milter(hostile)
    s = server_with(make_server, [m.spec()], queue_retry_min="1s")
    qid = quarantine_one(s, ["bob@example.test", "carol@example.test"])
    s.ctl("user", "del", "carol@example.test")
    s.ctl("queue", "release", qid)
    wait_for(lambda: s.messages("bob"), 20, "bob's delivery")
    dsn = wait_for(lambda: s.messages("alice"), 20, "the DSN to alice")
    assert b"carol@example.test" in dsn[0] and b"5.1.1" in dsn[0]
    assert not os.path.isdir(s.maildir("carol")), "a Maildir made for a deleted user"
    wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout) == [], 20, "queue empty")


def test_quarantine_release_over_quota_waits(make_server, hostile):
    """A mailbox full at the release: the local recipient is deferred
    (4.2.2, it stays in the queue, nothing written), not lost; once
    there is room the next try stores it."""
    on = {"q": False}
    m = quarantine_milter(hostile, on)
    s = server_with(make_server, [m.spec()], queue_retry_min="1s", queue_retry_max="2s")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    wait_for(lambda: s.messages("bob"), 20, "a first message (bob's Maildir)")
    on["q"] = True
    qid = quarantine_one(s, ["bob@example.test"])
    s.ctl("user", "quota", "bob@example.test", "1", "100")
    s.ctl("queue", "release", qid)
    wait_for(lambda: "4.2.2" in s.log(), 20, "the deferral")
    js = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert len(js) == 1 and js[0]["held"] is False, js
    assert len(s.messages("bob")) == 1
    s.ctl("user", "quota", "bob@example.test", "none")
    wait_for(lambda: len(s.messages("bob")) == 2, 30, "delivery once there is room")
    wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout) == [], 20, "queue empty")


# ---- modifications ---------------------------------------------------------

def eom_mods(*mods):
    def f(cmd, data, st):
        if cmd == "E":
            return list(mods) + [b"c"]
        return None
    return f


def send(s, to=("bob@example.test",), msg=MSG, frm="alice@example.test"):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        return c.sendmail(frm, list(to), msg)


def refused_451(s):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    assert e.value.smtp_code == 451, e.value
    assert "bad header modification" in s.log()
    time.sleep(0.3)
    assert s.messages("bob") == []


@pytest.mark.parametrize("value", [
    b"a\n \nX-Injected: 1\r\n\r\nfake body",  # blank continuation, empty line
    b"a\r\n\t\r\n\tb",                       # a continuation of a TAB only
    b"a\n\nb",                                  # an empty line
])
def test_header_value_blank_line(make_server, hostile, value):
    """ADDHEADER value with a line that is empty or only blanks (a
    blanks-only line ends the header for some parsers): refused, the
    milter has failed (default action: tempfail), nothing stored."""
    m = hostile(eom_mods(b"hX-Evil\0" + value + b"\0"))
    s = server_with(make_server, [m.spec()])
    refused_451(s)


@pytest.mark.parametrize("value", [b"a\x1b[31mred", b"del\x7f", b"x\x01y",
                                   b"bare\rcr", b"x\x0cff"])
def test_header_value_control_chars(make_server, hostile, value):
    """ADDHEADER value with ESC, DEL, a control byte, a bare CR: was
    stored as is; now refused (default action)."""
    m = hostile(eom_mods(b"hX-Ctl\0" + value + b"\0"))
    s = server_with(make_server, [m.spec()])
    refused_451(s)


def test_header_value_tab_utf8_fold_ok(make_server, hostile):
    """TAB, UTF-8, a proper fold and a final line end are taken."""
    m = hostile(eom_mods("hX-Ok\0a\tb \u00e9\r\n\tc\r\n\0".encode()))
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    assert "X-Ok: a\tb \u00e9\n\tc\n".encode() in msg, msg


def test_chgfrom_bare_address(make_server, hostile, sinks):
    """libmilter's smfi_chgfrom is often given a bare address."""
    mx = sinks("127.0.0.2")
    m = hostile(eom_mods(b"ebounces@example.test\0"))
    s = server_with(make_server, [m.spec()], relay="addresses",
                    relay_addresses="127.0.0.1", queue_retry_min="1s")
    send(s, to=("someone@remote.example",))
    wait_for(lambda: mx.messages, what="relay")
    assert mx.messages[0]["from"] == "bounces@example.test"


def test_chgfrom_bad_address_logged(make_server, hostile):
    """CHGFROM to garbage: the message goes with the old sender, and the
    log says so (escaped)."""
    m = hostile(eom_mods(b"e<a b\"c@@x\0"))
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    assert msg.startswith(b"Return-Path: <alice@example.test>")
    assert "change=from result=ignored" in s.log()


def sent_552(s, msg=MSG):
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.test", ["bob@example.test"], msg)
    assert e.value.smtp_code == 552 and b"5.3.4" in e.value.smtp_error, e.value
    assert "message_size_limit after milters" in s.log()
    time.sleep(0.3)
    assert s.messages("bob") == []


def test_replace_body_whole_message_over_limit(make_server, hostile):
    """The replaced body is bounded by message_size_limit, the headers
    added by 64 KiB more: the stored message could exceed
    message_size_limit.  Now the whole rewritten message is checked:
    over the limit, 552 5.3.4 (Postfix: message file too big)."""
    limit = 20000
    body = (b"y" * 900 + b"\r\n") * 10
    pad = b"\r\n\t".join([b"v" * 900] * 10)  # lines within 998 octets
    m = hostile(eom_mods(*([b"b" + body] * 2), *[b"hX-Pad%d\0" % i + pad + b"\0" for i in range(5)]))
    s = server_with(make_server, [m.spec()], message_size_limit=str(limit))
    sent_552(s)


# 2 KiB of header value in lines a next hop takes (998 octets at most).
PAD2K = b"v" * 990 + b"\r\n\t" + b"v" * 990


def test_added_headers_alone_over_limit(make_server, hostile):
    """A message just under the limit, a milter adds 2 KiB of headers:
    552 5.3.4, nothing stored."""
    limit = 20000
    msg = MSG + b"".join([b"z" * 98 + b"\r\n"] * 190)  # 19096 octets
    m = hostile(eom_mods(b"hX-Pad\0" + PAD2K + b"\0"))
    s = server_with(make_server, [m.spec()], message_size_limit=str(limit))
    sent_552(s, msg)


def test_rewritten_message_at_limit_passes(make_server, hostile):
    """A rewritten message within the limit is delivered."""
    m = hostile(eom_mods(b"hX-Pad\0" + PAD2K + b"\0"))
    s = server_with(make_server, [m.spec()], message_size_limit="20000")
    send(s)
    msg = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    assert b"X-Pad: " + PAD2K.replace(b"\r\n", b"\n") in msg


def test_addrcpt_bypasses_rcpt_checks(make_server, hostile, sinks):
    """ADDRCPT of a remote address on the port-25 listener, unauthenticated,
    relay not allowed: the milter makes postern relay (Postfix does the
    same), as docs/admin.md now says: a milter is trusted with that."""
    mx = sinks("127.0.0.2")
    m = hostile(eom_mods(b"+<victim@remote.example>\0"))
    s = server_with(make_server, [m.spec()], queue_retry_min="1s")
    send(s)
    wait_for(lambda: mx.messages, 20, "relay to the added recipient")
    assert "added=<victim@remote.example>" in s.log()
    assert s.messages("bob")


def test_stale_reply_desync(make_server, hostile):
    """A milter that negotiated NR_HDR (no replies to headers) but answers
    each anyway: its replies are read as the answers to later stages.
    Here it sends 'c' to each header, then at EOM adds a header; postern
    reads a stale 'c' as the EOM answer, and the ADDHEADER lands in the
    next transaction as 'modification before end of message'.
    Now data the milter sends before it is asked anything makes it fail
    (out of step): default action tempfail, and the next transaction is
    not disturbed by its stale packets."""
    def f(cmd, data, st):
        if cmd == "L":
            return [b"c"]
        if cmd == "E":
            return [b"hX-AR\0pass\0", b"c"]
        return None
    m = hostile(f, protocol=0x80)
    s = server_with(make_server, [m.spec()])
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
        assert e.value.smtp_code == 451
        # The failed milter is out for the session: the default action.
        with pytest.raises(smtplib.SMTPSenderRefused) as e2:
            c.sendmail("alice@example.test", ["bob@example.test"], MSG)
        assert e2.value.smtp_code == 451
    assert "reply nothing asked for" in s.log()
    assert "modification before end of message" not in s.log()
    assert s.messages("bob") == []


def test_client_disconnects_during_eom(make_server, hostile):
    """The client goes away while the EOM job runs: nothing stored, no
    sanitizer report, the milter connection is closed."""
    def f(cmd, data, st):
        if cmd == "E":
            return [lambda c: (time.sleep(2), c.sendall(pkt("c")))]
        return None
    m = hostile(f)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    for l in ("EHLO x\r\n", "MAIL FROM:<alice@example.test>\r\n",
              "RCPT TO:<bob@example.test>\r\n", "DATA\r\n"):
        r.send(l)
        r.reply()
    r.send(MSG + b".\r\nQUIT\r\n")
    time.sleep(0.5)
    r.sock.close()
    time.sleep(3)
    assert s.messages("bob") == []
    assert "event=disconnect" in s.log()


def test_pipelined_after_data_with_pending_job(make_server, hostile):
    """PIPELINING: the end of DATA, then RSET, MAIL, RCPT, DATA in one
    write while the EOM job runs: each command waits its turn and the
    second message also passes the milter."""
    def f(cmd, data, st):
        if cmd == "E":
            return [lambda c: (time.sleep(1), c.sendall(pkt("c")))]
        return None
    m = hostile(f)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    for l in ("EHLO x\r\n", "MAIL FROM:<alice@example.test>\r\n",
              "RCPT TO:<bob@example.test>\r\n", "DATA\r\n"):
        r.send(l)
        r.reply()
    r.send(MSG + b".\r\nRSET\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n")
    reps = [r.reply() for _ in range(5)]
    r.send(MSG + b".\r\nQUIT\r\n")
    reps += [r.reply(), r.reply()]
    wait_for(lambda: s.messages("carol"), what="second delivery")
    assert m.cmds().count("E") == 2


def test_milter_rejects_count_as_errors(make_server, hostile):
    """max_errors counts 5xx refusals of recipients; a milter's 5xx at RCPT
    did not count (command_done replied without count_error), so a
    client could go on for ever, each RCPT a round trip on the shared
    milter pool.  Now the third refusal is followed by 421 and close."""
    m = hostile(lambda cmd, data, st: [b"r"] if cmd == "R" else None)
    s = server_with(make_server, [m.spec()], max_errors="3")
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<alice@example.test>")
    codes = [r.cmd("RCPT TO:<bob@example.test>")[:3] for _ in range(3)]
    assert codes == ["550", "550", "550"], codes
    assert r.reply().startswith("421 4.7.0 "), "no 421 after max_errors"
    assert r.closed(3)


def test_obs_header_moves_headers_to_body(make_server, hostile):
    """A header line hdrs_parse does not take (obs 'Name : value', RFC
    5322 4.5.3) ends the header section for the milters: the following
    headers are sent as body, and when a milter changes the message the
    rewrite puts an empty line before them (they become body)."""
    msg = (b"From: Alice <alice@example.test>\r\nSubject : spaced\r\n"
           b"To: bob@example.test\r\nX-Later: 1\r\n\r\nline one\r\n")
    m = hostile(eom_mods(b"hX-Added\0yes\0"))
    s = server_with(make_server, [m.spec()])
    send(s, msg=msg)
    got = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    head, body = got.split(b"\n\n", 1)
    assert b"X-Later: 1" in head, got
    assert b"\nSubject : spaced\n" in head, got  # kept as written
    assert body == b"line one\n", got
    hdr_names = [d.split(b"\0")[0] for c, d in m.seen if c == "L"]
    assert b"X-Later" in hdr_names and b"Subject" in hdr_names, hdr_names


def test_non_header_line_kept_in_headers(make_server, hostile):
    """A line without a colon inside the header section: kept where it
    is (opaque, not sent to milters as a header), the headers after it
    still sent as headers, and the rewrite adds no empty line."""
    msg = (b"From: Alice <alice@example.test>\r\nthis is no header\r\n"
           b"To: bob@example.test\r\n\r\nline one\r\n")
    m = hostile(eom_mods(b"hX-Added\0yes\0"))
    s = server_with(make_server, [m.spec()])
    send(s, msg=msg)
    got = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    head, body = got.split(b"\n\n", 1)
    assert b"\nthis is no header\nTo: bob@example.test\n" in head, got
    assert b"X-Added: yes" in head, got
    assert body == b"line one\n", got
    hdr_names = [d.split(b"\0")[0] for c, d in m.seen if c == "L"]
    assert b"To" in hdr_names and b"this is no header" not in hdr_names
    body_sent = b"".join(d for c, d in m.seen if c == "B")
    assert body_sent == b"line one\r\n", body_sent


def test_reload_changes_milters_for_new_sessions_only(make_server, hostile):
    """SIGHUP replacing milter A by B: a session open before keeps A for
    its next message; a new session uses B."""
    a = hostile()
    b = hostile()
    s = server_with(make_server, [a.spec()])
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
        c.ehlo("x")
        s.extra["milters"] = b.spec()
        s.write_conf()
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload" in s.log(), 10, "reload")
        time.sleep(0.5)
        c.sendmail("alice@example.test", ["bob@example.test"], MSG)
    assert "E" in a.cmds() and "E" not in b.cmds()
    send(s)
    assert "E" in b.cmds()
    wait_for(lambda: len(s.messages("bob")) == 2, what="both delivered")


def test_failed_milter_partial_mods_with_accept(make_server, hostile, sinks):
    """milter_default_action=accept: a milter that sends DELRCPT and a
    header, then a malformed packet, has failed: "the milter is
    skipped", yet what it sent before failing is applied (bob deleted,
    header added)."""
    m = hostile(lambda cmd, data, st: [b"hX-Partial\0yes\0", b"-<bob@example.test>\0", b"Zjunk"]
                if cmd == "E" else None)
    s = server_with(make_server, [m.spec()], milter_default_action="accept")
    send(s, to=("bob@example.test", "alice@example.test"))
    got = wait_for(lambda: s.messages("alice"), what="delivery")[0]
    time.sleep(0.5)
    assert b"X-Partial" not in got, got
    assert s.messages("bob"), "bob was deleted by a milter that then failed"


def test_connect_421_closes(make_server, hostile):
    """A milter's 421 at connect: RFC 5321 3.8 / 4.2.5 - the server
    closes after a 421 (Postfix does): the first command gets it, then
    the session closes."""
    m = hostile(lambda cmd, data, st: [b"y421 4.7.0 go away\0"] if cmd == "C" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    assert r.cmd("EHLO x").startswith("421")
    assert r.closed(3), "session still open after 421"


def test_rcpt_421_closes(make_server, hostile):
    """A milter's 421 at RCPT is sent and the session closes."""
    m = hostile(lambda cmd, data, st: [b"y421 4.7.0 busy\0"] if cmd == "R" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<alice@example.test>")
    assert r.cmd("RCPT TO:<bob@example.test>") == "421 4.7.0 busy"
    assert r.closed(3), "session still open after 421"


def test_eom_421_closes_nothing_stored(make_server, hostile):
    """A milter's 421 at end of DATA: sent, the session closes, nothing is
    stored."""
    m = hostile(lambda cmd, data, st: [b"y421 4.7.0 later\0"] if cmd == "E" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    for l in ("EHLO x", "MAIL FROM:<alice@example.test>", "RCPT TO:<bob@example.test>"):
        r.cmd(l)
    assert r.cmd("DATA").startswith("354")
    r.send(MSG + b".\r\n")
    assert r.reply() == "421 4.7.0 later"
    assert r.closed(3)
    time.sleep(0.5)
    assert s.messages("bob") == []


def test_connect_reject_closes_after_three(make_server, hostile):
    """A milter's 550 at connect: the milter's reply to the first two
    commands (QUIT excepted), then 421 and close, as for a DNSBL."""
    m = hostile(lambda cmd, data, st: [b"y550 5.7.1 not you\0"] if cmd == "C" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    assert r.cmd("EHLO x") == "550 5.7.1 not you"
    assert r.cmd("MAIL FROM:<a@example.test>") == "550 5.7.1 not you"
    assert r.cmd("NOOP").startswith("421 4.7.1 ")
    assert r.closed(3)


def test_connect_reject_quit(make_server, hostile):
    """After a connect refusal QUIT is still answered 221."""
    m = hostile(lambda cmd, data, st: [b"y550 5.7.1 not you\0"] if cmd == "C" else None)
    s = server_with(make_server, [m.spec()])
    r = Raw(s.ports["smtp"])
    assert r.cmd("QUIT").startswith("221")


def test_failed_milter_timeout_mods_dropped(make_server, hostile):
    """default accept: a milter that adds a header and changes the sender,
    then times out at end of message, changes nothing; a second milter
    after it still applies its own."""
    a = hostile(lambda cmd, data, st: [b"hX-Partial\0yes\0", b"e<evil@example.test>\0",
                                       lambda c: time.sleep(3.5)]
                if cmd == "E" else None)
    b = hostile(eom_mods(b"hX-Second\0ok\0"))
    s = server_with(make_server, [a.spec(), b.spec()], milter_default_action="accept",
                    milter_content_timeout="1s")
    send(s)
    got = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    assert b"X-Partial" not in got and b"X-Second: ok" in got, got
    assert got.startswith(b"Return-Path: <alice@example.test>"), got[:80]


def test_chgfrom_esmtp_args_dropped(make_server, hostile):
    """CHGFROM with ESMTP arguments: the address is taken, the arguments
    dropped (docs/admin.md)."""
    m = hostile(eom_mods(b"e<new@example.test>\0SIZE=1 BODY=8BITMIME\0"))
    s = server_with(make_server, [m.spec()])
    send(s)
    msg = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    assert msg.startswith(b"Return-Path: <new@example.test>"), msg[:80]


def test_insheader_index_skips_non_header_lines(make_server, hostile):
    """INSHEADER index 1 counts the headers the milter was sent: a line
    that is no header (not sent) is not counted."""
    msg = (b"From: Alice <alice@example.test>\r\nno header here\r\n"
           b"To: bob@example.test\r\n\r\nline one\r\n")
    m = hostile(eom_mods(b"i\0\0\0\2X-Ins\0yes\0"))
    s = server_with(make_server, [m.spec()])
    send(s, msg=msg)
    got = wait_for(lambda: s.messages("bob"), what="delivery")[0]
    # Index 0 is the top of the message's own headers (below postern's
    # Received): index 2 is after From and To, the opaque line between.
    head = got.split(b"\n\n", 1)[0]
    assert b"\nno header here\nTo: bob@example.test\nX-Ins: yes\n" in head + b"\n", got
