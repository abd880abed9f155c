"""IMAP session limits and LIST-STATUS against the real daemon, in raw
IMAP: imap_max_sessions_per_ip (the next connection gets BYE, the others
and the other services go on, a slot comes back when one leaves),
imap_max_sessions_per_user (the next login gets NO [LIMIT] and stays
unauthenticated, another user still logs in, the slot comes back after
LOGOUT, after a client that vanished, and a reload changes the limit for
the next login), and LIST ... RETURN (STATUS ...) (RFC 5819): a STATUS
line after each selectable folder's LIST line, none for \\Noselect."""
import base64
import imaplib
import re
import socket
import time

from conftest import Raw, wait_for
from test_imap import IMAP, LOGIN_LOCK, RawImap, deliver

PLAIN = dict(IMAP, imap_allow_plaintext="yes")


def connect(s):
    return RawImap(s.ports["imap"])


def cmd(r, tag, text):
    r.send(f"{tag} {text}\r\n")
    lines = r.until(tag)
    return lines[:-1], lines[-1]


def login(r, user="alice@example.test", pw=None, tag="l"):
    pw = pw or "secret-" + user.split("@")[0]
    with LOGIN_LOCK:
        return cmd(r, tag, f'LOGIN "{user}" "{pw}"')[1]


def logouts(s):
    return s.log().count("event=logout ")


# ---- per client address ------------------------------------------------------


def test_per_ip_cap_bye_others_unaffected_slot_freed(make_server):
    # SMTP's and POP3's own per-IP limit is lower: IMAP counts apart.
    s = make_server(dict(PLAIN, imap_max_sessions_per_ip="3",
                         max_sessions_per_ip="2"))
    held = [connect(s) for _ in range(3)]
    for r in held:
        assert r.greeting.startswith("* OK"), r.greeting
    extra = connect(s)
    assert extra.greeting.startswith("* BYE"), extra.greeting
    assert "Too many connections from your address" in extra.greeting
    assert extra.closed()
    wait_for(lambda: re.search(
        r'event=imap-refuse client=127\.0\.0\.1 reason="Too many connections '
        r'from your address"', s.log()), what="refusal logged")
    # The sessions held are not disturbed, and can log in.
    for r in held:
        assert cmd(r, "n", "NOOP")[1].startswith("n OK")
    assert login(held[0]).startswith("l OK")
    # SMTP and POP3 are not counted against IMAP's limit (nor IMAP
    # against their max_sessions_per_ip of 2).
    smtp = [Raw(s.ports["smtp"]) for _ in range(2)]
    for c in smtp:
        assert c.greeting.startswith("220"), c.greeting
    pop = socket.create_connection(("127.0.0.1", s.ports["pop3"]), timeout=10)
    assert pop.recv(512).startswith(b"+OK")
    pop.close()
    for c in smtp:
        c.close()
    # One leaves (LOGOUT): its slot is free for the next connection.
    n = logouts(s)
    assert cmd(held[1], "o", "LOGOUT")[1].startswith("o OK")
    wait_for(lambda: logouts(s) > n, what="logout")
    again = connect(s)
    assert again.greeting.startswith("* OK"), again.greeting
    # Full again: the next is refused, then one that vanishes (no
    # LOGOUT) gives its slot back too.
    assert connect(s).greeting.startswith("* BYE")
    n = logouts(s)
    held[2].sock.close()
    wait_for(lambda: logouts(s) > n, what="vanished client freed")
    assert connect(s).greeting.startswith("* OK")


# ---- per user ----------------------------------------------------------------


def test_per_user_cap_limit_stays_unauthenticated_and_slots_return(make_server):
    s = make_server(dict(PLAIN, imap_max_sessions_per_user="2"))
    a1, a2, a3 = connect(s), connect(s), connect(s)
    assert login(a1).startswith("l OK")
    assert login(a2).startswith("l OK")
    tagged = login(a3)
    assert tagged == "l NO [LIMIT] Too many connections for this user", tagged
    wait_for(lambda: re.search(
        r"imap=\S+ event=login result=limit client=127\.0\.0\.1 "
        r"user=alice@example\.test sessions=2 limit=2", s.log()),
        what="limit logged")
    # Still not authenticated: a command of that state is refused, and
    # the right password was no failure (no lock-out strike).
    _, t = cmd(a3, "s", "SELECT INBOX")
    assert t.startswith("s BAD") and "Log in first" in t, t
    assert "result=fail" not in s.log()
    # Another user is not held to alice's count.
    b = connect(s)
    assert login(b, "bob@example.test").startswith("l OK")
    # LOGOUT gives the slot back: the refused session retries.
    n = logouts(s)
    assert cmd(a1, "o", "LOGOUT")[1].startswith("o OK")
    wait_for(lambda: logouts(s) > n, what="logout")
    assert login(a3, tag="m").startswith("m OK")
    # Full again; a client that vanishes without LOGOUT frees its slot.
    a4 = connect(s)
    assert "[LIMIT]" in login(a4)
    n = logouts(s)
    a2.sock.close()
    wait_for(lambda: logouts(s) > n, what="vanished client freed")
    assert login(a4, tag="m").startswith("m OK")
    # AUTHENTICATE PLAIN (SASL-IR) is held to the same limit.
    a6 = connect(s)
    ir = base64.b64encode(b"\0alice@example.test\0secret-alice").decode()
    with LOGIN_LOCK:
        _, t = cmd(a6, "p", f"AUTHENTICATE PLAIN {ir}")
    assert t == "p NO [LIMIT] Too many connections for this user", t
    # A wrong password is still a failed login, not a limit.
    a5 = connect(s)
    assert "AUTHENTICATIONFAILED" in login(a5, pw="wrong")
    # imaplib sees the NO [LIMIT] as a login error.
    m = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=20)
    try:
        with LOGIN_LOCK:
            m.login("alice@example.test", "secret-alice")
        raise AssertionError("third alice login accepted")
    except imaplib.IMAP4.error as e:
        assert "LIMIT" in str(e), e
    m.shutdown()


def test_per_user_limit_follows_a_reload(make_server):
    s = make_server(dict(PLAIN, imap_max_sessions_per_user="1"))
    a1, a2 = connect(s), connect(s)
    assert login(a1).startswith("l OK")
    assert "[LIMIT]" in login(a2)
    s.extra["imap_max_sessions_per_user"] = "2"
    s.write_conf()
    s.ctl("reload")
    wait_for(lambda: "event=reload result=ok" in s.log(), what="reload")
    # The next login, on a session connected before the reload too.
    assert login(a2, tag="m").startswith("m OK")
    a3 = connect(s)
    assert "[LIMIT]" in login(a3)


# ---- LIST-STATUS -------------------------------------------------------------


def append(r, tag, folder, body, flags=""):
    data = body.encode()
    r.send(f'{tag} APPEND "{folder}" ({flags}) {{{len(data)}+}}\r\n')
    r.send(data + b"\r\n")
    t = r.until(tag)[-1]
    assert t.startswith(f"{tag} OK"), t


def status_of(line):
    m = re.match(r'\* STATUS "([^"]*)" \((.*)\)$', line)
    assert m, line
    items = m.group(2).split()
    return m.group(1), dict(zip(items[::2], map(int, items[1::2])))


def test_list_status_numbers_and_noselect_parent(make_server):
    s = make_server(PLAIN)
    deliver(s, n=3)
    r = connect(s)
    assert "LIST-STATUS" in cmd(r, "c", "CAPABILITY")[0][0]
    assert login(r).startswith("l OK")
    for name in ("Work/Projects", "Lists"):
        assert cmd(r, "c", f'CREATE "{name}"')[1].startswith("c OK")
    msg = "Subject: t\r\nFrom: a@b.example\r\n\r\nhello\r\n"
    append(r, "a1", "Work/Projects", msg, "\\Seen")
    append(r, "a2", "Work/Projects", msg)
    append(r, "a3", "Work/Projects", msg, "\\Seen \\Flagged")
    # One of INBOX's three seen (from another connection: the folder is
    # shared, its numbers the same).
    r2 = connect(s)
    assert login(r2).startswith("l OK")
    cmd(r2, "s", "SELECT INBOX")
    assert cmd(r2, "f", "STORE 2 +FLAGS (\\Seen)")[1].startswith("f OK")

    lines, t = cmd(r, "x", 'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')
    assert t == "x OK List completed", t
    # Each selectable folder's STATUS follows its LIST line.
    seen = {}
    for i, line in enumerate(lines):
        if not line.startswith("* LIST"):
            continue
        name = re.search(r'"/" "([^"]*)"$', line).group(1)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        # the extended form (RETURN given) says \NonExistent (RFC 5258)
        if "\\NonExistent" in line:
            assert not nxt.startswith("* STATUS"), (line, nxt)
            seen[name] = None
        else:
            got_name, items = status_of(nxt)
            assert got_name == name, (line, nxt)
            seen[name] = items
    assert seen["Work"] is None  # the \Noselect parent
    assert seen["INBOX"] == {"MESSAGES": 3, "UNSEEN": 2, "UIDNEXT": 4}, seen
    assert seen["Work/Projects"] == {"MESSAGES": 3, "UNSEEN": 1, "UIDNEXT": 4}, seen
    assert seen["Lists"] == {"MESSAGES": 0, "UNSEEN": 0, "UIDNEXT": 1}, seen
    for special in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert seen[special] == {"MESSAGES": 0, "UNSEEN": 0, "UIDNEXT": 1}, special
    assert sum(1 for l in lines if l.startswith("* STATUS")) == len(seen) - 1

    # A pattern, and the items as STATUS orders them; STATUS agrees.
    # (LIST-EXTENDED: no CHILDREN asked, none shown.)
    lines, t = cmd(r, "y", 'LIST "" "Work/%" RETURN (STATUS (UNSEEN MESSAGES))')
    assert lines == ['* LIST () "/" "Work/Projects"',
                     '* STATUS "Work/Projects" (MESSAGES 3 UNSEEN 1)'], lines
    lines, _ = cmd(r, "z", 'STATUS "Work/Projects" (MESSAGES UNSEEN)')
    assert lines == ['* STATUS "Work/Projects" (MESSAGES 3 UNSEEN 1)'], lines
    # Only the parent matches: its LIST line, no STATUS.
    lines, t = cmd(r, "w", 'LIST "" "Work" RETURN (STATUS (MESSAGES))')
    assert len(lines) == 1 and "\\NonExistent" in lines[0] and t.startswith("w OK"), lines
    # The selected folder too, with CHILDREN returned as well.
    lines, t = cmd(r2, "v", 'LIST "" "INBOX" RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))')
    assert lines == ['* LIST (\\HasNoChildren) "/" "INBOX"',
                     '* STATUS "INBOX" (MESSAGES 3 UIDNEXT 4)'], lines
    # Nothing matched: just the OK.
    lines, t = cmd(r, "u", 'LIST "" "Nope*" RETURN (STATUS (MESSAGES))')
    assert lines == [] and t.startswith("u OK"), (lines, t)


def test_list_status_many_folders_pipelined(make_server):
    """Many folders, one STATUS job each in order, and a command
    pipelined behind the LIST waits for its end."""
    s = make_server(PLAIN)
    r = connect(s)
    assert login(r).startswith("l OK")
    names = [f"F{i:03d}" for i in range(120)]
    r.send("".join(f'c{i} CREATE "{n}"\r\n' for i, n in enumerate(names)))
    for i in range(len(names)):
        assert r.until(f"c{i}")[-1].startswith(f"c{i} OK")
    deliver(s, n=2)
    r.send('x LIST "" "*" RETURN (STATUS (MESSAGES))\r\ny NOOP\r\n')
    lines = r.until("x")
    assert lines[-1] == "x OK List completed", lines[-1]
    statuses = [status_of(l) for l in lines if l.startswith("* STATUS")]
    assert len(statuses) == len(names) + 6  # INBOX and the special-use five
    assert dict(statuses)["INBOX"] == {"MESSAGES": 2}
    listed = [re.search(r'"([^"]*)"$', l).group(1) for l in lines if l.startswith("* LIST")]
    assert [n for n, _ in statuses] == listed
    assert r.until("y")[-1].startswith("y OK")
    assert cmd(r, "o", "LOGOUT")[1].startswith("o OK")


def test_idle_timeout_says_bye_also_in_idle(make_server):
    """imap_timeout (here its minimum, 1 minute) ends a logged-in session
    that sends nothing with `* BYE Disconnected for inactivity`, a
    selected one and one in IDLE alike; with the IDLE poll a divisor of
    the timeout (30 s, the default) the poll's rescan is running when
    the timeout comes, and the BYE must still be sent (not a bare
    close).  A session that keeps talking is not ended."""
    s = make_server(dict(PLAIN, imap_timeout="1m", imap_idle_poll="30s"))
    deliver(s, n=1)
    plain, idle, busy = connect(s), connect(s), connect(s)
    for r in (plain, idle, busy):
        assert login(r).startswith("l OK")
        assert cmd(r, "s", "SELECT INBOX")[1].startswith("s OK")
    idle.send("i IDLE\r\n")
    assert idle.line().startswith("+ ")
    t0 = time.time()
    for r in (plain, idle, busy):
        r.sock.settimeout(5)
    got = {"plain": None, "idle": None}
    while time.time() - t0 < 100 and None in got.values():
        if time.time() - t0 < 80:
            assert cmd(busy, "n", "NOOP")[1].startswith("n OK")
        for name, r in (("plain", plain), ("idle", idle)):
            if got[name] is not None:
                continue
            try:
                got[name] = r.line()
            except (socket.timeout, TimeoutError):
                pass
    assert got["plain"] == "* BYE Disconnected for inactivity", got
    assert got["idle"] == "* BYE Disconnected for inactivity", got
    for r in (plain, idle):
        assert r.closed()
    assert cmd(busy, "m", "NOOP")[1].startswith("m OK")
    assert s.log().count("event=timeout") == 2
