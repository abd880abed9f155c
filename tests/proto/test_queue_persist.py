"""Queue state written by the outbound threads: a reload in the middle
must not pull the config out from under a write (ASan watches), and a
failed write is logged with the writing thread's own reason."""
import os
import re
import signal
import smtplib
import socket

from conftest import wait_for

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
    # an outbound thread, while SIGHUPs swap (and free) the config.
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
        assert control(s, f"queue hold {qid}") == "ok 1 0\n"
        line = wait_for(lambda: re.search(
            rf"id={qid} event=queue-write result=fail error=\"([^\"]*)\"", s.log()),
            what="the failed write")
    finally:
        os.chmod(entries, 0o700)
    assert line.group(1) == f"rename to {entries}/{qid}.env: Permission denied"
    # The entry stays and its next write works again.
    assert control(s, f"queue release {qid}") == "ok 1 0\n"
    wait_for(lambda: os.path.exists(os.path.join(entries, qid + ".env")), what="rewrite")
