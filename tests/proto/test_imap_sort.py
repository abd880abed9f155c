"""IMAP SORT and THREAD (RFC 5256, RFC 5957 SORT=DISPLAY) against the
real daemon: seven messages delivered over SMTP with chosen headers
(after one that is expunged again, so UIDs are sequence numbers plus
one), sorted by every criterion, with REVERSE and search keys, as UID
SORT; threaded by REFERENCES (a reply tree, a missing parent that
leaves a dummy, a reply joined by subject only) and ORDEREDSUBJECT;
bad criteria, a bad charset and an empty folder."""
import imaplib
import shutil
import smtplib
import threading

import pytest

from conftest import tls_context

IMAP = {"imap_listen": "127.0.0.1:0"}
LOGIN_LOCK = threading.Lock()

# (From, To, Cc, Subject, Date, Message-ID, References, In-Reply-To,
#  body size in kB): message N of the list is sequence number N + 1.
MSGS = [
    ('"Zoe" <zoe@z.example>', "bob@b.example", "carl@c.example",
     "Re: apple", "Mon, 1 Jan 2024 10:00:00 +0000", "<m1@x>", "<m0@x>", None, 5),
    ("adam@a.example", '"Yann" <yann@y.example>', None,
     "banana", "Tue, 2 Jan 2024 10:00:00 +0000", "<m2@x>", None, None, 1),
    ('"Bea" <mike@m.example>', "amy@a.example", None,
     "Re: banana", "Wed, 3 Jan 2024 10:00:00 +0000", "<m3@x>", None, "<m2@x>", 4),
    ("bob@b.example", "zed@z.example", None,
     "Fwd: cherry", "Sat, 30 Dec 2023 10:00:00 +0000", "<m4@x>", "<m2@x> <m3@x>",
     None, 2),
    # no parsable Date: the INTERNALDATE (today) is its sent date
    ("carl@c.example", "carl@c.example", None,
     "apple (fwd)", "yesterday", "<m5@x>", "<m0@x>", None, 7),
    ("dan@d.example", '"Xena" <bob@b.example>', None,
     "cherry", "Fri, 5 Jan 2024 10:00:00 +0000", "<m6@x>", None, None, 3),
    ('"Al" <eve@e.example>', "dan@d.example", None,
     "Re: cherry", "Sat, 6 Jan 2024 10:00:00 +0000", "<m7@x>", None, None, 6),
]


def message(frm, to, cc, subj, date, mid, refs, irt, kb):
    h = [f"From: {frm}", f"To: {to}", f"Subject: {subj}", f"Date: {date}",
         f"Message-ID: {mid}"]
    if cc:
        h.append(f"Cc: {cc}")
    if refs:
        h.append(f"References: {refs}")
    if irt:
        h.append(f"In-Reply-To: {irt}")
    body = ("x" * 99 + "\r\n") * (10 * kb)
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


def imap(server, cert):
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    m.starttls(ssl_context=tls_context(cert))
    with LOGIN_LOCK:
        m.login("alice@example.test", "secret-alice")
    return m


@pytest.fixture(scope="module")
def mbox(tmp_path_factory, cert, dns, sink_port):
    from conftest import new_server
    srv = new_server(tmp_path_factory, cert, IMAP, dns=dns, sink_port=sink_port)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        s.sendmail("x@remote.example", ["alice@example.test"],
                   b"Subject: gone\r\n\r\nexpunged\r\n")
        for msg in MSGS:
            s.sendmail("x@remote.example", ["alice@example.test"], message(*msg))
    m = imap(srv, cert)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"8"], data
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    yield srv
    srv.stop()
    srv.check_sanitizers()
    shutil.rmtree(srv.base, ignore_errors=True)


@pytest.fixture
def m(mbox, cert):
    c = imap(mbox, cert)
    c.select("INBOX")
    yield c
    c.logout()


def test_capability(m):
    caps = m.capability()[1][0].split()
    for c in (b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT",
              b"THREAD=REFERENCES"):
        assert c in caps


@pytest.mark.parametrize("crit,want", [
    ("ARRIVAL", "1 2 3 4 5 6 7"),
    ("DATE", "4 1 2 3 6 7 5"),
    ("REVERSE DATE", "5 7 6 3 2 1 4"),
    ("SUBJECT", "1 5 2 3 4 6 7"),
    ("SUBJECT REVERSE DATE", "5 1 3 2 7 6 4"),
    ("REVERSE SUBJECT DATE", "4 6 7 2 3 1 5"),
    ("FROM", "2 4 5 6 7 3 1"),
    ("TO", "3 1 6 5 7 2 4"),
    ("CC", "2 3 4 5 6 7 1"),
    ("SIZE", "2 4 6 3 1 7 5"),
    ("REVERSE SIZE", "5 7 1 3 6 4 2"),
    ("DISPLAYFROM", "2 7 3 4 5 6 1"),
    ("DISPLAYTO", "3 1 5 7 6 2 4"),
    ("CC SUBJECT", "5 2 3 4 6 7 1"),
])
def test_sort(m, crit, want):
    typ, data = m.sort(f"({crit})", "UTF-8", "ALL")
    assert typ == "OK" and data == [want.encode()], (crit, data)


def test_sort_with_search_keys(m):
    assert m.sort("(DATE)", "UTF-8", "SUBJECT", "banana") == ("OK", [b"2 3"])
    assert m.sort("(REVERSE DATE)", "US-ASCII", "NOT", "SUBJECT", "apple") == \
        ("OK", [b"7 6 3 2 4"])
    assert m.sort("(SUBJECT)", "UTF-8", "2:4") == ("OK", [b"2 3 4"])
    assert m.sort("(SIZE)", "UTF-8", "LARGER", "5000") == ("OK", [b"1 7 5"])


def test_uid_sort_and_thread(m):
    typ, data = m.uid("SORT", "(DATE)", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"5 2 3 4 7 8 6"], data
    typ, data = m.uid("SORT", "(SUBJECT)", "UTF-8", "UID", "3:5")
    assert typ == "OK" and data == [b"3 4 5"], data
    typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"((2)(6))(3 4 5)(7 8)"], data


def test_thread_references(m):
    # 1 and 5 answer the missing <m0@x>: a dummy root holds them; 2 -> 3
    # (In-Reply-To) -> 4 (References); 7 joins 6 by its subject alone
    typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"((1)(5))(2 3 4)(6 7)"], data
    # the search keys pick the messages first: 3's parent is left out
    typ, data = m.thread("REFERENCES", "UTF-8", "3:5")
    assert typ == "OK" and data == [b"(3 4)(5)"], data


def test_thread_orderedsubject(m):
    typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"(4 (6)(7))(1 5)(2 3)"], data


@pytest.mark.parametrize("cmd", [
    "SORT (BOGUS) UTF-8 ALL", "SORT DATE UTF-8 ALL", "SORT () UTF-8 ALL",
    "SORT (DATE)", "SORT (REVERSE) UTF-8 ALL", "SORT (DATE) UTF-8 BOGUS",
    "THREAD BOGUS UTF-8 ALL", "THREAD REFERENCES", "UID THREAD",
    "SORT RETURN (MIN) (DATE) UTF-8 ALL",
])
def test_bad(m, cmd):
    line = raw(m, cmd)[-1]
    assert line.startswith("BAD", line.index(" ") + 1), (cmd, line)


def test_bad_charset(m):
    for cmd in ("SORT (DATE) KOI8-R ALL", "THREAD REFERENCES KOI8-R ALL"):
        lines = raw(m, cmd)
        assert len(lines) == 1 and " NO [BADCHARSET" in lines[0], lines


def raw(c, cmd):
    """cmd sent as it is (imaplib checks states and quotes arguments);
    the reply's lines, the tagged one last."""
    tag = c._new_tag().decode()
    c.send(f"{tag} {cmd}\r\n".encode())
    lines = []
    while True:
        line = c.readline().decode().rstrip("\r\n")
        lines.append(line)
        if line.startswith(tag + " "):
            return lines


def test_not_selected(mbox, cert):
    c = imap(mbox, cert)
    for cmd in ("SORT (DATE) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL"):
        lines = raw(c, cmd)
        assert len(lines) == 1 and " BAD " in lines[0], lines
    c.logout()


def test_empty_folder(mbox, cert):
    c = imap(mbox, cert)
    c.create("Empty")
    assert c.select("Empty")[0] == "OK"
    for cmd, word in (("SORT (DATE) UTF-8 ALL", "SORT"),
                      ("THREAD REFERENCES UTF-8 ALL", "THREAD"),
                      ("THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD"),
                      ("UID SORT (SUBJECT) UTF-8 ALL", "SORT")):
        lines = raw(c, cmd)
        assert lines[0] == f"* {word}" and " OK " in lines[-1], lines
    c.logout()
