"""session_timeout: the core's bound on a whole session (SMTP and POP3),
however busy the client keeps it.  The session ends with the protocol's
reply; a message answered 250 before it is delivered, one in progress is
not, and a POP3 session ends without UPDATE (nothing is deleted)."""
import os
import poplib
import smtplib
import socket
import threading
import time

from conftest import tls_context, wait_for

LIMIT = 2.0  # seconds: session_timeout = 2s


def test_smtp_session_timeout(make_server):
    s = make_server({"session_timeout": "2s"})
    start = time.monotonic()
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.sendmail("x@remote.example", ["bob@example.test"],
               b"Subject: before\r\n\r\nanswered 250\r\n")
    # A second transaction in progress when the limit comes: each
    # command is answered (the idle timeout is not what ends it).
    assert c.mail("x@remote.example")[0] == 250
    assert c.rcpt("bob@example.test")[0] == 250
    while time.monotonic() - start < LIMIT - 0.5:
        assert c.noop()[0] == 250
        time.sleep(0.2)
    code, text = c.getreply()
    elapsed = time.monotonic() - start
    assert code == 421, (code, text)
    assert text.startswith(b"4.4.2 ") and b"session time limit" in text
    assert LIMIT - 0.5 <= elapsed < LIMIT + 3, elapsed
    assert c.sock.recv(100) == b"", "the connection is closed after the 421"
    c.close()
    # Nothing acknowledged is lost, nothing unacknowledged delivered.
    wait_for(lambda: len(s.messages("bob")) == 1, what="the first message")
    time.sleep(0.3)
    assert len(s.messages("bob")) == 1
    assert b"answered 250" in s.messages("bob")[0]
    assert "event=session-timeout" in s.log()


def test_pop3_session_timeout_after_stls(make_server, cert):
    s = make_server({"session_timeout": "2s"})
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        for i in range(2):
            c.sendmail("x@remote.example", ["alice@example.test"],
                       f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    wait_for(lambda: len(s.messages("alice")) == 2, what="two messages")
    start = time.monotonic()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    # The timer is the session's, not the transport's: it survives STLS.
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    assert p.dele(1).startswith(b"+OK")
    while time.monotonic() - start < LIMIT - 0.5:
        assert p.noop().startswith(b"+OK")
        time.sleep(0.2)
    try:
        resp = p._getresp()
    except poplib.error_proto as e:
        resp = e.args[0]
    elapsed = time.monotonic() - start
    assert resp == b"-ERR session time limit exceeded, closing", resp
    assert LIMIT - 0.5 <= elapsed < LIMIT + 3, elapsed
    p.close()
    # No UPDATE: the message marked deleted is still there.
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    assert p.stat()[0] == 2
    p.quit()
    assert "event=session-timeout" in s.log()


USERS = ("alice", "bob", "carol", "postmaster")


def put_big_message(s, user, mb):
    """A message of about mb MB as user's only one, written straight into
    the Maildir (owned like the one delivered there first)."""
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", [f"{user}@example.test"], b"Subject: s\r\n\r\nx\r\n")
    new = os.path.join(s.maildir(user), "new")
    [small] = wait_for(lambda: os.listdir(new), what="the first message")
    st = os.stat(os.path.join(new, small))
    path = os.path.join(new, "1700000000.M1P1.host")
    with open(path, "wb") as f:
        f.write(b"Subject: big\n\n" + (b"x" * 998 + b"\n") * (mb * 1024 * 1024 // 999))
    os.chown(path, st.st_uid, st.st_gid)
    os.unlink(os.path.join(new, small))
    return os.path.getsize(path)


def download_batch(port, user, batch_bytes, out):
    """Logs in, pipelines 64 RETR 1 and reads at most ~32 MB/s until the
    server closes or half the batch has arrived; out[user] = bytes read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"USER {user}@example.test\r\nPASS secret-{user}\r\n".encode())
    f.readline()
    assert f.readline().startswith(b"+OK"), user
    sock.sendall(b"RETR 1\r\n" * 64)
    got, start = 0, time.monotonic()
    try:
        while got < batch_bytes // 2:
            b = f.read1(65536)
            if not b:
                break
            got += len(b)
            ahead = got / (32 << 20) - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    except ConnectionResetError:
        pass
    out[user] = got
    sock.close()


def test_pop3_session_timeout_ends_a_pipelined_download(make_server):
    """A pipelined batch of RETRs is cut at session_timeout whether the
    limit comes while a piece is sent or while the next is read on a
    worker (that one once went on to the batch's last RETR).  Four
    sessions share one storage thread, so each often waits for it."""
    s = make_server({"session_timeout": "2s", "pop3_allow_plaintext": "yes",
                     "workers": "1"})
    size = max(put_big_message(s, u, 8) for u in USERS)
    batch = 64 * size
    out = {}
    threads = [threading.Thread(target=download_batch,
                                args=(s.ports["pop3"], u, batch, out))
               for u in USERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(out) == sorted(USERS), out
    for u, got in out.items():
        # Half the batch takes 8 s at the client's pace: far past 2 s.
        assert got < batch // 2, (u, got, batch)
    wait_for(lambda: s.log().count("event=session-timeout") >= len(USERS),
             what="a session-timeout line for each session")
