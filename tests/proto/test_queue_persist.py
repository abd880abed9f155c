"""Queue state written by the queue's state threads: a reload in the
middle must not pull the config out from under a write (ASan watches), a
failed write is logged with the writing thread's own reason, and the
state reaches the disk at once, never behind an SMTP attempt: a kill -9
right after a bounce or a `queue delete` brings nothing back."""
import asyncio
import os
import re
import signal
import smtplib
import socket

from conftest import Sink, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


def send(server, to):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", to, b"Subject: q\r\n\r\nhello\r\n")


def control(server, line):
    """One command on data_dir/control.sock, as posternctl sends it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(20)
        c.connect(os.path.join(server.data, "control.sock"))
        c.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = c.recv(512)
            if not chunk:
                break
            reply += chunk
    return reply.decode()


def queued_ids(server):
    out = server.ctl("queue", "list").stdout
    return [l.split("\t")[0] for l in out.splitlines() if l and not l.startswith("\t")]


def test_reloads_while_queue_state_is_written(make_server):
    # 12 entries to a host that refuses connections: every release starts
    # an attempt, every hold/release/deferral writes the entry's state on
    # a state thread, while SIGHUPs swap (and free) the config.
    s = make_server(FAST)
    for i in range(12):
        send(s, [f"u{i}@down.example"])
    wait_for(lambda: len(queued_ids(s)) == 12, what="12 queued entries")
    for _ in range(150):
        assert control(s, "queue hold all") == "ok 12 0\n"
        s.proc.send_signal(signal.SIGHUP)
        assert control(s, "queue release all") == "ok 12 0\n"
        s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: s.log().count("event=reload result=ok") >= 10, what="reloads")
    assert control(s, "queue hold all") == "ok 12 0\n"
    assert s.proc.poll() is None, s.log()
    assert "event=queue-write result=fail" not in s.log()
    assert len(queued_ids(s)) == 12
    # At teardown the daemon stops and its log must hold no ASan report.


def test_failed_write_logs_the_threads_reason(make_server):
    # The daemon runs as an unprivileged user (the run user, or this one):
    # a queue/entries it cannot write makes the .env rename fail.
    s = make_server(FAST)
    send(s, ["u@down.example"])
    [qid] = wait_for(lambda: queued_ids(s), what="queued entry")
    wait_for(lambda: "status=deferred" in s.log(), what="deferral")
    entries = os.path.join(s.data, "queue", "entries")
    os.chmod(entries, 0o500)
    try:
        # The reply waits for the write, and says it failed.
        reply = control(s, f"queue hold {qid}")
        line = wait_for(lambda: re.search(
            rf"id={qid} event=queue-write result=fail error=\"([^\"]*)\"", s.log()),
            what="the failed write")
    finally:
        os.chmod(entries, 0o700)
    why = f"rename to {entries}/{qid}.env: Permission denied"
    assert line.group(1) == why
    assert reply == f"error: queue write failed: {why}\n"
    # The entry stays and its next write works again.
    assert control(s, f"queue release {qid}") == "ok 1 0\n"
    wait_for(lambda: os.path.exists(os.path.join(entries, qid + ".env")), what="rewrite")


class HeldPool(Sink):
    """bad@ is refused 550 (after a second, so the next message is
    queued meanwhile); a message to slow@ stays in DATA until release is
    set, holding the only outbound connection."""

    def __init__(self, *a, **kw):
        import threading
        super().__init__(*a, **kw)
        self.release = threading.Event()
        self.rcpts, self.in_slow_data = [], 0

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.rcpts.append(address)
        if address.startswith("bad@"):
            await asyncio.sleep(1)
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("slow@") for r in envelope.rcpt_tos):
            self.in_slow_data += 1
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


def sent_from(server, frm, to):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail(frm, to, b"Subject: q\r\n\r\nhello\r\n")


def entry_files(server, qid):
    entries = os.path.join(server.data, "queue", "entries")
    return sorted(f for f in os.listdir(entries) if f.startswith(qid))


def test_bounce_state_is_durable_while_the_pool_is_busy(make_server, sink_port):
    """bad@ is refused for good and its bounce stored while the only
    outbound connection is taken by a long DATA: the entry's removal
    reaches the disk at once (never queued behind that attempt), so a
    kill -9 then neither retries bad@ at the remote nor bounces it
    twice."""
    sink = HeldPool("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, smtp_max_connections="1"))
        sent_from(s, "alice@example.test", ["bad@remote.example"])
        [first] = queued_ids(s)
        sent_from(s, "bob@example.test", ["slow@remote.example"])
        wait_for(lambda: s.messages("alice"), what="the bounce")
        wait_for(lambda: sink.in_slow_data == 1, what="slow@ in DATA")
        wait_for(lambda: f"id={first} event=removed" in s.log(), timeout=5,
                 what="the bounced entry removed while the pool is busy")
        assert entry_files(s, first) == []
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        sink.release.set()
        s.start()
        wait_for(lambda: sink.messages, timeout=30, what="slow@ delivered")
        assert sink.rcpts.count("bad@remote.example") == 1, sink.rcpts
        assert len(s.messages("alice")) == 1, "the bounce was sent twice"
    finally:
        sink.release.set()
        sink.stop()


def test_delete_and_hold_replies_come_after_the_disk(make_server, sink_port):
    """With the only outbound connection busy, `queue hold` answers once
    the held flag is on disk and `queue delete` once the files are gone:
    a kill -9 right after the reply brings nothing back."""
    sink = HeldPool("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, smtp_max_connections="1"))
        sent_from(s, "bob@example.test", ["slow@remote.example"])
        wait_for(lambda: sink.in_slow_data == 1, what="slow@ in DATA")
        sent_from(s, "alice@example.test", ["other@remote.example"])
        sent_from(s, "alice@example.test", ["third@remote.example"])
        ids = sorted(queued_ids(s))
        assert len(ids) == 3
        gone, held = ids[1], ids[2]
        assert control(s, f"queue hold {held}") == "ok 1 0\n"
        with open(os.path.join(s.data, "queue", "entries", held + ".env")) as f:
            assert "flags\theld," in f.read()
        assert control(s, f"queue delete {gone}") == "ok 1 0\n"
        assert entry_files(s, gone) == []
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s.start()
        left = queued_ids(s)
        assert gone not in left, "deleted message back after kill -9"
        out = s.ctl("queue", "list").stdout
        assert any(l.startswith(held) and l.endswith("\theld") for l in out.splitlines())
    finally:
        sink.release.set()
        sink.stop()


def rcpt_states(server, qid):
    """addr -> state in qid's .env (empty while there is none)."""
    path = os.path.join(server.data, "queue", "entries", qid + ".env")
    try:
        text = open(path).read()
    except FileNotFoundError:
        return {}
    return {f[4]: f[1] for f in (l.split("\t") for l in text.splitlines())
            if f[0] == "rcpt"}


class Refuser(Sink):
    """bad@ is refused for good, others accepted; counts RCPTs."""

    async def handle_RCPT(self, server, session, envelope, address, options):
        self._note("rcpts", address)
        if address.startswith("bad@"):
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"


class GatedData(Sink):
    """DATA hangs until gate is set."""

    def __init__(self, *a, **kw):
        import threading
        self.gate = threading.Event()
        super().__init__(*a, **kw)

    async def handle_DATA(self, server, session, envelope):
        while not self.gate.is_set():
            await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


def test_results_are_written_while_another_attempt_runs(make_server, sink_port):
    """Two domains, two attempts: one (remote.example) delivers ok@ and
    gets bad@ refused while the other (implicit.example) hangs in DATA.
    The first attempt's results reach the disk at once, not when the
    second ends: a kill -9 meanwhile neither delivers ok@ twice nor gives
    the refusing MX bad@ again (its bounce waits on alice's unwritable
    Maildir, so bad@ is bouncing)."""
    fast = Refuser("127.0.0.2", sink_port)
    slow = GatedData("127.0.0.7", sink_port)
    try:
        s = make_server(dict(FAST))
        send(s, ["alice@example.test"])
        wait_for(lambda: s.messages("alice"), what="first")
        tmp = os.path.join(s.maildir("alice"), "tmp")
        os.chmod(tmp, 0o500)
        send(s, ["ok@remote.example", "bad@remote.example", "slow@implicit.example"])
        [qid] = queued_ids(s)
        wait_for(lambda: "to=<bad@remote.example>" in s.log() and
                 "status=bounced" in s.log(), what="bad@ bounced")
        states = wait_for(
            lambda: rcpt_states(s, qid).get("ok@remote.example") == "sent" and
            rcpt_states(s, qid), timeout=10, what="ok@ sent on disk")
        assert states == {"ok@remote.example": "sent", "bad@remote.example": "bouncing",
                          "slow@implicit.example": "pending"}
        s.stop(signal.SIGKILL)
        os.chmod(tmp, 0o700)
        slow.gate.set()
        s.start()
        wait_for(lambda: slow.messages, timeout=30, what="slow@ delivered")
        wait_for(lambda: len(s.messages("alice")) == 2, timeout=30, what="the bounce")
        wait_for(lambda: not queued_ids(s), timeout=30, what="the entry removed")
        assert len(fast.messages) == 1, "ok@ delivered twice"
        assert fast.rcpts.count("bad@remote.example") == 1, "bad@ tried again"
    finally:
        slow.gate.set()
        slow.stop()
        fast.stop()


class TwiceThen550(Sink):
    """451 twice, then 550 for good."""
    n = 0

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.n += 1
        if self.n <= 2:
            return "451 4.2.0 later"
        return "550 5.1.1 <%s>: no such user here" % address


def test_failure_dsn_stored_while_a_delay_warning_waits(make_server, sink_port):
    """u@ is deferred twice (a delay warning goes out, and waits on
    alice's unwritable Maildir), then refused: once the failure DSN is
    stored the recipient is no longer bouncing on disk, though the
    waiting delay warning still holds the message; a kill -9 then does
    not send the failure DSN again."""
    sink = TwiceThen550("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, queue_retry_min="3s", queue_retry_max="60s",
                             queue_delay_warning="1s"))
        send(s, ["alice@example.test"])
        wait_for(lambda: s.messages("alice"), what="first")
        tmp = os.path.join(s.maildir("alice"), "tmp")
        os.chmod(tmp, 0o500)
        send(s, ["u@remote.example"])
        [qid] = queued_ids(s)
        wait_for(lambda: s.log().count("event=dsn result=defer") >= 2, timeout=30,
                 what="the delay warning deferred twice")
        os.chmod(tmp, 0o700)
        wait_for(lambda: any(b"Action: failed" in m for m in s.messages("alice")),
                 timeout=30, what="the failure DSN")
        wait_for(lambda: rcpt_states(s, qid).get("u@remote.example") != "bouncing",
                 timeout=3, what="u@ no longer bouncing on disk")
        s.stop(signal.SIGKILL)
        s.start()
        wait_for(lambda: not queued_ids(s), timeout=60, what="the entry removed")
        failed = [m for m in s.messages("alice") if b"Action: failed" in m]
        assert len(failed) == 1, "the failure DSN was sent twice"
    finally:
        sink.stop()


class SlowRefuser(Sink):
    async def handle_RCPT(self, server, session, envelope, address, options):
        await asyncio.sleep(1)
        return "550 5.1.1 <%s>: no such user here" % address


def test_delete_while_the_bounce_is_composed(make_server, sink_port):
    """u@ is refused while an exclusive SQLite lock holds the directory,
    so the bounce's lookup of alice waits; `queue delete` then: when the
    lock goes the bounce is cancelled, not sent."""
    import sqlite3
    mx = SlowRefuser("127.0.0.2", sink_port)
    try:
        s = make_server(dict(FAST, directory_timeout="8s"))
        send(s, ["u@remote.example"])
        [qid] = queued_ids(s)
        db = sqlite3.connect(os.path.join(s.data, "postern.db"), timeout=1,
                             isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            wait_for(lambda: "status=bounced" in s.log(), timeout=20, what="bounced")
            s.ctl("queue", "delete", qid)
            wait_for(lambda: f"id={qid} event=removed" in s.log(), what="removed")
        finally:
            db.execute("COMMIT")
            db.close()
        wait_for(lambda: f"id={qid} event=dsn kind=failure result=cancelled "
                 f"reason=\"message deleted\"" in s.log() or
                 f"orig={qid}" in s.log() or
                 s.messages("alice"), timeout=20, what="the bounce's end")
        assert not s.messages("alice"), "a deleted message bounced"
        assert f'id={qid} event=dsn kind=failure result=cancelled reason="message deleted"' \
            in s.log()
    finally:
        mx.stop()
