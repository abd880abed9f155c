"""Nothing acknowledged is lost, nothing partial is delivered: kill -9
right after a 250, kill -9 under concurrent load, clients vanishing in
DATA, and delivery failures that must leave no copy anywhere."""
import os
import signal
import smtplib
import threading
import time

from conftest import Raw, wait_for


def test_kill9_right_after_250(make_server):
    s = make_server()
    r = Raw(s.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("RCPT TO:<bob@example.test>")
    r.cmd("DATA")
    r.send("Subject: durable\r\n\r\nmust survive\r\n.\r\n")
    assert r.reply().startswith("250 2.0.0")
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    for u in ("alice", "bob"):
        [msg] = s.messages(u)
        assert msg.endswith(b"Subject: durable\n\nmust survive\n")
    # A new daemon starts on the same data_dir and keeps delivering.
    s.start()
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["alice@example.test"], b"Subject: again\r\n\r\nx\r\n")
    assert len(s.messages("alice")) == 2


def test_kill9_under_load_loses_no_acknowledged_message(make_server):
    s = make_server()
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            subject = f"load-{n}-{i}"
            try:
                with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=10) as c:
                    c.sendmail("x@remote.example", ["alice@example.test", "carol@example.test"],
                               f"Subject: {subject}\r\n\r\nbody {subject}\r\n")
                with lock:
                    acked.append(subject)
            except (OSError, smtplib.SMTPException):
                return
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    s.proc.send_signal(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(30)
    s.proc.wait()
    assert len(acked) > 10, "load generator made too little progress"
    for user in ("alice", "carol"):
        msgs = s.messages(user)
        subjects = set()
        for m in msgs:
            head, body = m.split(b"\n\n", 1)
            subj = [l for l in head.split(b"\n") if l.startswith(b"Subject: ")][0][9:].decode()
            assert body == f"body {subj}\n".encode(), "partial message in new/"
            subjects.add(subj)
        missing = set(acked) - subjects
        assert not missing, f"{len(missing)} acknowledged messages lost for {user}"


def test_disconnect_mid_data_is_logged_and_the_next_message_delivered_once(server):
    """Nothing of a message is written before its end of data (the DATA
    spool is memory or an unlinked file), so a client that vanishes in
    DATA leaves no file to look for.  What is observable: one
    event=lost-in-data line for that session, and a transaction on a new
    connection that delivers exactly one copy, not the cut one."""
    def lost_lines():
        return [l for l in server.log().splitlines() if "event=lost-in-data" in l]

    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    r.send("Subject: cut\r\n\r\nhalf a message\r\n")
    r.close()
    [line] = wait_for(lost_lines, what="event=lost-in-data")
    assert "client=127.0.0.1" in line and " id=" in line, line
    # A new connection: one transaction, one copy, and only that one.
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["alice@example.test"],
                   b"Subject: after the cut\r\n\r\nwhole\r\n")
    [msg] = server.messages("alice")
    assert b"Subject: after the cut" in msg and b"half a message" not in msg
    time.sleep(0.5)  # a second copy (or the cut one) would show by now
    assert len(server.messages("alice")) == 1
    assert not any(b"half a message" in open(f, "rb").read()
                   for f in server.all_files())
    assert len(lost_lines()) == 1
    assert server.log().count("event=accepted") == 1


def test_failed_delivery_leaves_no_copy(server):
    # carol's Maildir cannot be written: the whole message fails with 451
    # and bob, listed first, keeps no copy either.
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["bob@example.test", "carol@example.test"],
                   b"Subject: warm-up\r\n\r\nx\r\n")
    before = sorted(server.all_files())
    os.chmod(os.path.join(server.maildir("carol"), "tmp"), 0o500)
    r = Raw(server.ports["smtp"])
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<bob@example.test>")
    r.cmd("RCPT TO:<carol@example.test>")
    r.cmd("DATA")
    rep = r.cmd("Subject: fail\r\n\r\nx\r\n.")
    assert rep.startswith("451 4.3.0"), rep
    assert sorted(server.all_files()) == before
    assert "event=data result=tempfail code=451" in server.log()
    # The session goes on and other mail still flows.
    r.cmd("MAIL FROM:<x@remote.example>")
    r.cmd("RCPT TO:<bob@example.test>")
    r.cmd("DATA")
    assert r.cmd("Subject: ok\r\n\r\nx\r\n.").startswith("250"), server.log()
    assert len(server.messages("bob")) == 2
    os.chmod(os.path.join(server.maildir("carol"), "tmp"), 0o700)
