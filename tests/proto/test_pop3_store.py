"""POP3 on the mailbox store, beside IMAP on the same INBOX (one folder
object, one job queue): what one protocol does the other sees, and what
one does under the other's feet never loses or wrongly serves mail.
poplib and imaplib (and a raw IMAP socket for IDLE) against the real
daemon."""
import imaplib
import os
import poplib
import re
import time

from conftest import tls_context
from test_imap import IMAP, LOGIN_LOCK, RawImap, deliver, imap


def pop(server, cert, user="alice@example.test", pw="secret-alice"):
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    with LOGIN_LOCK:
        p.user(user)
        p.pass_(pw)
    return p


def deliver_bodies(server, bodies, to="alice@example.test"):
    for b in bodies:
        deliver(server, to=to, body=b)


def flags_by_subject(m):
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    out = {}
    for i in range(0, len(data), 2):
        meta, hdr = data[i]
        subject = hdr.decode().strip().split(": ", 1)[1]
        out[subject] = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
    return out


def test_retr_marks_seen_top_does_not(make_server, cert):
    """RETR'd messages are \\Seen for IMAP after QUIT (as Dovecot's POP3
    does); TOP does not mark; a RETR'd and deleted one is just gone; a
    session that ends without QUIT marks nothing."""
    s = make_server(IMAP)
    deliver_bodies(s, [f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode() for i in range(4)])
    p = pop(s, cert)
    p.retr(1)
    p.top(2, 0)
    p.retr(3)
    p.dele(3)
    p.quit()
    m = imap(s, cert)
    got = flags_by_subject(m)
    assert set(got) == {"m0", "m1", "m3"}, got
    assert "\\Seen" in got["m0"]
    assert "\\Seen" not in got["m1"]
    assert "\\Seen" not in got["m3"]
    m.logout()
    # No QUIT: no UPDATE, nothing marked.
    p = pop(s, cert)
    p.retr(3)  # m3 is now message 3 of three
    p.sock.close()
    time.sleep(0.5)
    m = imap(s, cert)
    assert "\\Seen" not in flags_by_subject(m)["m3"]
    m.logout()


def test_pop3_delete_reaches_idling_imap_at_once(make_server, cert):
    """A POP3 UPDATE is a job on the folder IMAP has open: the idling
    session gets EXPUNGE from the job's end, not from a rescan (the
    fallback poll is 10 minutes), and the file is gone."""
    s = make_server(dict(IMAP, imap_idle_poll="10m"))
    deliver(s, n=3)
    r = RawImap(s.ports["imaps"], tls_context(cert))
    with LOGIN_LOCK:
        r.send("a LOGIN alice@example.test secret-alice\r\n")
        assert r.until("a")[-1].startswith("a OK")
    r.send("b SELECT INBOX\r\nc IDLE\r\n")
    r.until("b")
    assert r.line().startswith("+ ")
    p = pop(s, cert)
    p.dele(2)
    t0 = time.time()
    p.quit()
    r.sock.settimeout(20)
    assert r.line() == "* 2 EXPUNGE"
    assert time.time() - t0 < 1.5
    r.send("DONE\r\n")
    assert r.until("c")[-1].startswith("c OK")
    cur = os.listdir(os.path.join(s.maildir("alice"), "cur"))
    assert len(cur) == 2, cur


def test_imap_expunge_during_pop3_session(make_server, cert):
    """IMAP expunges a message a POP3 session has listed: the POP3 listing
    stays the login's snapshot, RETR of the gone one answers -ERR, the
    others still read, DELE of it and QUIT succeed, nothing else goes."""
    s = make_server(IMAP)
    deliver_bodies(s, [f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode() for i in range(3)])
    p = pop(s, cert)
    assert p.stat()[0] == 3
    m = imap(s, cert)
    m.select("INBOX")
    m.store("2", "+FLAGS", "\\Deleted")
    m.expunge()
    try:
        p.retr(2)
        raise AssertionError("RETR of an expunged message succeeded")
    except poplib.error_proto as e:
        assert b"deleted by another session" in e.args[0], e
    assert b"body 0" in b"\r\n".join(p.retr(1)[1])
    assert b"body 2" in b"\r\n".join(p.retr(3)[1])
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    typ, data = m.search(None, "ALL")
    assert data[0].split() == [b"1", b"2"]
    m.logout()
    assert len(os.listdir(os.path.join(s.maildir("alice"), "cur"))) == 2


def test_imap_flag_change_during_pop3_session(make_server, cert):
    """IMAP sets a flag (the file is renamed) after POP3 listed it: RETR
    finds it under its new name and sends the same bytes; LIST's size
    and UIDL are unchanged by the rename."""
    s = make_server(IMAP)
    deliver(s, body=b"Subject: one\r\n\r\n.leading dot\r\nline\r\n")
    p = pop(s, cert)
    size = p.list(1).split()[2]
    uidl = p.uidl(1).split()[2]
    before = p.retr(1)[1]
    m = imap(s, cert)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged $Label1)")
    assert p.retr(1)[1] == before
    assert b".leading dot" in before  # poplib undoes the dot-stuffing
    p.quit()
    p = pop(s, cert)
    assert p.list(1).split()[2] == size
    assert p.uidl(1).split()[2] == uidl
    p.quit()
    m.logout()


def test_uidl_is_the_maildir_unique_name(make_server, cert):
    """UIDLs are the Maildir unique names, as before the store: a client
    that leaves mail on the server does not fetch it all again after an
    upgrade; they stay the same after IMAP moves the file from new/ to
    cur/ and sets flags."""
    s = make_server(IMAP)
    deliver(s, n=2)
    names = sorted(os.listdir(os.path.join(s.maildir("alice"), "new")))
    want = [n.split(":")[0].split(",")[0] for n in names]
    p = pop(s, cert)
    got = [l.split()[1].decode() for l in p.uidl()[1]]
    p.quit()
    assert sorted(got) == sorted(want)
    m = imap(s, cert)
    m.select("INBOX")
    m.store("1:*", "+FLAGS", "\\Answered")
    m.logout()
    p = pop(s, cert)
    assert [l.split()[1].decode() for l in p.uidl()[1]] == got
    p.quit()


def test_pop3_listing_is_a_snapshot_imap_append_shows_next_time(make_server, cert):
    """Mail that arrives during a POP3 session (IMAP APPEND, SMTP) is not
    in that session's listing (RFC 1939); the next session lists it;
    IMAP and POP3 agree on the sizes (RFC822.SIZE == LIST)."""
    s = make_server(IMAP)
    deliver(s, n=1)
    p = pop(s, cert)
    m = imap(s, cert)
    msg = b"Subject: appended\r\n\r\nbare\nlf\r\n"
    assert m.append("INBOX", None, None, msg)[0] == "OK"
    deliver(s, n=1)
    assert p.stat()[0] == 1
    p.quit()
    p = pop(s, cert)
    assert p.stat()[0] == 3
    sizes = [int(l.split()[1]) for l in p.list()[1]]
    p.quit()
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(RFC822.SIZE)")
    imap_sizes = [int(re.search(rb"RFC822.SIZE (\d+)", d).group(1)) for d in data]
    assert sizes == imap_sizes
    m.logout()


def test_second_pop3_session_in_use_imap_unaffected(make_server, cert):
    """One POP3 session per maildrop ([IN-USE]); IMAP sessions on the same
    INBOX are not locked out by it, and the lock goes with the session."""
    s = make_server(IMAP)
    deliver(s, n=1)
    p = pop(s, cert)
    p2 = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=20)
    p2.stls(context=tls_context(cert))
    p2.user("alice@example.test")
    try:
        with LOGIN_LOCK:
            p2.pass_("secret-alice")
        raise AssertionError("a second POP3 session got the maildrop")
    except poplib.error_proto as e:
        assert b"[IN-USE]" in e.args[0]
    m = imap(s, cert)
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    p.quit()
    p2 = pop(s, cert)
    assert p2.stat()[0] == 1
    p2.quit()


def test_pop3_login_makes_a_store_for_a_new_user(make_server, cert):
    """A user's first login is by POP3, before any mail: the maildrop is
    empty, and the store made the special-use folders IMAP then shows."""
    s = make_server(IMAP)
    p = pop(s, cert, "bob@example.test", "secret-bob")
    assert p.stat() == (0, 0)
    p.quit()
    m = imap(s, cert, "bob@example.test", "secret-bob")
    typ, data = m.list()
    names = b" ".join(data)
    for use in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert use in names, data
    m.logout()
