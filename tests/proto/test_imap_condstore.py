"""CONDSTORE and QRESYNC (RFC 7162) against the real daemon, in raw IMAP
dialogues: ENABLE, MODSEQ in FETCH, CHANGEDSINCE, STORE UNCHANGEDSINCE and
[MODIFIED], SEARCH MODSEQ, STATUS HIGHESTMODSEQ, another session's flag
change carrying UID and MODSEQ, VANISHED instead of EXPUNGE, SELECT
(QRESYNC ...) with and without known UIDs, a wrong UIDVALIDITY, UID FETCH
(CHANGEDSINCE n VANISHED), and a history older than the index keeps."""
import re

from conftest import tls_context
from test_imap import IMAP, LOGIN_LOCK, RawImap, deliver


def login(srv, cert, user="alice"):
    r = RawImap(srv.ports["imaps"], tls_context(cert))
    r.sock.settimeout(20)
    with LOGIN_LOCK:
        r.send(f"a LOGIN {user}@example.test secret-{user}\r\n")
        assert r.until("a")[-1].startswith("a OK")
    return r


def cmd(r, tag, text):
    r.send(f"{tag} {text}\r\n")
    lines = unrecent(r.until(tag))
    return lines[:-1], lines[-1]


def code(lines, name):
    for l in lines:
        m = re.search(r"\[%s (\d+)\]" % name, l)
        if m:
            return int(m[1])
    raise AssertionError(f"no {name} in {lines}")


def unrecent(lines):
    """The lines without \\Recent (the first session told of new mail
    sees it; what is tested here is the rest)."""
    return [l.replace(" \\Recent", "").replace("(\\Recent)", "()") for l in lines
            if not re.match(r"\* \d+ RECENT$", l)]


def modseq_of(line):
    return int(re.search(r"MODSEQ \((\d+)\)", line)[1])


def test_capability_and_enable(make_server, cert):
    srv = make_server(IMAP)
    r = login(srv, cert)
    lines, _ = cmd(r, "b", "CAPABILITY")
    caps = lines[0].split()
    assert "CONDSTORE" in caps and "QRESYNC" in caps, lines
    lines, tagged = cmd(r, "c", "ENABLE CONDSTORE")
    assert lines == ["* ENABLED CONDSTORE"] and tagged.startswith("c OK")
    lines, _ = cmd(r, "d", "ENABLE CONDSTORE QRESYNC")
    assert lines == ["* ENABLED QRESYNC"], lines  # CONDSTORE already on
    # SELECT (QRESYNC ...) needs ENABLE QRESYNC first (RFC 7162 3.2.5).
    r2 = login(srv, cert)
    _, tagged = cmd(r2, "e", "SELECT INBOX (QRESYNC (1 1))")
    assert tagged.startswith("e BAD"), tagged
    _, tagged = cmd(r2, "f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert tagged.startswith("f BAD"), tagged


def test_modseq_changedsince_unchangedsince(make_server, cert):
    srv = make_server(IMAP)
    deliver(srv, n=3)
    r = login(srv, cert)
    lines, tagged = cmd(r, "b", "SELECT INBOX (CONDSTORE)")
    assert tagged.startswith("b OK [READ-WRITE]")
    h0 = code(lines, "HIGHESTMODSEQ")
    # Nothing changed since: CHANGEDSINCE gives nothing.
    lines, tagged = cmd(r, "c", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
    assert lines == [] and tagged.startswith("c OK"), lines
    # The MODSEQ item.
    lines, _ = cmd(r, "d", "FETCH 1:3 (MODSEQ)")
    assert len(lines) == 3 and all(modseq_of(l) <= h0 for l in lines), lines
    # A STORE: its FETCH carries UID and the new MODSEQ (CONDSTORE is on).
    lines, _ = cmd(r, "e", "STORE 2 +FLAGS (\\Seen)")
    assert len(lines) == 1 and lines[0].startswith("* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ("), lines
    m2 = modseq_of(lines[0])
    assert m2 > h0
    lines, _ = cmd(r, "f", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
    assert len(lines) == 1 and lines[0].startswith("* 2 FETCH ("), lines
    assert f"MODSEQ ({m2})" in lines[0]  # CHANGEDSINCE implies MODSEQ
    # UNCHANGEDSINCE: message 2 changed after h0, so it is refused and
    # named in [MODIFIED] (UIDs for UID STORE); 1 and 3 are stored.
    lines, tagged = cmd(r, "g", f"UID STORE 1:3 (UNCHANGEDSINCE {h0}) +FLAGS (\\Flagged)")
    assert tagged.startswith("g OK [MODIFIED 2]"), tagged
    assert [l.split()[1] for l in lines] == ["1", "3"], lines
    lines, _ = cmd(r, "h", "FETCH 2 (FLAGS)")
    assert "\\Flagged" not in lines[0], lines
    # .SILENT with CONDSTORE still gives the new MODSEQ (RFC 7162 3.1.3).
    lines, tagged = cmd(r, "i", "STORE 3 -FLAGS.SILENT (\\Flagged)")
    assert len(lines) == 1 and re.match(r"\* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)$", lines[0]), lines
    # UNCHANGEDSINCE 0 never holds.
    lines, tagged = cmd(r, "j", "STORE 1,3 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)")
    assert tagged.startswith("j OK [MODIFIED 1,3]"), tagged
    # SEARCH MODSEQ names the highest MODSEQ of what it found.
    lines, _ = cmd(r, "k", f"SEARCH MODSEQ {m2}")
    m = re.match(r"\* SEARCH ((?:\d+ ?)+) \(MODSEQ (\d+)\)$", lines[0])
    assert m, lines
    found = [int(x) for x in m[1].split()]
    assert 2 in found and int(m[2]) >= m2
    lines, _ = cmd(r, "l", "SEARCH RETURN (COUNT) MODSEQ 1")
    assert re.match(r'\* ESEARCH \(TAG "l"\) COUNT 3 MODSEQ \d+$', lines[0]), lines
    lines, _ = cmd(r, "m", f"SEARCH MODSEQ {10**15}")
    assert lines == ["* SEARCH"], lines
    lines, _ = cmd(r, "n", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert re.match(r"\* STATUS \"?INBOX\"? \(MESSAGES 3 HIGHESTMODSEQ (\d+)\)", lines[0]), lines
    assert int(re.search(r"HIGHESTMODSEQ (\d+)", lines[0])[1]) > m2


def test_other_sessions_change_carries_uid_and_modseq(make_server, cert):
    srv = make_server(IMAP)
    deliver(srv, n=2)
    a, b = login(srv, cert), login(srv, cert)
    cmd(a, "a1", "ENABLE CONDSTORE")
    cmd(a, "a2", "SELECT INBOX")
    cmd(b, "b1", "SELECT INBOX")
    cmd(b, "b2", "STORE 2 +FLAGS (\\Flagged)")
    lines, _ = cmd(a, "a3", "NOOP")
    assert len(lines) == 1 and re.match(
        r"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)$", lines[0]), lines
    # Without CONDSTORE, the same update has neither.
    cmd(a, "a4", "STORE 1 +FLAGS (\\Seen)")
    lines, _ = cmd(b, "b3", "NOOP")
    assert lines == ["* 1 FETCH (FLAGS (\\Seen))"], lines


def qresync_session(srv, cert):
    r = login(srv, cert)
    lines, _ = cmd(r, "q1", "ENABLE QRESYNC")
    assert lines == ["* ENABLED QRESYNC"]
    return r


def test_qresync_vanished_and_resync(make_server, cert):
    srv = make_server(IMAP)
    deliver(srv, n=4)
    a = qresync_session(srv, cert)
    lines, _ = cmd(a, "a1", "SELECT INBOX")
    v, h0 = code(lines, "UIDVALIDITY"), code(lines, "HIGHESTMODSEQ")
    b = login(srv, cert)
    cmd(b, "b1", "SELECT INBOX")
    cmd(b, "b2", "STORE 1 +FLAGS (\\Seen)")
    cmd(b, "b3", "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    lines, tagged = cmd(b, "b4", "EXPUNGE")
    assert lines == ["* 2 EXPUNGE", "* 2 EXPUNGE"], lines  # b has no QRESYNC
    assert "HIGHESTMODSEQ" not in tagged
    # a (QRESYNC) is told with one VANISHED, never EXPUNGE.
    lines, _ = cmd(a, "a2", "NOOP")
    assert "* VANISHED 2:3" in lines and not any("EXPUNGE" in l for l in lines), lines
    assert any(l.startswith("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (") for l in lines), lines
    # Its own EXPUNGE: VANISHED and the new HIGHESTMODSEQ in the OK.
    cmd(a, "a3", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    lines, tagged = cmd(a, "a4", "EXPUNGE")
    assert lines == ["* VANISHED 4"], lines
    assert re.match(r"a4 OK \[HIGHESTMODSEQ \d+\] ", tagged), tagged
    # A client back from offline resynchronises in its SELECT.
    c = qresync_session(srv, cert)
    lines, tagged = cmd(c, "c1", f"SELECT INBOX (QRESYNC ({v} {h0}))")
    assert tagged.startswith("c1 OK [READ-WRITE]"), tagged
    assert "* VANISHED (EARLIER) 2:4" in lines, lines
    fetches = [l for l in lines if " FETCH " in l]
    assert len(fetches) == 1 and fetches[0].startswith("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ("), lines
    assert lines.index("* VANISHED (EARLIER) 2:4") < lines.index(fetches[0])
    # Known UIDs limit both.
    lines, _ = cmd(c, "c2", f"SELECT INBOX (QRESYNC ({v} {h0} 3:4))")
    assert "* VANISHED (EARLIER) 3:4" in lines and not any(" FETCH " in l for l in lines), lines
    assert "* OK [CLOSED] Previous mailbox closed" in lines
    # A UIDVALIDITY that is not the folder's: a plain SELECT.
    lines, _ = cmd(c, "c3", f"SELECT INBOX (QRESYNC ({v + 1} {h0}))")
    assert not any("VANISHED" in l or " FETCH " in l for l in lines), lines
    # UID FETCH ... (CHANGEDSINCE n VANISHED): expunged UIDs of the set first.
    lines, _ = cmd(c, "c4", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")
    assert lines[0] == "* VANISHED (EARLIER) 2:4", lines
    assert len(lines) == 2 and lines[1].startswith("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ("), lines
    lines, _ = cmd(c, "c5", f"UID FETCH 3 (FLAGS) (CHANGEDSINCE {h0} VANISHED)")
    assert lines == ["* VANISHED (EARLIER) 3"], lines


def test_qresync_history_older_than_the_index_keeps(make_server, cert):
    """The index's expunge history no longer reaches back to the client's
    modseq (here: its log was found damaged, so what it held is
    forgotten): every known UID not in the folder is reported vanished."""
    import os
    srv = make_server(IMAP)
    deliver(srv, n=4)
    a = qresync_session(srv, cert)
    lines, _ = cmd(a, "a1", "SELECT INBOX")
    v, h0 = code(lines, "UIDVALIDITY"), code(lines, "HIGHESTMODSEQ")
    cmd(a, "a2", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    cmd(a, "a3", "EXPUNGE")
    cmd(a, "a4", "LOGOUT")
    srv.stop()
    with open(os.path.join(srv.maildir("alice"), "postern-index.log"), "ab") as f:
        f.write(b"\x01garbage that is no log record")
    srv.start()
    a = qresync_session(srv, cert)
    lines, _ = cmd(a, "b1", f"SELECT INBOX (QRESYNC ({v} {h0} 1:10))")
    assert code(lines, "UIDVALIDITY") == v
    # UIDs from UIDNEXT on were never given out: not reported (the
    # repair skipped UID 5, which may have been given before the loss).
    assert "* VANISHED (EARLIER) 2,5" in lines, lines
    # With a modseq the history covers, only what it knows.
    h1 = code(lines, "HIGHESTMODSEQ")
    lines, _ = cmd(a, "b2", f"SELECT INBOX (QRESYNC ({v} {h1} 1:10))")
    assert not any("VANISHED" in l for l in lines), lines
