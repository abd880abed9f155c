"""Outbound attempts and the queue file: the RFC 1870 size is recorded in
the entry when it is written (one read of the file per attempt, not two)
and is exactly what is sent; an entry written without it is counted; a
queue file that cannot be read fails the attempt locally (deferred, no
other host tried) instead of counting against the host."""
import os
import re
import smtplib

from conftest import Sink, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


class SizeSink(Sink):
    """A capture server that also records the MAIL parameters."""

    async def handle_DATA(self, server, session, envelope):
        r = await super().handle_DATA(server, session, envelope)
        self.messages[-1]["mail_options"] = list(envelope.mail_options)
        return r


def declared_size(m):
    sizes = [o for o in m["mail_options"] if o.upper().startswith("SIZE=")]
    assert len(sizes) == 1, m["mail_options"]
    return int(sizes[0][5:])


def send(server, to, body):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", to, body)


def test_recorded_size_is_what_is_sent(make_server, sink_port):
    mx = SizeSink("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, message_size_limit="10M"))
        bodies = [
            b"Subject: small\r\n\r\nline\r\n.dot\r\n..two\r\n",
            b"Subject: bare\n\nLF only\nlines\n",  # normalized: counted as CRLF
            # Past the 256 KiB spool threshold: spooled, then copied.
            b"Subject: big\r\n\r\n" + b"".join(
                (b"." * (1 + i % 77) + b"x" * (i % 50) + b"\r\n") for i in range(9000)),
        ]
        for i, body in enumerate(bodies):
            send(s, [f"u{i}@remote.example"], body)
        wait_for(lambda: len(mx.messages) == len(bodies), what="deliveries")
        for m in mx.messages:
            assert declared_size(m) == len(m["data"]), (m["to"], declared_size(m),
                                                        len(m["data"]))
    finally:
        mx.stop()


def test_size_line_in_the_entry(make_server):
    """The entry records the size of its message as relayed: the message
    part of ID.msg with every LF counted as CRLF."""
    s = make_server(dict(FAST, queue_retry_min="1h", queue_retry_max="2h"))
    send(s, ["u@down.example"], b"Subject: kept\r\n\r\none\r\ntwo\r\n")
    entries = os.path.join(s.data, "queue", "entries")
    [name] = wait_for(lambda: [n for n in os.listdir(entries) if n.endswith(".msg")],
                      what="queue entry")
    text = open(os.path.join(entries, name), "rb").read()
    head, body = text.split(b"\n\n", 1)
    m = re.search(rb"^size\t(\d+)$", head, re.M)
    assert m, head
    assert int(m.group(1)) == len(body) + body.count(b"\n"), (m.group(1), body)


def test_entry_without_size_is_counted(make_server, sink_port):
    """An entry written before the size line existed: the attempt counts
    the size itself."""
    mx = SizeSink("127.0.0.2", sink_port)
    try:
        s = make_server(FAST, start=False)
        entries = os.path.join(s.data, "queue", "entries")
        os.makedirs(entries, exist_ok=True)
        with open(os.path.join(entries, "00000000BEEF2.msg"), "w") as f:
            f.write("postern-queue 1\nid\t00000000BEEF2\nfrom\talice@example.test\n"
                    "arrival\t1795846462\nflags\t\n"
                    "rcpt\tpending\t0\t0\told@remote.example\t\n\n"
                    "Subject: old entry\n\n.dot\nbody\n")
        s.start()
        [m] = wait_for(lambda: mx.messages, what="old entry delivered")
        assert m["data"] == b"Subject: old entry\r\n\r\n.dot\r\nbody\r\n"
        assert declared_size(m) == len(m["data"])
    finally:
        mx.stop()


def test_unreadable_queue_file_is_a_local_deferral(make_server, sink_port):
    """The queue file cannot be read during an attempt: the attempt is
    deferred as a local error and no further host is tried (it used to
    count as the host's failure and move on to the next MX)."""
    s = make_server(dict(FAST, queue_retry_min="1h", queue_retry_max="2h"))
    send(s, ["u@tempmx.example"], b"Subject: x\r\n\r\nbody\r\n")
    # Nothing listens yet: the first attempt finds no host and defers.
    wait_for(lambda: "status=deferred" in s.log(), what="first attempt deferred")
    entries = os.path.join(s.data, "queue", "entries")
    [name] = [n for n in os.listdir(entries) if n.endswith(".msg")]
    path = os.path.join(entries, name)
    os.rename(path, path + ".away")
    os.mkdir(path)  # stat and open work; every read fails (EISDIR)
    mx1, mx2 = Sink("127.0.0.5", sink_port), Sink("127.0.0.6", sink_port)
    try:
        s.ctl("queue", "flush")
        log = wait_for(lambda: "result=local-error" in s.log() and s.log(),
                       what="local error")
        assert re.search(r"event=attempt result=local-error error=\"local error: cannot "
                         r"read .*Is a directory\"", log), log
        line = wait_for(lambda: [l for l in s.log().splitlines()
                                 if "status=deferred (local error" in l],
                        what="deferred as local")[0]
        assert "relay=none" in line and "dsn=4.3.0" in line, line
        # The file is checked (a regular file) before any host is tried.
        assert mx1.ehlos <= 1 and mx1.messages == [], "nothing was sent"
        assert mx2.ehlos == 0, "no other host after a local error"
    finally:
        mx1.stop()
        mx2.stop()
        os.rmdir(path)
        os.rename(path + ".away", path)


def test_implausible_recorded_size_is_counted(make_server, sink_port):
    """A size line the message file cannot hold (damaged or planted) is not
    trusted: the attempt counts the size from the file, so a SIZE-limited
    peer (aiosmtpd advertises SIZE 33554432) gets the message instead of
    postern bouncing it with 552 against the recorded number."""
    mx = SizeSink("127.0.0.2", sink_port)
    try:
        s = make_server(FAST, start=False)
        entries = os.path.join(s.data, "queue", "entries")
        os.makedirs(entries, exist_ok=True)
        for name, size in (("00000000BEEF3", 99999999999), ("00000000BEEF4", 3)):
            with open(os.path.join(entries, name + ".msg"), "w") as f:
                f.write(f"postern-queue 1\nid\t{name}\nfrom\talice@example.test\n"
                        f"arrival\t1795846462\nflags\t\nsize\t{size}\n"
                        f"rcpt\tpending\t0\t0\t{name}@remote.example\t\n\n"
                        "Subject: planted\n\nbody\n")
        s.start()
        msgs = wait_for(lambda: len(mx.messages) == 2 and mx.messages,
                        what="both entries delivered")
        for m in msgs:
            assert m["data"] == b"Subject: planted\r\n\r\nbody\r\n"
            assert declared_size(m) == len(m["data"]), m["mail_options"]
        assert "552" not in s.log() and "bounced" not in s.log(), s.log()
    finally:
        mx.stop()
