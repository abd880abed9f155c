"""LIST-EXTENDED (RFC 5258) where postern goes past what the Dovecot
differential suite can compare (test_imap_diff.py "list_extended"):
postern takes SUBSCRIBE of a name that does not exist (RFC 3501 6.3.6
allows it; Dovecot refuses), so such names are listed as \\NonExistent
by the subscription listings and never by LIST; REMOTE is accepted; a
subscriptions file full of junk or very long is bounded work."""
import os
import time

from conftest import tls_context
from test_imap import IMAP, LOGIN_LOCK, RawImap


def session(server, cert):
    r = RawImap(server.ports["imaps"], tls_context(cert))
    with LOGIN_LOCK:
        r.send("a LOGIN alice@example.test secret-alice\r\n")
        assert r.until("a")[-1].startswith("a OK")
    return r


def cmd(r, tag, text):
    r.send(f"{tag} {text}\r\n")
    lines = r.until(tag)
    assert lines[-1].startswith(f"{tag} OK"), lines
    return lines[:-1]


def test_capability_and_remote(make_server, cert):
    s = make_server(IMAP)
    r = session(s, cert)
    caps = cmd(r, "c", "CAPABILITY")[0].split()
    assert "LIST-EXTENDED" in caps
    plain = cmd(r, "d", 'LIST () "" %')
    # REMOTE: no remote mailboxes here, so the same list (RFC 5258 3.1)
    assert cmd(r, "e", 'LIST (REMOTE) "" %') == plain
    r.send('f LIST (REMOTE RECURSIVEMATCH) "" %\r\n')
    assert r.until("f")[-1].startswith("f BAD")


def test_subscription_without_a_folder(make_server, cert):
    s = make_server(IMAP)
    r = session(s, cert)
    cmd(r, "a1", "SUBSCRIBE Later/Plans")
    assert cmd(r, "a2", 'LSUB "" Later*') == ['* LSUB () "/" "Later/Plans"']
    # LSUB with '%': the level above, \Noselect (RFC 3501 6.3.9)
    assert cmd(r, "a3", 'LSUB "" L%') == ['* LSUB (\\Noselect) "/" "Later"']
    assert cmd(r, "a4", 'LIST "" Later*') == []
    assert cmd(r, "a5", 'LIST () "" Later*') == []
    assert cmd(r, "a6", 'LIST (SUBSCRIBED) "" Later*') == [
        '* LIST (\\Subscribed \\NonExistent) "/" "Later/Plans"']
    assert cmd(r, "a7", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" L%') == [
        '* LIST (\\NonExistent) "/" "Later" (CHILDINFO ("SUBSCRIBED"))']
    # RETURN (STATUS): no STATUS for a name without a folder
    got = cmd(r, "a8", 'LIST (SUBSCRIBED) "" Later* RETURN (STATUS (MESSAGES))')
    assert got == ['* LIST (\\Subscribed \\NonExistent) "/" "Later/Plans"']
    # SELECT of it: still no such folder
    r.send("a9 SELECT Later/Plans\r\n")
    assert r.until("a9")[-1].startswith("a9 NO")
    # Made: an ordinary subscribed folder, its parent a \Noselect level
    cmd(r, "b1", "CREATE Later/Plans")
    assert cmd(r, "b2", 'LIST (SUBSCRIBED) "" Later*') == [
        '* LIST (\\Subscribed) "/" "Later/Plans"']
    assert sorted(cmd(r, "b3", 'LIST "" Later*')) == sorted([
        '* LIST (\\Noselect \\HasChildren) "/" "Later"',
        '* LIST (\\HasNoChildren) "/" "Later/Plans"'])
    assert sorted(cmd(r, "b4", 'LIST () "" Later*')) == sorted([
        '* LIST (\\NonExistent) "/" "Later"', '* LIST () "/" "Later/Plans"'])
    # Deleted again: the subscription stays (RFC 3501 6.3.4)
    cmd(r, "b5", "DELETE Later/Plans")
    assert cmd(r, "b6", 'LSUB "" Later*') == ['* LSUB () "/" "Later/Plans"']
    cmd(r, "b7", "UNSUBSCRIBE Later/Plans")
    assert cmd(r, "b8", 'LSUB "" Later*') == []
    assert cmd(r, "b9", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" L%') == []


def test_rename_of_a_noselect_level(make_server, cert):
    s = make_server(IMAP)
    r = session(s, cert)
    cmd(r, "a", "CREATE Old/Sub/Leaf")
    cmd(r, "b", "RENAME Old New")
    assert sorted(cmd(r, "c", 'LIST "" New*')) == sorted([
        '* LIST (\\Noselect \\HasChildren) "/" "New"',
        '* LIST (\\Noselect \\HasChildren) "/" "New/Sub"',
        '* LIST (\\HasNoChildren) "/" "New/Sub/Leaf"'])
    assert cmd(r, "d", 'LIST "" Old*') == []
    r.send("e RENAME Old Other\r\n")
    assert r.until("e")[-1].startswith("e NO")


def test_hostile_subscriptions_file(make_server, cert):
    """A subscriptions file the run user (or an old server) left with
    junk lines, duplicates and thousands of names: listed once each, in
    order, junk skipped, the session fine after."""
    s = make_server(IMAP)
    r = session(s, cert)
    cmd(r, "a", "NOOP")  # the Maildir exists after the login
    path = os.path.join(s.maildir("alice"), "subscriptions")
    names = [f"Deep/Tree{i % 50}/Leaf{i}" for i in range(5000)]
    junk = ["", "bad.dot", "a\t\tb", "x" * 300, "Dup", "Dup", "INBOX"]
    with open(path, "w") as f:
        f.write("V\t2\n\n" + "\n".join(n.replace("/", "\t") for n in names + junk) + "\n")
    got = cmd(r, "b", 'LIST (SUBSCRIBED) "" *')
    listed = [l.rsplit(" ", 1)[1].strip('"') for l in got]
    assert len(listed) == len(set(listed))
    assert set(names) <= set(listed)
    assert "Dup" in listed and "INBOX" in listed
    assert not any("." in n or len(n) > 200 for n in listed)
    got = cmd(r, "c", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert '* LIST (\\NonExistent) "/" "Deep" (CHILDINFO ("SUBSCRIBED"))' in got
    assert len(cmd(r, "d", 'LIST "" *')) == 6  # the folders alone


def test_rename_inbox_moves_its_messages(make_server, cert):
    """RENAME INBOX (RFC 3501 6.3.5): the messages move to a new folder,
    flags kept, INBOX stays (empty, its UIDs not reused) with its children
    untouched; a session idling on INBOX is told of the expunges at once;
    new mail lands in INBOX again.  (Dovecot's Maildir refuses it with
    NO [CANNOT]: no differential script.)"""
    from test_imap import deliver
    s = make_server(dict(IMAP, imap_idle_poll="10m"))
    deliver(s, n=3)
    r = session(s, cert)
    cmd(r, "a", "CREATE INBOX/Child")
    cmd(r, "b", "SELECT INBOX")
    cmd(r, "c", "STORE 2 +FLAGS (\\Flagged $Work)")
    idler = session(s, cert)
    cmd(idler, "i1", "SELECT INBOX")
    idler.send("i2 IDLE\r\n")
    assert idler.line().startswith("+ ")
    r.send("d RENAME INBOX Sent\r\n")  # exists: refused, nothing moved
    assert r.until("d")[-1].startswith("d NO [ALREADYEXISTS]")
    r.send("e RENAME INBOX INBOX\r\n")
    assert r.until("e")[-1].startswith("e NO [ALREADYEXISTS]")
    got = cmd(r, "f", "RENAME inbox Old")
    assert got.count("* 1 EXPUNGE") == 3, got  # this session's own view
    idler.sock.settimeout(20)
    assert [idler.line() for _ in range(3)] == ["* 1 EXPUNGE"] * 3
    idler.send("DONE\r\n")
    assert idler.until("i2")[-1].startswith("i2 OK")
    assert cmd(r, "g", "STATUS INBOX (MESSAGES UIDNEXT)") == [
        '* STATUS "INBOX" (MESSAGES 0 UIDNEXT 4)']
    assert cmd(r, "h", "STATUS Old (MESSAGES UNSEEN)") == [
        '* STATUS "Old" (MESSAGES 3 UNSEEN 3)']
    assert '* LIST (\\HasNoChildren) "/" "INBOX/Child"' in cmd(r, "j", 'LIST "" INBOX/*')
    cmd(r, "k", "SELECT Old")
    flags = cmd(r, "l", "FETCH 1:3 (FLAGS)")
    assert "$Work" in flags[1] and "\\Flagged" in flags[1], flags
    cur = os.listdir(os.path.join(s.maildir("alice"), ".Old", "cur"))
    assert len(cur) == 3
    deliver(s, n=1)
    assert cmd(r, "m", "STATUS INBOX (MESSAGES UIDNEXT)") == [
        '* STATUS "INBOX" (MESSAGES 1 UIDNEXT 5)']


def test_unused_folders_stay_open_but_never_in_the_way(make_server, cert):
    """A folder no session uses stays open a while (the next SELECT or
    STATUS reads no index), which must change nothing a client sees:
    DELETE and RENAME right after the last session left it work (no
    [INUSE]), mail delivered meanwhile and a flag another program set
    on disk show at the next SELECT, and SIGTERM still stops at once."""
    from test_imap import deliver
    s = make_server(IMAP)
    deliver(s, n=2)
    r = session(s, cert)
    cmd(r, "a", "CREATE Old")
    cmd(r, "b", "SELECT Old")
    cmd(r, "c", "UNSELECT")
    cmd(r, "d", "DELETE Old")  # lingering, not in use
    assert cmd(r, "e", 'LIST "" Old') == []
    cmd(r, "f", "CREATE Keep")
    cmd(r, "g", "STATUS Keep (MESSAGES)")
    cmd(r, "h", "RENAME Keep Kept")
    cmd(r, "i", "SELECT Kept")
    cmd(r, "j", "UNSELECT")
    # INBOX: selected, left, then changed by SMTP and on disk
    cmd(r, "k", "SELECT INBOX")
    cmd(r, "l", "UNSELECT")
    deliver(s, n=1)
    cur = os.path.join(s.maildir("alice"), "cur")
    name = sorted(os.listdir(cur))[0]
    os.rename(os.path.join(cur, name), os.path.join(cur, name.split(":2,")[0] + ":2,F"))
    time.sleep(2.2)  # past the store's mtime settle time
    got = cmd(r, "m", "SELECT INBOX")
    assert "* 3 EXISTS" in got, got
    flags = cmd(r, "n", "FETCH 1:3 (FLAGS)")
    assert sum("\\Flagged" in l for l in flags) == 1, flags
    r.send("o LOGOUT\r\n")
    r.until("o")
    t0 = time.time()
    assert s.stop() == 0
    assert time.time() - t0 < 10
    assert "abandoned" not in s.log()
