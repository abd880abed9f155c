"""Quota per user (issue 12): `posternctl user quota`, 452 4.2.2 at RCPT
for a full mailbox (with and without SIZE=), the other recipients still
delivered, the DATA-time check, the Maildir++ maildirsize kept by
delivery and POP3 deletes, the config default, and the migration of a
directory made before the quota columns; over IMAP, GETQUOTAROOT and
GETQUOTA (RFC 9208) and NO [OVERQUOTA] for APPEND and COPY."""
import imaplib
import os
import poplib
import pwd
import re
import smtplib
import sqlite3
import subprocess

import pytest

from conftest import run_user, sqlite_only, tls_context, wait_for


def maildirsize(server, user="alice"):
    path = os.path.join(server.maildir(user), "maildirsize")
    with open(path) as f:
        lines = f.read().split("\n")
    limits, usage = lines[0], [l for l in lines[1:] if l]
    b = sum(int(l.split()[0]) for l in usage)
    m = sum(int(l.split()[1]) for l in usage)
    return limits, b, m


def quota(server, user="alice@example.test"):
    out = server.ctl("user", "quota", user).stdout
    lim = re.search(r"limit: bytes=(\d+) messages=(\d+) source=(\w+)", out)
    use = re.search(r"usage: bytes=(\d+) messages=(\d+)", out)
    assert lim and use, out
    return (int(lim[1]), int(lim[2]), lim[3]), (int(use[1]), int(use[2]))


def send(server, rcpts, body=b"Subject: q\r\n\r\nhello\r\n", size=False):
    """RCPT replies per recipient, then the DATA reply (or None)."""
    s = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20)
    s.ehlo("client.example")
    opts = [f"SIZE={len(body)}"] if size else []
    assert s.mail("x@remote.example", opts)[0] == 250
    codes = [s.rcpt(r) for r in rcpts]
    data = None
    if any(c[0] == 250 for c in codes):
        data = s.data(body)
    s.quit()
    return codes, data


def fill(server, n, user="alice@example.test"):
    for _ in range(n):
        codes, data = send(server, [user])
        assert codes[0][0] == 250 and data[0] == 250, (codes, data)


def test_ctl_quota_round_trip(server):
    assert quota(server) == ((0, 0, "default"), (0, 0))
    server.ctl("user", "quota", "alice@example.test", "2G", "100000")
    assert quota(server)[0] == (2 << 30, 100000, "user")
    server.ctl("user", "quota", "alice@example.test", "512k", "7")
    assert quota(server)[0] == (512 * 1024, 7, "user")
    # bob untouched
    assert quota(server, "bob@example.test")[0] == (0, 0, "default")
    server.ctl("user", "quota", "alice@example.test", "none")
    assert quota(server)[0] == (0, 0, "user")
    server.ctl("user", "quota", "alice@example.test", "default")
    assert quota(server)[0] == (0, 0, "default")
    for bad in (["2X", "10"], ["10", "1k"], ["-1", "5"], ["lots"]):
        r = server.ctl("user", "quota", "alice@example.test", *bad, check=False)
        assert r.returncode == 1 and r.stderr, (bad, r.stderr)
    r = server.ctl("user", "quota", "nobody@example.test", "1M", "1", check=False)
    assert r.returncode == 1 and "no such user" in r.stderr
    r = server.ctl("user", "quota", "nobody@example.test", check=False)
    assert r.returncode == 1 and "no such user" in r.stderr


def test_ctl_quota_sets_maildirsize_limits(server):
    fill(server, 1)
    server.ctl("user", "quota", "alice@example.test", "1M", "50")
    limits, b, m = maildirsize(server)
    assert limits == "1048576S,50C"
    assert m == 1 and b == os.path.getsize(os.path.join(
        server.maildir("alice"), "new", os.listdir(
            os.path.join(server.maildir("alice"), "new"))[0]))
    # The limits line follows the directory, also back to none.
    server.ctl("user", "quota", "alice@example.test", "none")
    assert maildirsize(server)[0] == ""


def test_rcpt_452_when_full_others_delivered(server):
    server.ctl("user", "quota", "alice@example.test", "0", "2")
    fill(server, 2)
    assert quota(server)[1][1] == 2
    codes, data = send(server, ["alice@example.test", "bob@example.test"])
    assert codes[0][0] == 452 and b"4.2.2" in codes[0][1], codes
    assert b"Mailbox full" in codes[0][1]
    assert codes[1][0] == 250 and data[0] == 250
    assert len(server.messages("alice")) == 2
    assert len(server.messages("bob")) == 1
    log = server.log()
    assert re.search(r"event=quota result=tempfail to=<alice@example\.test> "
                     r"mailbox=alice@example\.test bytes=\d+ limit_bytes=0 "
                     r"messages=2 limit_messages=2 size=0 reason=quota", log), log
    assert re.search(r"event=rcpt .*to=<alice@example\.test> result=tempfail "
                     r"code=452 .*rule=quota", log)


def test_under_quota_accepted_and_counted(server):
    server.ctl("user", "quota", "alice@example.test", "1M", "100")
    fill(server, 3)
    limits, b, m = maildirsize(server)
    files = [os.path.join(server.maildir("alice"), "new", n)
             for n in os.listdir(os.path.join(server.maildir("alice"), "new"))]
    assert limits == "1048576S,100C"
    assert m == 3 and b == sum(os.path.getsize(f) for f in files)
    assert quota(server)[1] == (b, 3)


def test_size_param_refused_at_rcpt(server):
    """RFC 1870 6.1: a declared SIZE that does not fit is refused per
    recipient, so the others still get the message."""
    server.ctl("user", "quota", "alice@example.test", "4k", "0")
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    big = big * 80  # about 6 KiB
    codes, data = send(server, ["alice@example.test", "bob@example.test"],
                       body=big, size=True)
    assert codes[0][0] == 452 and b"4.2.2" in codes[0][1]
    assert codes[1][0] == 250 and data[0] == 250
    assert server.messages("alice") == [] and len(server.messages("bob")) == 1
    # A small one still fits.
    codes, data = send(server, ["alice@example.test"], size=True)
    assert codes[0][0] == 250 and data[0] == 250


def test_data_time_over_quota_is_452(server):
    """No SIZE=: the RCPT check passes, the message itself does not fit."""
    server.ctl("user", "quota", "alice@example.test", "4k", "0")
    big = (b"Subject: big\r\n\r\n" + b"y" * 70 + b"\r\n") * 80
    codes, data = send(server, ["alice@example.test"], body=big)
    assert codes[0][0] == 250
    assert data[0] == 452 and b"4.2.2" in data[1], data
    assert server.messages("alice") == []
    assert [f for f in server.all_files() if "/Maildir/tmp/" in f] == []
    assert re.search(r"event=data result=tempfail code=452 .*"
                     r"mailboxes=alice@example\.test reason=quota", server.log())
    # With a second recipient that has room: delivered to both (a refusal
    # would hold it back from bob), alice over by this one message and
    # refused at the next RCPT.
    codes, data = send(server, ["alice@example.test", "bob@example.test"], body=big)
    assert data[0] == 250
    assert len(server.messages("alice")) == 1 and len(server.messages("bob")) == 1
    assert "event=quota result=over mailboxes=alice@example.test" in server.log()
    codes, _ = send(server, ["alice@example.test"])
    assert codes[0][0] == 452


def test_pop3_delete_frees_room(server, cert):
    server.ctl("user", "quota", "alice@example.test", "0", "2")
    fill(server, 2)
    assert send(server, ["alice@example.test"])[0][0][0] == 452
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=20)
    p.stls(context=tls_context(cert))
    p.user("alice@example.test")
    p.pass_("secret-alice")
    p.dele(1)
    p.quit()
    limits, b, m = maildirsize(server)
    assert m == 1, (limits, b, m)
    left = [os.path.join(server.maildir("alice"), "cur", n)
            for n in os.listdir(os.path.join(server.maildir("alice"), "cur"))]
    assert b == sum(os.path.getsize(f) for f in left)
    codes, data = send(server, ["alice@example.test"])
    assert codes[0][0] == 250 and data[0] == 250


def test_alias_with_a_full_member_is_deferred(server):
    server.ctl("user", "quota", "bob@example.test", "0", "1")
    fill(server, 1, "bob@example.test")
    codes, data = send(server, ["info@example.test", "carol@example.test"])
    assert codes[0][0] == 452 and codes[1][0] == 250 and data[0] == 250
    assert server.messages("alice") == [] and len(server.messages("carol")) == 1


def test_config_default_and_user_override(make_server):
    s = make_server({"quota_default_messages": "1",
                     "quota_default_bytes": "1G"})
    assert quota(s)[0] == (1 << 30, 1, "default")
    fill(s, 1)
    assert send(s, ["alice@example.test"])[0][0][0] == 452
    s.ctl("user", "quota", "alice@example.test", "none")
    assert send(s, ["alice@example.test"])[0][0][0] == 250
    assert maildirsize(s)[0] == ""


def test_bounce_to_full_mailbox_is_deferred(make_server):
    """A DSN to a full local sender waits (deferred, retried), and is
    stored once there is room."""
    s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1",
                     "queue_retry_min": "1s", "queue_retry_max": "1s"})
    s.ctl("user", "quota", "alice@example.test", "0", "1")
    fill(s, 1)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", ["u@nosuchdomain.example"],
                   b"Subject: out\r\n\r\nhi\r\n")
    wait_for(lambda: re.search(r"event=dsn result=defer error=\"quota: mailbox "
                               r"alice@example\.test full\"", s.log()),
             what="DSN deferred for quota")
    assert len(s.messages("alice")) == 1
    s.ctl("user", "quota", "alice@example.test", "default")
    [_, dsn] = wait_for(lambda: len(s.messages("alice")) == 2 and s.messages("alice"),
                        what="DSN stored")
    assert b"Status: 5.1.2" in dsn or b"Status: 5.1.2" in s.messages("alice")[0]


def test_bounce_to_full_mailbox_is_bounded_by_queue_lifetime(make_server):
    """A DSN whose only mailbox stays full waits at most queue_lifetime,
    then goes to the postmaster once, and the original leaves the queue
    (a forged full local sender cannot hold a queue entry for ever)."""
    s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1",
                     "queue_retry_min": "1s", "queue_retry_max": "1s",
                     "queue_lifetime": "3s"})
    s.ctl("user", "quota", "alice@example.test", "0", "1")
    fill(s, 1)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", ["u@nosuchdomain.example"],
                   b"Subject: out\r\n\r\nhi\r\n")
    wait_for(lambda: "event=dsn result=defer error=\"quota: mailbox" in s.log(),
             what="DSN deferred for quota")
    wait_for(lambda: re.search(r"event=dsn result=redirect to=postmaster "
                               r"error=\"quota: mailbox alice@example\.test full\"",
                               s.log()), timeout=30, what="redirect to postmaster")
    [dsn] = wait_for(lambda: s.messages("postmaster"), what="DSN at postmaster")
    assert b"Status: 5.1.2" in dsn
    assert len(s.messages("alice")) == 1  # still only what filled it
    wait_for(lambda: s.ctl("queue", "list").stdout.strip() == "",
             what="queue empty")


def test_bounce_to_alias_with_one_full_member_is_stored(make_server):
    """A DSN to an alias whose members are partly full is stored for all
    (the full one goes over by this message), as SMTP delivery does."""
    s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1",
                     "queue_retry_min": "1s", "queue_retry_max": "1s"})
    s.ctl("user", "quota", "bob@example.test", "0", "1")
    fill(s, 1, "bob@example.test")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("info@example.test", ["u@nosuchdomain.example"],
                   b"Subject: out\r\n\r\nhi\r\n")
    wait_for(lambda: len(s.messages("bob")) == 2 and s.messages("alice"),
             what="DSN stored for both members")
    assert "error=\"quota: mailbox" not in s.log()


# PRAGMA user_version once every step of dir_sqlite.c's migrations[] is
# applied: 1 user_quotas, 2 PostgreSQL's shared lock-out, 3 its change
# notifications (both no-ops here, counted so that versions mean the same
# on both backends), 4 admins, admin tokens and user state, 5 sending
# caps (issue 15 part 4).
SQLITE_NEWEST = 5


def old_schema_db(path):
    """A directory as postern wrote it before schema versions."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE domains(name TEXT PRIMARY KEY);
        CREATE TABLE host_aliases(alias TEXT PRIMARY KEY, domain TEXT NOT NULL);
        CREATE TABLE users(local TEXT NOT NULL, domain TEXT NOT NULL,
            hash TEXT NOT NULL, PRIMARY KEY(local, domain));
        CREATE TABLE aliases(local TEXT NOT NULL, domain TEXT NOT NULL,
            target TEXT NOT NULL, PRIMARY KEY(local, domain, target));
        CREATE TABLE lists(local TEXT NOT NULL, domain TEXT NOT NULL,
            PRIMARY KEY(local, domain));
        CREATE TABLE list_members(local TEXT NOT NULL, domain TEXT NOT NULL,
            member TEXT NOT NULL, PRIMARY KEY(local, domain, member));
        INSERT INTO domains VALUES('example.test');
        INSERT INTO users VALUES('alice', 'example.test', 'x');
    """)
    db.commit()
    db.close()
    pw = pwd.getpwnam(run_user())
    if os.geteuid() == 0:
        os.chown(os.path.dirname(path), pw.pw_uid, pw.pw_gid)
        os.chown(path, pw.pw_uid, pw.pw_gid)


@sqlite_only("an old postern.db; PostgreSQL has db upgrade")
def test_migration_of_old_schema(make_server):
    s = make_server(populate=False, start=False)
    os.makedirs(s.data, exist_ok=True)
    path = os.path.join(s.data, "postern.db")
    old_schema_db(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()
    # posternctl's open migrates it; the old rows stay.
    assert quota(s) == ((0, 0, "default"), (0, 0))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_NEWEST
    cols = [r[1] for r in db.execute("PRAGMA table_info(user_quotas)")]
    assert cols == ["local", "domain", "bytes", "messages"]
    assert db.execute("SELECT local, hash FROM users").fetchall() == [("alice", "x")]
    # users keeps its three columns: imports by position still work.
    db.execute("INSERT INTO users VALUES('dave', 'example.test', 'x')")
    db.commit()
    db.close()
    s.ctl("user", "quota", "alice@example.test", "1M", "3")
    assert quota(s)[0] == (1 << 20, 3, "user")
    # A second open changes nothing more.
    s.ctl("user", "list")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_NEWEST
    db.close()


@sqlite_only("an old postern.db; the daemon migrates no PostgreSQL schema")
def test_daemon_migrates_at_start_and_reads_quota(make_server):
    s = make_server(populate=False, start=False)
    os.makedirs(s.data, exist_ok=True)
    path = os.path.join(s.data, "postern.db")
    old_schema_db(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO users VALUES('bob', 'example.test', 'x')")
    db.commit()
    db.close()
    s.start()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_NEWEST
    db.execute("INSERT INTO user_quotas VALUES('alice', 'example.test', 0, 1)")
    db.commit()
    db.close()
    fill(s, 1)
    assert send(s, ["alice@example.test", "bob@example.test"])[0][0][0] == 452


# ---- IMAP: the QUOTA extension (RFC 9208) and NO [OVERQUOTA] ---------------

IMAP = {"imap_listen": "127.0.0.1:0", "imaps_listen": "127.0.0.1:0"}


@pytest.fixture
def isrv(make_server):
    return make_server(IMAP)


def imap_login(server, cert, user="alice@example.test", pw="secret-alice"):
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    m.starttls(ssl_context=tls_context(cert))
    m.login(user, pw)
    return m


def kib(n):
    return (n + 1023) // 1024


def count(m, folder):
    typ, dat = m.status(folder, "(MESSAGES)")
    assert typ == "OK", dat
    return int(re.search(rb"MESSAGES (\d+)", dat[0])[1])


def big_message(kbytes):
    return b"Subject: big\r\n\r\n" + (b"z" * 1022 + b"\r\n") * kbytes


def test_imap_quota_numbers_after_smtp(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "1M", "10")
    fill(isrv, 2)
    _, b, n = maildirsize(isrv)
    m = imap_login(isrv, cert)
    caps = m.capability()[1][0].split()
    for c in (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"):
        assert c in caps, caps
    want = f'"" (STORAGE {kib(b)} 1024 MESSAGE 2 10)'.encode()
    typ, (roots, quotas) = m.getquotaroot("INBOX")
    assert typ == "OK" and roots == [b'"INBOX" ""'] and quotas == [want], (roots, quotas)
    typ, dat = m.getquotaroot("Archive")
    assert typ == "OK" and dat == [[b'"Archive" ""'], [want]], dat
    typ, dat = m.getquota('""')
    assert typ == "OK" and dat == [want], dat
    typ, dat = m.getquota("other")
    assert typ == "NO", dat
    typ, dat = m.getquotaroot("Nope")
    assert typ == "NO" and b"[NONEXISTENT]" in dat[0][0], dat
    typ, dat = m.setquota('""', "(STORAGE 99999)")
    assert typ == "NO" and b"[NOPERM]" in dat[0], dat
    # Delivered while logged in: the usage is read again each time.
    fill(isrv, 1)
    _, b, n = maildirsize(isrv)
    typ, dat = m.getquota('""')
    assert dat == [f'"" (STORAGE {kib(b)} 1024 MESSAGE 3 10)'.encode()], dat
    m.logout()


def test_imap_quota_only_the_limited_resources(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "0", "5")
    fill(isrv, 1)
    m = imap_login(isrv, cert)
    assert m.getquota('""')[1] == [b'"" (MESSAGE 1 5)']
    m.logout()
    isrv.ctl("user", "quota", "alice@example.test", "10k", "0")
    m = imap_login(isrv, cert)
    _, b, _ = maildirsize(isrv)
    assert m.getquota('""')[1] == [f'"" (STORAGE {kib(b)} 10)'.encode()]
    m.logout()


def test_imap_no_quota_user(isrv, cert):
    fill(isrv, 1)
    m = imap_login(isrv, cert)
    assert b"QUOTA" in m.capability()[1][0].split()
    typ, dat = m.getquotaroot("INBOX")
    # As Dovecot 2.3: a root without limits is not named, no QUOTA line.
    assert typ == "OK" and dat == [[b'"INBOX"'], [None]], dat
    typ, dat = m.getquota('""')
    assert typ == "OK" and dat == [None], dat
    assert m.append("INBOX", None, None, big_message(64))[0] == "OK"
    assert count(m, "INBOX") == 2
    m.logout()


def test_imap_append_over_byte_limit(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "8k", "0")
    fill(isrv, 1)
    m = imap_login(isrv, cert)
    typ, dat = m.append("INBOX", None, None, big_message(10))
    assert typ == "NO" and dat == [b"[OVERQUOTA] Quota exceeded"], dat
    assert count(m, "INBOX") == 1
    assert os.listdir(os.path.join(isrv.maildir("alice"), "tmp")) == []
    assert maildirsize(isrv)[2] == 1
    assert re.search(r"event=append result=overquota user=alice@example\.test "
                     r"messages=1 size=\d+", isrv.log())
    # A smaller one fits, and is counted.
    typ, dat = m.append("Drafts", None, None, big_message(2))
    assert typ == "OK", dat
    assert count(m, "Drafts") == 1 and maildirsize(isrv)[2] == 2
    m.logout()


def test_imap_append_over_message_limit(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "0", "2")
    fill(isrv, 1)
    m = imap_login(isrv, cert)
    assert m.append("Sent", None, None, b"Subject: a\r\n\r\na\r\n")[0] == "OK"
    typ, dat = m.append("Sent", None, None, b"Subject: b\r\n\r\nb\r\n")
    assert typ == "NO" and b"[OVERQUOTA]" in dat[0], dat
    assert count(m, "Sent") == 1 and count(m, "INBOX") == 1
    assert maildirsize(isrv)[2] == 2
    m.logout()


def test_imap_copy_over_quota_move_never(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "0", "3")
    fill(isrv, 2)
    m = imap_login(isrv, cert)
    m.select("INBOX")
    typ, dat = m.copy("1:2", "Archive")
    assert typ == "NO" and dat == [b"[OVERQUOTA] Quota exceeded"], dat
    assert count(m, "Archive") == 0 and maildirsize(isrv)[2] == 2
    assert m.copy("1", "Archive")[0] == "OK"
    assert count(m, "Archive") == 1 and maildirsize(isrv)[2] == 3
    typ, dat = m.copy("2", "Archive")
    assert typ == "NO" and b"[OVERQUOTA]" in dat[0], dat
    # At the limit a MOVE still works: it adds nothing.
    typ, dat = m._simple_command("MOVE", "1:2", "Trash")
    assert typ == "OK", dat
    assert count(m, "Trash") == 2 and count(m, "INBOX") == 0
    _, b, n = maildirsize(isrv)
    assert n == 3
    assert m.getquota('""')[1] == [b'"" (MESSAGE 3 3)']
    m.logout()


def test_imap_expunge_frees_room(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "0", "2")
    fill(isrv, 2)
    m = imap_login(isrv, cert)
    assert m.append("INBOX", None, None, b"Subject: c\r\n\r\nc\r\n")[0] == "NO"
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    _, b, n = maildirsize(isrv)
    cur = os.path.join(isrv.maildir("alice"), "cur")
    assert n == 1 and b == sum(os.path.getsize(os.path.join(cur, f))
                               for f in os.listdir(cur))
    assert m.getquota('""')[1] == [b'"" (MESSAGE 1 2)']
    typ, dat = m.append("INBOX", None, None, b"Subject: c\r\n\r\nc\r\n")
    assert typ == "OK", dat
    assert m.getquota('""')[1] == [b'"" (MESSAGE 2 2)']
    m.logout()


def test_imap_quota_change_reaches_a_session_logged_in_before(isrv, cert):
    """`posternctl user quota` changes the limits a session logged in
    before it works under (GETQUOTA, APPEND), at once, and the session
    never writes limits into maildirsize (the directory's checks own that
    line): a long IDLE session cannot keep an older, larger quota."""
    isrv.ctl("user", "quota", "alice@example.test", "1M", "10")
    fill(isrv, 1)
    m = imap_login(isrv, cert)
    assert re.search(rb' 1024 MESSAGE 1 10\)$', m.getquota('""')[1][0])
    isrv.ctl("user", "quota", "alice@example.test", "2M", "20")
    assert maildirsize(isrv)[0] == "2097152S,20C"
    assert re.search(rb' 2048 MESSAGE 1 20\)$', m.getquota('""')[1][0])
    assert m.append("INBOX", None, None, b"Subject: d\r\n\r\nd\r\n")[0] == "OK"
    limits, _, n = maildirsize(isrv)
    assert limits == "2097152S,20C" and n == 2
    # Lowered under the usage: the same session is refused now.
    isrv.ctl("user", "quota", "alice@example.test", "0", "2")
    typ, dat = m.append("INBOX", None, None, b"Subject: e\r\n\r\ne\r\n")
    assert typ == "NO" and b"[OVERQUOTA]" in dat[0], dat
    # A quota given to a user who had none at login applies too.
    isrv.ctl("user", "quota", "bob@example.test", "0", "0")
    mb = imap_login(isrv, cert, "bob@example.test", "secret-bob")
    isrv.ctl("user", "quota", "bob@example.test", "0", "1")
    fill(isrv, 1, "bob@example.test")
    typ, dat = mb.append("INBOX", None, None, b"Subject: f\r\n\r\nf\r\n")
    assert typ == "NO" and b"[OVERQUOTA]" in dat[0], dat
    mb.logout()
    m.logout()


def test_imap_missing_maildirsize_is_recounted(isrv, cert):
    isrv.ctl("user", "quota", "alice@example.test", "0", "2")
    fill(isrv, 2)
    os.unlink(os.path.join(isrv.maildir("alice"), "maildirsize"))
    m = imap_login(isrv, cert)
    typ, dat = m.append("INBOX", None, None, b"Subject: e\r\n\r\ne\r\n")
    assert typ == "NO" and b"[OVERQUOTA]" in dat[0], dat
    assert m.getquota('""')[1] == [b'"" (MESSAGE 2 2)']
    m.logout()
