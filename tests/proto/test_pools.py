"""The worker pools are separate (issue 11): a slow directory does not
delay DATA, a slow disk does not delay RCPT.  Each test holds one pool
deterministically: the directory by an exclusive lock on its database,
the storage pool (one thread) by a reload that waits on a certificate
file which is a FIFO nobody writes yet (conftest.fifo_cert)."""
import os
import signal
import sqlite3
import time

from conftest import Raw, wait_for


def start_txn(port, rcpt="alice@example.test"):
    c = Raw(port)
    assert c.cmd("EHLO a").startswith("250")
    assert c.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert c.cmd(f"RCPT TO:<{rcpt}>").startswith("250")
    return c


def test_slow_directory_does_not_delay_data(make_server):
    """One directory thread waits on a locked database (a RCPT lookup);
    a message whose recipients were accepted before is still delivered
    at once: deliveries run on the storage pool."""
    server = make_server({"dir_workers": "1", "workers": "1"})
    a = start_txn(server.ports["smtp"])
    assert a.cmd("DATA").startswith("354")
    db = sqlite3.connect(os.path.join(server.data, "postern.db"),
                         isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        b = Raw(server.ports["smtp"])
        assert b.cmd("EHLO b").startswith("250")
        assert b.cmd("MAIL FROM:<y@remote.example>").startswith("250")
        b.send("RCPT TO:<bob@example.test>\r\n")  # waits on the lock
        time.sleep(0.5)
        t0 = time.time()
        assert a.cmd("Subject: on time\r\n\r\nbody\r\n.").startswith("250")
        assert time.time() - t0 < 3.0
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert b.reply().startswith("250")
    assert len(server.messages("alice")) == 1


def test_slow_disk_does_not_delay_rcpt(make_server, fifo_cert):
    """The one storage thread is held (a reload waiting on a FIFO); RCPT
    lookups are answered meanwhile, and the delivery queued behind the
    reload completes once it ends."""
    server = make_server(dict(fifo_cert.paths, workers="1"))
    a = start_txn(server.ports["smtp"])
    assert a.cmd("DATA").startswith("354")
    fifo_cert.block()
    server.proc.send_signal(signal.SIGHUP)
    try:
        time.sleep(0.5)
        a.send(b"Subject: queued\r\n\r\nbody\r\n.\r\n")  # behind the reload
        t0 = time.time()
        b = start_txn(server.ports["smtp"], "bob@example.test")
        assert time.time() - t0 < 3.0
        assert b.cmd("QUIT").startswith("221")
    finally:
        fifo_cert.release()
    a.sock.settimeout(10)
    assert a.reply().startswith("250")
    wait_for(lambda: "event=reload result=ok" in server.log(), what="reload")
    assert len(server.messages("alice")) == 1


def test_sigterm_with_a_delivery_held_in_a_pool(make_server, fifo_cert):
    """SIGTERM while a delivery waits in the storage pool past
    shutdown_timeout and the grace: posternd exits 0 without freeing what
    the job will touch (architecture.md, "Shutdown order"), and nothing
    was acknowledged.  Before, the loop ended at the grace, the queue and
    the committer were freed, and workers_free waited for the job: once
    it ran, the delivery used the freed committer (ASan)."""
    server = make_server(dict(fifo_cert.paths, workers="1",
                              shutdown_timeout="1s"))
    a = start_txn(server.ports["smtp"])
    assert a.cmd("DATA").startswith("354")
    fifo_cert.block()
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    a.send(b"Subject: held\r\n\r\nbody\r\n.\r\n")  # behind the reload
    time.sleep(0.5)
    t0 = time.time()
    server.proc.send_signal(signal.SIGTERM)
    # Past shutdown_timeout (1 s), the grace (2 s) and the deadline's
    # slack: the old order was freeing by now, waiting for the job.
    time.sleep(6)
    fifo_cert.release(wait=0)  # lets the job run, if anyone still waits
    assert server.proc.wait(30) == 0
    assert time.time() - t0 < 20
    assert "event=stop result=abandoned-attempts" in server.log()
    server.check_sanitizers()
    assert not a.buf.startswith(b"250"), "acknowledged, then abandoned"
    assert len(server.messages("alice")) == 0
