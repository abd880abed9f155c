"""Outbound mail: the durable queue, MX delivery, retries, bounces and the
queue commands, against capture SMTP servers (aiosmtpd) on loopback
addresses and dnsmasq on loopback for DNS."""
import email
import email.policy
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Raw, Sink, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


def send(server, frm, to, body=b"Subject: out\r\n\r\nhello\r\n"):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail(frm, to, body)


def queue_ids(server):
    out = server.ctl("queue", "list").stdout
    return [l.split("\t")[0] for l in out.splitlines() if l and not l.startswith("\t")]


def dsn_of(msg_bytes):
    m = email.message_from_bytes(msg_bytes, policy=email.policy.default)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    return m, parts


def test_delivery_via_mx_byte_exact_and_dot_stuffed(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST)
    body = (b"Subject: outbound\r\nTo: bob@remote.example\r\n\r\n"
            b"line\r\n.leading dot\r\n..two\r\n.\ttab\r\n8bit \xc3\xa9\r\nend\r\n")
    send(s, "alice@example.test", ["bob@remote.example", "carol@remote.example"], body)
    wait_for(lambda: mx.messages, what="delivery")
    [m] = mx.messages
    assert m["from"] == "alice@example.test"
    assert m["to"] == ["bob@remote.example", "carol@remote.example"]
    received, rest = m["data"].split(b"Subject: outbound", 1)
    assert received.startswith(b"Received: from ")
    assert b"Return-Path" not in m["data"]
    assert b"Subject: outbound" + rest == body, "dot-stuffing undone by the sink gives the original"
    log = wait_for(lambda: "status=sent" in s.log() and s.log(), what="log")
    assert "to=<bob@remote.example>, relay=mx1.remote.example[127.0.0.2]:" in log
    assert "dsn=2.0.0, status=sent (250 2.0.0 OK captured)" in log
    wait_for(lambda: queue_ids(s) == [], what="queue empty")


def test_large_message_byte_exact_across_read_chunks(make_server, sinks):
    """The outbound copy is read in 64 KiB pieces. Every line is dots, so
    whatever byte a piece starts with, a dot doubled there that does not
    start a line (or one left single that does) changes what the sink
    gets; the last piece goes out with the end-of-data line."""
    mx = sinks("127.0.0.2")
    s = make_server(dict(FAST, message_size_limit="10M"))
    lines, size, i = [], 0, 0
    while size < 300_000:
        line = b"." * (1 + i % 97) + b"\r\n"  # a dot wherever a piece may end
        lines.append(line)
        size += len(line)
        i += 1
    body = b"Subject: big\r\n\r\n" + b"".join(lines) + b".\r\n..\r\nlast"
    body += b"\r\n"
    send(s, "alice@example.test", ["bob@remote.example"], body)
    [m] = wait_for(lambda: mx.messages, what="delivery")
    assert m["data"].split(b"Subject: big", 1)[1] == body[len(b"Subject: big"):]
    wait_for(lambda: queue_ids(s) == [], what="queue empty")


def test_mixed_local_and_remote_in_one_transaction(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST)
    send(s, "x@remote.example", ["alice@example.test", "bob@remote.example"])
    wait_for(lambda: mx.messages, what="remote copy")
    assert len(s.messages("alice")) == 1


def test_alias_forward_to_remote(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server({"queue_retry_min": "1s"})  # no relay_addresses
    s.ctl("alias", "add", "fwd2@example.test", "far@remote.example", "alice@example.test")
    send(s, "x@other.example", ["fwd2@example.test"])
    wait_for(lambda: mx.messages, what="forward")
    assert mx.messages[0]["to"] == ["far@remote.example"]
    assert len(s.messages("alice")) == 1


class Dropper:
    """A first MX that takes the TCP connection and closes it at once
    (no greeting), recording when each connection came."""

    def __init__(self, ip, port):
        self.connects = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connects.append(time.monotonic())
            c.close()

    def close(self):
        self.sock.close()


def sent_line(server, rcpt):
    """The log's status=sent line for rcpt (waits for it)."""
    def find():
        for line in server.log().splitlines():
            if f"to=<{rcpt}>," in line and "status=sent" in line:
                return line
        return None
    return wait_for(find, what=f"status=sent for {rcpt}")


def test_second_mx_when_first_refuses(make_server, sinks):
    """mx1.backup.example (127.0.0.3): nothing listens, the connection is
    refused; the message goes to mx2 (127.0.0.4), and the log says so."""
    mx2 = sinks("127.0.0.4")
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@backup.example"])
    wait_for(lambda: mx2.messages, what="backup MX")
    assert "relay=mx2.backup.example[127.0.0.4]:" in sent_line(s, "u@backup.example")
    assert len(mx2.messages) == 1


def test_second_mx_only_after_the_first(make_server, sinks, sink_port):
    """The first MX is tried first: it takes the connection and drops it,
    and only then does the second MX get the message."""
    mx1 = Dropper("127.0.0.3", sink_port)
    try:
        mx2 = sinks("127.0.0.4")
        s = make_server(FAST)
        send(s, "alice@example.test", ["u@backup.example"])
        wait_for(lambda: mx2.messages, what="backup MX")
        done = time.monotonic()
        assert mx1.connects, "the most preferred MX was never tried"
        assert mx1.connects[0] < done
        assert len(mx2.messages) == 1
        assert "relay=mx2.backup.example[127.0.0.4]:" in sent_line(
            s, "u@backup.example")
    finally:
        mx1.close()


def test_second_mx_when_first_answers_4xx(make_server, sinks):
    mx1 = sinks("127.0.0.5", mode="mail451")
    mx2 = sinks("127.0.0.6")
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@tempmx.example"])
    wait_for(lambda: mx2.messages, what="second MX")
    # mx1 was asked first (it refused MAIL with 451), and kept nothing.
    assert mx1.mails >= 1, "the most preferred MX was never tried"
    assert mx1.first_mail < mx2.first_mail
    assert mx1.messages == [] and len(mx2.messages) == 1
    assert "relay=mx2.tempmx.example[127.0.0.6]:" in sent_line(s, "u@tempmx.example")


def test_implicit_mx_from_a_record(make_server, sinks):
    """No MX record: the domain's own A record is the host (RFC 5321
    5.1), named by the domain itself in the log."""
    host = sinks("127.0.0.7")
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@implicit.example"])
    wait_for(lambda: host.messages, what="implicit MX")
    assert host.messages[0]["to"] == ["u@implicit.example"]
    assert "relay=implicit.example[127.0.0.7]:" in sent_line(s, "u@implicit.example")


def test_null_mx_bounces_at_once(make_server):
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@nullmx.example"])
    [dsn] = wait_for(lambda: s.messages("alice"), what="DSN")
    m, parts = dsn_of(dsn.split(b"\n", 1)[1])
    assert "Status: 5.1.10" in parts[1].as_string()
    assert "null MX" in dsn.decode()
    assert dsn.startswith(b"Return-Path: <>\n")


def test_nxdomain_bounces(make_server):
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@nosuchdomain.example"])
    [dsn] = wait_for(lambda: s.messages("alice"), what="DSN")
    assert b"Status: 5.1.2" in dsn


def test_5xx_bounce_is_a_wellformed_dsn_to_the_sender(make_server, sinks):
    sinks("127.0.0.8", mode="rcpt550")
    s = make_server(FAST)
    send(s, "alice@example.test", ["nobody@refuse.example"],
         b"Subject: will bounce\r\nMessage-ID: <orig@example.test>\r\n\r\nbody\r\n")
    [raw] = wait_for(lambda: s.messages("alice"), what="DSN")
    m, parts = dsn_of(raw.split(b"\n", 1)[1])
    assert m["From"].addresses[0].username == "MAILER-DAEMON"
    assert m["To"].addresses[0].addr_spec == "alice@example.test"
    status = parts[1].as_string()
    assert "Reporting-MTA: dns; mx.example.test" in status
    assert "Final-Recipient: rfc822; nobody@refuse.example" in status
    assert "Action: failed" in status
    assert "Status: 5.1.1" in status
    assert "Remote-MTA: dns; mx1.refuse.example" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1" in status
    assert "Message-ID: <orig@example.test>" in parts[2].as_string()
    assert "status=bounced" in s.log()
    wait_for(lambda: queue_ids(s) == [], what="entries removed")


def test_4xx_then_success_on_retry(make_server, sinks):
    mx = sinks("127.0.0.9", fail_first=1)
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@retry.example"])
    wait_for(lambda: "status=deferred" in s.log(), what="deferral")
    wait_for(lambda: mx.messages, timeout=30, what="retry")
    assert s.messages("alice") == [], "no bounce"


def test_expiry_bounce(make_server):
    s = make_server(dict(FAST, queue_lifetime="3s"))
    send(s, "alice@example.test", ["u@down.example"])
    [dsn] = wait_for(lambda: s.messages("alice"), timeout=40, what="expiry DSN")
    assert b"delivery time expired" in dsn
    assert b"Status: 4.4.7" in dsn or b"Status: 4.4.1" in dsn


def test_delay_warning(make_server):
    s = make_server(dict(FAST, queue_delay_warning="1s"))
    send(s, "alice@example.test", ["u@down.example"])
    [dsn] = wait_for(lambda: s.messages("alice"), timeout=40, what="delay DSN")
    assert b"Action: delayed" in dsn
    assert b"Delayed Mail" in dsn
    assert queue_ids(s), "still queued after the warning"


def test_no_bounce_to_null_sender(make_server, sinks):
    sinks("127.0.0.8", mode="rcpt550")
    s = make_server(FAST)
    send(s, "", ["nobody@refuse.example"])
    [notice] = wait_for(lambda: s.messages("postmaster"), what="postmaster notice")
    assert b"Final-Recipient: rfc822; nobody@refuse.example" in notice
    time.sleep(1)
    assert "to=<>" not in s.log()
    assert len(s.messages("postmaster")) == 1


def test_relayhost_and_routes(make_server, sinks, sink_port):
    hub = sinks("127.0.0.11")
    routed = sinks("127.0.0.12")
    s = make_server(dict(FAST, relayhost=f"[127.0.0.11]:{sink_port}",
                         routes=f"routed.example=[127.0.0.12]:{sink_port}, "
                                f"*.sub.example=[127.0.0.12]:{sink_port}"))
    send(s, "alice@example.test", ["a@anywhere.example"])
    send(s, "alice@example.test", ["b@routed.example"])
    send(s, "alice@example.test", ["c@deep.sub.example"])
    wait_for(lambda: len(hub.messages) == 1 and len(routed.messages) == 2, what="routing")
    assert hub.messages[0]["to"] == ["a@anywhere.example"]
    assert sorted(m["to"][0] for m in routed.messages) == ["b@routed.example", "c@deep.sub.example"]


def test_starttls_used_when_offered(make_server, sinks, cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    mx = sinks("127.0.0.14", tls=ctx)
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@tls.example"])
    [m] = wait_for(lambda: mx.messages, what="TLS delivery")
    assert m["tls"]


def test_encrypt_refuses_plaintext_host(make_server, sinks):
    sinks("127.0.0.2")
    s = make_server(dict(FAST, smtp_tls="encrypt"))
    send(s, "alice@example.test", ["u@remote.example"])
    wait_for(lambda: "does not offer STARTTLS" in s.log(), what="TLS refusal")
    assert "status=deferred" in s.log()


def test_loop_back_to_myself_bounces(make_server, sinks, sink_port):
    sinks("127.0.0.13", hostname="mx.example.test")
    s = make_server(dict(FAST, routes=f"loop.example=[127.0.0.13]:{sink_port}"))
    send(s, "alice@example.test", ["u@loop.example"])
    [dsn] = wait_for(lambda: s.messages("alice"), what="loop DSN")
    assert b"Status: 5.4.6" in dsn


def test_kill9_while_waiting_then_delivered_after_restart(make_server, sinks):
    s = make_server(dict(FAST, queue_retry_min="1s"))
    # Nothing listens yet: the message waits in the queue.
    send(s, "alice@example.test", ["u@remote.example"])
    wait_for(lambda: "status=deferred" in s.log(), what="deferral")
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    mx = sinks("127.0.0.2")
    s.start()
    wait_for(lambda: mx.messages, timeout=30, what="delivery after restart")
    assert len(mx.messages) == 1


def test_kill9_in_the_middle_of_delivery(make_server, sinks):
    slow = sinks("127.0.0.2", data_delay=30)
    s = make_server(dict(FAST, queue_retry_min="1s"))
    send(s, "alice@example.test", ["u@remote.example"], b"Subject: interrupted\r\n\r\nx\r\n")
    wait_for(lambda: slow.in_data, what="delivery in progress")
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    slow.stop()
    mx = sinks("127.0.0.2")
    s.start()
    [m] = wait_for(lambda: mx.messages, timeout=30, what="delivery after restart")
    assert b"Subject: interrupted" in m["data"]
    wait_for(lambda: queue_ids(s) == [], what="entry removed")


def test_queue_commands(make_server, sinks):
    s = make_server(dict(FAST, queue_retry_min="1h", queue_retry_max="1h"))
    send(s, "alice@example.test", ["u@remote.example"], b"Subject: held one\r\n\r\nx\r\n")
    wait_for(lambda: "status=deferred" in s.log(), what="deferral")
    [qid] = queue_ids(s)
    listing = s.ctl("queue", "list").stdout
    assert f"{qid}\t" in listing and "\t<alice@example.test>\t" in listing
    assert "\t<u@remote.example>\tpending\t1\t" in listing
    js = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert js[0]["id"] == qid and js[0]["recipients"][0]["state"] == "pending"
    assert js[0]["recipients"][0]["attempts"] == 1 and js[0]["held"] is False
    show = s.ctl("queue", "show", qid).stdout
    assert "Subject: held one" in show and "Received: from" in show
    s.ctl("queue", "hold", qid)
    wait_for(lambda: json.loads(s.ctl("queue", "list", "--json").stdout)[0]["held"], what="hold")
    mx = sinks("127.0.0.2")
    s.ctl("queue", "flush")
    time.sleep(1.5)
    assert mx.messages == [], "a held message is not delivered"
    s.ctl("queue", "release", qid)
    wait_for(lambda: mx.messages, what="release")
    wait_for(lambda: queue_ids(s) == [], what="removed after delivery")
    mx.stop()
    send(s, "alice@example.test", ["v@remote.example"])
    wait_for(lambda: "status=deferred" in s.log().split("v@remote.example", 1)[-1], what="deferral 2")
    [qid2] = queue_ids(s)
    s.ctl("queue", "delete", qid2)
    wait_for(lambda: queue_ids(s) == [], what="delete")
    for args, text in [(("queue", "show", "0000"), "no such message"),
                       (("queue", "hold", "ABCDEF"), "no such message"),
                       (("queue", "show", "../etc"), "bad queue id")]:
        r = s.ctl(*args, check=False)
        assert r.returncode == 1 and text in r.stderr, r.stderr
    s.stop()
    r = s.ctl("queue", "flush", check=False)
    assert r.returncode == 1 and "not running" in r.stderr


def test_hold_and_delete_while_the_attempt_succeeds(make_server, sinks):
    """A queue command that lands while the message is on the wire: the
    attempt's thread removes the finished entry itself (hold), or delete
    removes the files at once and the attempt in flight still finishes;
    the entry, its files and any .env the command wrote meanwhile are all
    gone, once."""
    slow = sinks("127.0.0.2", data_delay=1)
    s = make_server(FAST)
    entries = os.path.join(s.data, "queue", "entries")
    for verb in ("hold", "delete"):
        send(s, "alice@example.test", ["u@remote.example"], f"Subject: {verb}\r\n\r\nx\r\n".encode())
        wait_for(lambda: slow.active == 1, what="delivery in progress")
        [qid] = queue_ids(s)
        s.ctl("queue", verb, qid)
        wait_for(lambda: queue_ids(s) == [], what=f"removed after {verb}")
        wait_for(lambda: os.listdir(entries) == [], what="no files left")
        wait_for(lambda: f"{qid}: to=<u@remote.example>" in s.log(),
                 what="the attempt's result")
        assert s.log().count(f"id={qid} event=removed") == 1
    assert [m["data"].count(b"Subject: ") for m in slow.messages] == [1, 1]
    assert "result=fail" not in s.log()


def test_corrupt_queue_file_is_set_aside(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST, start=False)
    entries = os.path.join(s.data, "queue", "entries")
    os.makedirs(entries, exist_ok=True)
    with open(os.path.join(entries, "00000000DEAD1.env"), "w") as f:
        f.write("postern-queue 1\nid\t00000000DEAD1\nfrom\ta@b.example\narr")
    with open(os.path.join(entries, "00000000DEAD1.msg"), "w") as f:
        f.write("Subject: x\n\nbody\n")
    # A message written by an earlier run that never got an .env: the
    # envelope at its head is enough to deliver it.
    with open(os.path.join(entries, "00000000BEEF1.msg"), "w") as f:
        f.write("postern-queue 1\nid\t00000000BEEF1\nfrom\talice@example.test\n"
                "arrival\t1795846462\nflags\t\n"
                "rcpt\tpending\t0\t0\tleftover@remote.example\t\n\n"
                "Subject: left over\n\nbody\n")
    # An .env whose .msg is gone (a removal cut short) is removed.
    with open(os.path.join(entries, "00000000CAFE1.env"), "w") as f:
        f.write("postern-queue 1\n")
    s.start()
    assert "result=corrupt" in s.log()
    assert os.path.exists(os.path.join(s.data, "queue", "corrupt", "00000000DEAD1.env"))
    assert os.path.exists(os.path.join(s.data, "queue", "corrupt", "00000000DEAD1.msg"))
    assert not os.path.exists(os.path.join(entries, "00000000CAFE1.env"))
    m = wait_for(lambda: [m for m in mx.messages if m["to"] == ["leftover@remote.example"]],
                 what="left-over message")
    assert m[0]["data"].endswith(b"Subject: left over\r\n\r\nbody\r\n")
    send(s, "alice@example.test", ["u@remote.example"])
    wait_for(lambda: mx.messages, what="other mail still flows")


def test_connection_reuse(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST)
    for i in range(3):
        send(s, "alice@example.test", [f"u{i}@remote.example"])
        wait_for(lambda: len(mx.messages) == i + 1, what=f"message {i}")
    assert mx.ehlos == 1, "one connection carried all three messages"


def test_helo_fallback(make_server, sinks):
    mx = sinks("127.0.0.2", mode="noehlo")
    s = make_server(FAST)
    send(s, "alice@example.test", ["u@remote.example"])
    wait_for(lambda: mx.messages, what="delivery over HELO")
    # EHLO was refused (502), then HELO greeted on the same connection.
    assert mx.greetings[:2] == ["EHLO", "HELO"], mx.greetings
    assert mx.greeting_peers[0] == mx.greeting_peers[1], "HELO on a new connection"
    assert not mx.sessions_esmtp[-1], "the message went over plain SMTP"


def test_per_domain_connection_limit(make_server, sinks):
    mx = sinks("127.0.0.2", data_delay=0.5)
    s = make_server(dict(FAST, smtp_max_connections_per_domain="1"))
    for i in range(4):
        send(s, "alice@example.test", [f"u{i}@remote.example"])
    wait_for(lambda: len(mx.messages) == 4, timeout=30, what="all four")
    assert mx.max_active == 1


def test_bounce_waits_out_a_directory_error(make_server, sinks):
    """The directory breaks while a message bounces: the DSN is deferred
    (never sent to the postmaster for that, never dropped), the entry
    stays, and once the database is back the sender gets the bounce."""
    from test_directory import Db
    sinks("127.0.0.2", fail_first=10**6)
    s = make_server(dict(FAST, queue_lifetime="3s"))
    send(s, "alice@example.test", ["u@remote.example"])
    db = Db(s)
    db.garbage_in_place()
    wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
             what="the DSN deferred")
    line = next(l for l in s.log().splitlines() if "event=dsn result=defer" in l)
    assert 'error="directory: ' in line, line
    assert queue_ids(s), "the entry went with the DSN"
    db.restore()
    wait_for(lambda: s.messages("alice"), timeout=30, what="the bounce")
    assert b"Status: 4.4.7" in s.messages("alice")[0]
    assert not s.messages("postmaster")
    assert "event=dsn result=fail" not in s.log()
    wait_for(lambda: not queue_ids(s), what="the entry removed after the DSN")


def test_bounce_waits_out_a_maildir_write_error(make_server, sinks):
    """The sender's Maildir cannot be written when the bounce is stored:
    it is tried again, and arrives once the disk is fixed."""
    sinks("127.0.0.2", fail_first=10**6)
    s = make_server(dict(FAST, queue_lifetime="3s"))
    send(s, "x@remote.example", ["alice@example.test"])
    wait_for(lambda: s.messages("alice"), what="the first message")
    tmp = os.path.join(s.maildir("alice"), "tmp")
    os.chmod(tmp, 0o500)
    try:
        send(s, "alice@example.test", ["u@remote.example"])
        wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
                 what="the DSN deferred")
        assert len(queue_ids(s)) == 1, "the entry went with the DSN"
    finally:
        os.chmod(tmp, 0o700)
    wait_for(lambda: len(s.messages("alice")) == 2, timeout=30, what="the bounce")
    assert "event=dsn result=fail" not in s.log()
    wait_for(lambda: not queue_ids(s), what="the entry removed after the DSN")


class SplitSink(Sink):
    """bad@ is deferred, then refused for good once refuse is set; slow@
    is deferred until accept_slow is set; others are accepted."""
    refuse = False
    accept_slow = False

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("bad@") and self.refuse:
            return "550 5.1.1 <%s>: no such user here" % address
        if address.startswith("bad@") or (address.startswith("slow@") and
                                          not self.accept_slow):
            return "451 4.2.0 try again later"
        return await super().handle_RCPT(server, session, envelope, address,
                                         options)


def bounce_waiting_on_broken_directory(s, sink):
    """Sends alice's message to bad@ and slow@, breaks the directory and
    lets bad@ fail: its DSN is deferred.  Returns the Db to restore."""
    from test_directory import Db
    send(s, "alice@example.test", ["bad@remote.example", "slow@remote.example"])
    wait_for(lambda: "to=<bad@remote.example>" in s.log() and
             "status=deferred" in s.log(), what="the first deferral")
    db = Db(s)
    db.garbage_in_place()
    sink.refuse = True
    wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
             what="the DSN deferred")
    return db


def test_bounce_waiting_on_the_directory_survives_a_restart(make_server, sink_port):
    """A recipient fails for good while the directory is broken, so its
    DSN waits in memory; the daemon is then restarted.  The recipient was
    written to disk as bouncing (its DSN not yet durable), so the new
    daemon sends the bounce without trying the remote again: a restart
    never forgets one."""

    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST))
        db = bounce_waiting_on_broken_directory(s, sink)
        s.stop()
        db.restore()
        before = len(s.log())
        s.start()
        wait_for(lambda: s.messages("alice"), timeout=30, what="the bounce")
        assert b"bad@remote.example" in s.messages("alice")[0]
        assert b"Status: 5.1.1" in s.messages("alice")[0]
        assert b"slow@remote.example" not in s.messages("alice")[0].split(
            b"\n\n", 1)[0]
        assert len(queue_ids(s)) == 1, "slow@ is still pending"
        assert "to=<bad@remote.example>" not in s.log()[before:], \
            "bad@ was tried again after the restart"
    finally:
        sink.stop()


def test_recipient_sent_while_a_dsn_waits_is_not_sent_again_after_restart(
        make_server, sink_port):
    """One recipient bounces while the directory is broken (its DSN
    waits), the other is then delivered: the entry is finished but held
    by the DSN.  Its state still reaches the disk, so after a restart the
    delivered recipient gets nothing twice, and the bounce arrives."""

    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST))
        db = bounce_waiting_on_broken_directory(s, sink)
        sink.accept_slow = True
        wait_for(lambda: any("to=<slow@remote.example>" in l and "status=sent" in l
                             for l in s.log().splitlines()),
                 timeout=30, what="slow@ sent")
        assert len(sink.messages) == 1
        s.stop()
        db.restore()
        s.start()
        wait_for(lambda: s.messages("alice"), timeout=30, what="the bounce")
        wait_for(lambda: not queue_ids(s), timeout=30, what="the entry removed")
        assert len(sink.messages) == 1, "slow@ was sent again after the restart"
    finally:
        sink.stop()


def test_delete_while_a_bounce_waits_on_the_directory(make_server, sink_port):
    """`posternctl queue delete` of a message whose bounce waits out a
    broken directory: the files go at once and the waiting bounce is
    cancelled, so neither a retry nor a restart brings the message or
    its bounce back."""

    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST))
        db = bounce_waiting_on_broken_directory(s, sink)
        [qid] = queue_ids(s)
        s.ctl("queue", "delete", qid)
        wait_for(lambda: f"id={qid} event=removed" in s.log(), what="removed")
        assert queue_ids(s) == []
        assert f'id={qid} event=dsn kind=failure result=cancelled reason="message deleted"' \
            in s.log()
        s.stop()
        db.restore()
        before = len(s.log())
        s.start()
        time.sleep(4)  # a retry of bad@ (1-2 s) would have bounced by now
        assert queue_ids(s) == []
        assert not s.messages("alice"), "the deleted message bounced"
        assert "bad@remote.example" not in s.log()[before:]
    finally:
        sink.stop()


def delay_warning_waiting_on_broken_directory(make_server):
    """alice's message to slow@ is deferred long enough for a delay
    warning, which then waits out a broken directory.  Returns the server
    and the Db to restore."""
    from test_directory import Db
    s = make_server(dict(FAST, queue_delay_warning="1s"))
    send(s, "alice@example.test", ["slow@remote.example"])
    wait_for(lambda: "status=deferred" in s.log(), what="the first deferral")
    db = Db(s)
    db.garbage_in_place()
    wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
             what="the delay DSN deferred")
    return s, db


def test_delay_warning_dropped_when_delivered_meanwhile(make_server, sink_port):
    """A delay warning that waits out a broken directory is not sent
    once every recipient it speaks of was delivered meanwhile."""
    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s, db = delay_warning_waiting_on_broken_directory(make_server)
        sink.accept_slow = True
        wait_for(lambda: 'kind=delay result=cancelled reason="no recipient still pending"'
                 in s.log(), timeout=30, what="the warning dropped")
        assert len(sink.messages) == 1
        db.restore()
        wait_for(lambda: not queue_ids(s), what="the entry removed")
        time.sleep(2)
        assert not s.messages("alice"), "a 'still trying' warning after delivery"
        assert "kind=delay orig=" not in s.log()
    finally:
        sink.stop()


def test_delay_warning_waiting_on_the_directory_survives_a_restart(
        make_server, sink_port):
    """A delay warning waits out a broken directory and the daemon is
    restarted: the entry was not marked warned on disk before the warning
    was stored, so the new daemon sends it (it was lost before)."""
    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s, db = delay_warning_waiting_on_broken_directory(make_server)
        s.stop()
        db.restore()
        s.start()
        [warning] = wait_for(lambda: s.messages("alice"), timeout=30,
                             what="the delay warning after the restart")
        assert b"Action: delayed" in warning
        assert b"Final-Recipient: rfc822; slow@remote.example" in warning
        time.sleep(3)  # later attempts: the warning once
        assert len(s.messages("alice")) == 1
        assert len(queue_ids(s)) == 1, "slow@ is still pending"
    finally:
        sink.stop()


@pytest.mark.parametrize("postmaster_ok", [True, False])
def test_bounce_write_failing_for_good_goes_to_postmaster(make_server, sinks,
                                                          postmaster_ok):
    """The sender's Maildir stays unwritable: queue_lifetime after the
    bounce's first try it goes to the postmaster, once; when that fails
    too, it is given up (result=fail) and the entry released."""
    sinks("127.0.0.2", fail_first=10**6)
    s = make_server(dict(FAST, queue_lifetime="3s"))
    send(s, "x@remote.example", ["alice@example.test"])
    send(s, "x@remote.example", ["postmaster@example.test"])
    wait_for(lambda: s.messages("alice") and s.messages("postmaster"),
             what="the first messages")
    tmps = [os.path.join(s.maildir("alice"), "tmp")]
    if not postmaster_ok:
        tmps.append(os.path.join(s.maildir("postmaster"), "tmp"))
    for t in tmps:
        os.chmod(t, 0o500)
    try:
        send(s, "alice@example.test", ["u@remote.example"])
        wait_for(lambda: "event=dsn result=redirect to=postmaster" in s.log(),
                 timeout=40, what="the bounce sent to the postmaster")
        wait_for(lambda: not queue_ids(s), timeout=20, what="the entry released")
        if postmaster_ok:
            [_, notice] = s.messages("postmaster")
            assert b"Final-Recipient: rfc822; u@remote.example" in notice
            assert "event=dsn result=fail" not in s.log()
        else:
            assert len(s.messages("postmaster")) == 1
            assert "event=dsn result=fail" in s.log()
        assert len(s.messages("alice")) == 1
        assert s.log().count("event=dsn result=redirect") == 1
    finally:
        for t in tmps:
            os.chmod(t, 0o700)


def test_finished_entry_left_by_an_older_version_is_removed_at_load(make_server):
    s = make_server(FAST, start=False)
    entries = os.path.join(s.data, "queue", "entries")
    os.makedirs(entries, exist_ok=True)
    with open(os.path.join(entries, "00000000D0E11.msg"), "w") as f:
        f.write("postern-queue 1\nid\t00000000D0E11\nfrom\talice@example.test\n"
                "arrival\t1795846462\nflags\t\n"
                "rcpt\tpending\t0\t0\tdone@remote.example\t\n\n"
                "Subject: done\n\nbody\n")
    with open(os.path.join(entries, "00000000D0E11.env"), "w") as f:
        f.write("postern-queue 1\nid\t00000000D0E11\nfrom\talice@example.test\n"
                "arrival\t1795846462\nflags\t\n"
                "rcpt\tsent\t1\t0\tdone@remote.example\t\n"
                "rcpt\tfailed\t1\t0\tgone@remote.example\t550 no\n")
    s.start()
    assert os.listdir(entries) == []
    assert 'id=00000000D0E11 event=removed reason="every recipient done at load" ' \
        'nrcpt=2 failed=1' in s.log()
    assert queue_ids(s) == []


def test_delay_warning_names_only_recipients_still_pending(make_server, sink_port):
    """A delay warning about two recipients waits out a broken directory;
    one is delivered meanwhile: the warning that goes out names only the
    other."""
    from test_directory import Db

    sink = SplitSink("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, queue_delay_warning="1s"))
        send(s, "alice@example.test", ["bad@remote.example", "slow@remote.example"])
        wait_for(lambda: "status=deferred" in s.log(), what="the first deferral")
        db = Db(s)
        db.garbage_in_place()
        wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
                 what="the delay DSN deferred")
        sink.accept_slow = True
        sent_line(s, "slow@remote.example")
        db.restore()
        [dsn] = wait_for(lambda: s.messages("alice"), timeout=30, what="the warning")
        m, parts = dsn_of(dsn.split(b"\n", 1)[1])
        status = parts[1].as_string()
        assert "Action: delayed" in status
        assert "Final-Recipient: rfc822; bad@remote.example" in status
        assert "slow@remote.example" not in status
        assert queue_ids(s), "bad@ is still pending"
    finally:
        sink.stop()


class GatedReject(Sink):
    """RCPT is answered 550 only once release is set: the attempt is in
    flight until then.  Counts the RCPTs it saw."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.release = threading.Event()
        self.rcpts = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        import asyncio
        self.rcpts.append(address)
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        return "550 5.1.1 <%s>: no such user here" % address


def test_delete_during_an_attempt_that_fails_sends_no_bounce(make_server, sink_port):
    """`queue delete` while the attempt runs: the files go at once (the
    reply comes after), and when the remote then refuses the recipient
    for good nobody is bounced."""
    sink = GatedReject("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST))
        send(s, "alice@example.test", ["bad@remote.example"])
        wait_for(lambda: sink.rcpts, what="the attempt in flight")
        [qid] = queue_ids(s)
        s.ctl("queue", "delete", qid)
        entries = os.path.join(s.data, "queue", "entries")
        assert [f for f in os.listdir(entries) if f.startswith(qid)] == []
        assert f"id={qid} event=removed" in s.log()
        sink.release.set()
        wait_for(lambda: f'id={qid} event=dsn kind=failure result=cancelled '
                 f'reason="message deleted"' in s.log(), what="the bounce cancelled")
        assert f"orig={qid}" not in s.log()
        assert not s.messages("alice"), "a deleted message bounced"
    finally:
        sink.release.set()
        sink.stop()


class CountingRefuser(Sink):
    """Refuses every recipient 550 and counts the RCPTs."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rcpts = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.rcpts.append(address)
        return "550 5.1.1 <%s>: no such user here" % address


def test_bounce_lifetime_holds_across_restarts(make_server, sink_port):
    """The sender's Maildir stays unwritable and the daemon is restarted
    more often than queue_lifetime: the recipient is on disk as bouncing
    (with its first failure), so no restart gives the refusing MX the
    message again, and the bounce still reaches the postmaster
    queue_lifetime after the failure."""
    sink = CountingRefuser("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, queue_lifetime="3s"))
        send(s, "x@remote.example", ["alice@example.test"])
        wait_for(lambda: s.messages("alice"), what="the first message")
        tmp = os.path.join(s.maildir("alice"), "tmp")
        os.chmod(tmp, 0o500)
        try:
            send(s, "alice@example.test", ["u@remote.example"])
            [qid] = queue_ids(s)
            wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
                     what="the bounce deferred")
            out = s.ctl("queue", "list").stdout
            assert "<u@remote.example>\tbouncing\t1\t550 5.1.1" in out, out
            # Restart as soon as each bounce try failed, for longer than
            # queue_lifetime.
            deadline, restarts = time.time() + 25, 0
            while ("event=dsn result=redirect to=postmaster" not in s.log()
                   and time.time() < deadline):
                restarts += 1
                s.stop()
                before = len(s.log())
                s.start()
                wait_for(lambda: "event=dsn result=" in s.log()[before:],
                         timeout=30, what="the bounce tried after the restart")
            assert "event=dsn result=redirect to=postmaster" in s.log(), \
                "queue_lifetime restarted with the daemon"
            assert restarts >= 2
            wait_for(lambda: qid not in queue_ids(s), timeout=20,
                     what="the entry released")
        finally:
            os.chmod(tmp, 0o700)
        assert sink.rcpts == ["u@remote.example"], "the refusing MX got it again"
        notices = [m for m in s.messages("postmaster")
                   if b"Final-Recipient: rfc822; u@remote.example" in m]
        assert len(notices) == 1
        assert b"Status: 5.1.1" in notices[0]
    finally:
        sink.stop()


def test_flush_retries_a_waiting_bounce(make_server, sinks):
    """A bounce waiting out a Maildir write error (retry in 30 s) goes
    at once on `queue flush`; `queue list` shows its recipient as
    bouncing meanwhile, not pending."""
    sinks("127.0.0.2", mode="rcpt550")
    s = make_server(dict(FAST, queue_retry_min="30s", queue_retry_max="60s"))
    send(s, "x@remote.example", ["alice@example.test"])
    wait_for(lambda: s.messages("alice"), what="the first message")
    tmp = os.path.join(s.maildir("alice"), "tmp")
    os.chmod(tmp, 0o500)
    try:
        send(s, "alice@example.test", ["u@remote.example"])
        wait_for(lambda: "event=dsn result=defer" in s.log(), timeout=30,
                 what="the bounce deferred")
        out = s.ctl("queue", "list").stdout
        assert "<u@remote.example>\tbouncing\t" in out, out
    finally:
        os.chmod(tmp, 0o700)
    s.ctl("queue", "flush")
    wait_for(lambda: len(s.messages("alice")) == 2, timeout=10,
             what="the bounce stored after the flush")
    wait_for(lambda: not queue_ids(s), what="the entry released")


class DeferThenHang(Sink):
    """451 for the first two RCPTs; the third hangs until release is set,
    then gets 451 too: the recipient stays pending meanwhile."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.release = threading.Event()
        self.rcpts = 0

    async def handle_RCPT(self, server, session, envelope, address, options):
        import asyncio
        self.rcpts += 1
        while self.rcpts > 2 and not self.release.is_set():
            await asyncio.sleep(0.05)
        return "451 4.2.0 try again later"


def test_delay_warning_at_expiry_is_dropped_not_redirected(make_server, sink_port):
    """A delay warning whose write keeps failing while its recipient is
    still pending (an attempt hangs) is dropped at queue_lifetime, never
    sent to the postmaster: only the failure bounce that follows goes
    there."""
    sink = DeferThenHang("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, queue_lifetime="3s", queue_delay_warning="1s"))
        send(s, "x@remote.example", ["alice@example.test"])
        wait_for(lambda: s.messages("alice"), what="the first message")
        tmp = os.path.join(s.maildir("alice"), "tmp")
        os.chmod(tmp, 0o500)
        try:
            send(s, "alice@example.test", ["u@remote.example"])
            wait_for(lambda: 'kind=delay result=cancelled reason="delay warning '
                     'expired"' in s.log(), timeout=30, what="the warning dropped")
            assert sink.rcpts == 3 and "status=bounced" not in s.log()
            sink.release.set()
            wait_for(lambda: "event=dsn result=redirect to=postmaster" in s.log(),
                     timeout=30, what="the failure bounce redirected")
            wait_for(lambda: not queue_ids(s), timeout=20, what="the entry released")
        finally:
            os.chmod(tmp, 0o700)
        assert s.log().count("event=dsn result=redirect") == 1
        [notice] = s.messages("postmaster")
        assert b"Action: failed" in notice
    finally:
        sink.release.set()
        sink.stop()


def test_failed_removal_keeps_the_message_and_retries(make_server):
    """queue delete while entries/ cannot be written: the reply says the
    write failed (the first error), the files and the entry are kept (the
    message deleted, not delivered) and the removal is tried again
    (queue_retry_min) until it works: no restart brings it back."""
    s = make_server(dict(FAST, queue_retry_min="1s", queue_retry_max="1s"))
    send(s, "alice@example.test", ["u@down.example"])
    wait_for(lambda: queue_ids(s), what="the message queued")
    [qid] = queue_ids(s)
    entries = os.path.join(s.data, "queue", "entries")
    os.chmod(entries, 0o500)
    try:
        r = s.ctl("queue", "delete", qid, check=False)
        assert r.returncode != 0 and "queue write failed: unlink" in r.stdout + r.stderr, r
        assert ".msg" in r.stdout + r.stderr, "the first failure is the one reported"
        assert os.path.exists(os.path.join(entries, qid + ".msg"))
        wait_for(lambda: s.log().count(f"id={qid} event=queue-write result=fail") >= 2,
                 what="the removal tried again")
    finally:
        os.chmod(entries, 0o700)
    wait_for(lambda: f"id={qid} event=removed" in s.log(), what="the removal done")
    assert not [n for n in os.listdir(entries) if n.startswith(qid)]
    s.stop()
    s.start()
    assert qid not in queue_ids(s)


def test_fifo_in_place_of_a_queued_message(make_server, sinks):
    """A FIFO planted as a deferred message's ID.msg: the next attempt
    fails at once with a local error (the queue's open does not wait for
    a writer), and other mail still goes out."""
    s = make_server(dict(FAST, queue_retry_min="1h", queue_retry_max="1h"))
    send(s, "alice@example.test", ["u@remote.example"])
    wait_for(lambda: "status=deferred" in s.log(), what="deferral")
    [qid] = queue_ids(s)
    path = os.path.join(s.data, "queue", "entries", qid + ".msg")
    os.unlink(path)
    os.mkfifo(path)
    mx = sinks("127.0.0.2")
    s.ctl("queue", "flush")
    wait_for(lambda: "local error: cannot read" in s.log(), timeout=15,
             what="the FIFO refused")
    send(s, "alice@example.test", ["v@remote.example"], b"Subject: next\r\n\r\nx\r\n")
    wait_for(lambda: mx.messages, timeout=15, what="other mail delivered")
    s.check_sanitizers()
