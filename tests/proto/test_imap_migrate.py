"""Moving mail in (docs/admin.md, "Moving mail in from another server"): a
Maildir Dovecot has used (its index files, dovecot-uidlist, keywords,
subscriptions) copied under postern's data_dir is served as it was:
folders, subscriptions, flags and keywords, every message once."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import imapdiff
from imapdiff import ok
from conftest import run_user

USER, PASSWORD = "alice@example.test", "secret-alice"



# What Dovecot numbered, per folder: (UIDVALIDITY, UIDNEXT, {Message-ID: UID})
DOVECOT_UIDS = {}


def uid_map(fetch):
    """Message-ID -> UID from a UID FETCH of the Message-ID header."""
    out = {}
    for uid, mid in re.findall(rb"UID (\d+)[^\n]*\n?[^<]*<([^>]+)>", fetch):
        out[mid] = uid
    return out


@pytest.fixture
def dovecot_maildir():
    base = tempfile.mkdtemp(prefix="postern-migrate-", dir="/var/tmp")
    os.chmod(base, 0o755)
    master = os.path.join(base, "master")
    msgs = [(f"Subject: m{i}\r\nMessage-ID: <m{i}@old>\r\n\r\nbody {i}\r\n".encode(), "")
            for i in range(5)]
    imapdiff.make_maildir(master, msgs, ["Work", "Work/2024"])
    dv = imapdiff.Dovecot(base, master, USER, PASSWORD)
    try:
        c = imapdiff.Conn(dv.port)
        ok(c.command(f'LOGIN "{USER}" "{PASSWORD}"'))
        ok(c.command("SELECT INBOX"))
        ok(c.command("STORE 1 +FLAGS (\\Seen $Forwarded)"))
        ok(c.command("STORE 2 +FLAGS (\\Flagged project-x)"))
        ok(c.command("COPY 3:4 Work/2024"))
        ok(c.command("SUBSCRIBE Work/2024"))
        # A gap: UIDNEXT is past the last message (an append expunged)
        gone = b"Subject: gone\r\n\r\nx\r\n"
        ok(c.command(b"APPEND INBOX {%d}\r\n%s" % (len(gone), gone)))
        ok(c.command("SELECT INBOX"))
        ok(c.command("STORE 6 +FLAGS (\\Deleted)"))
        ok(c.command("EXPUNGE"))
        DOVECOT_UIDS.clear()
        for folder in ("INBOX", "Work/2024"):
            st = b"\n".join(ok(c.command(f"STATUS {folder} (UIDVALIDITY UIDNEXT)")))
            ok(c.command(f"SELECT {folder}"))
            f = b"\n".join(ok(c.command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")))
            DOVECOT_UIDS[folder] = (
                re.search(rb"UIDVALIDITY (\d+)", st).group(1),
                re.search(rb"UIDNEXT (\d+)", st).group(1),
                uid_map(f))
        ok(c.command("LOGOUT"))
        c.close()
    finally:
        dv.stop()
    md = dv.maildir
    assert os.path.exists(os.path.join(md, "dovecot-uidlist"))
    assert os.path.exists(os.path.join(md, "dovecot-keywords"))
    yield md
    shutil.rmtree(base, ignore_errors=True)


def test_a_dovecot_maildir_copied_in(make_server, dovecot_maildir):
    s = make_server(start=False, extra={"imap_listen": "127.0.0.1:0",
                                        "imap_allow_plaintext": "yes"})
    md = s.maildir("alice")
    os.makedirs(os.path.dirname(md), exist_ok=True)
    shutil.copytree(dovecot_maildir, md, symlinks=True)
    subprocess.run(["chown", "-R", run_user(), os.path.join(s.data, "mail")], check=True)
    s.start()
    c = imapdiff.Conn(s.ports["imap"])
    ok(c.command(f'LOGIN "{USER}" "{PASSWORD}"'))
    listing = b"\n".join(ok(c.command('LIST "" *')))
    for name in (b"Work", b"Work/2024", b"Sent", b"Trash"):
        assert re.search(rb'"/" "?' + re.escape(name) + rb'"?$', listing, re.M), listing
    subs = b"\n".join(ok(c.command('LSUB "" *')))
    assert re.search(rb'"/" "?Work/2024"?$', subs, re.M), subs
    r = ok(c.command("SELECT INBOX"))
    assert b"* 5 EXISTS" in r
    flags = b"\n".join(ok(c.command("FETCH 1:2 FLAGS")))
    assert re.search(rb"\* 1 FETCH \(FLAGS \([^)]*\\Seen[^)]*\$Forwarded", flags), flags
    assert re.search(rb"\* 2 FETCH \(FLAGS \([^)]*\\Flagged[^)]*project-x", flags), flags
    r = b"\n".join(ok(c.command("FETCH 1:* BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")))
    assert sorted(re.findall(rb"<(m\d)@old>", r)) == [b"m%d" % i for i in range(5)]
    r = ok(c.command("SELECT Work/2024"))
    assert b"* 2 EXISTS" in r
    ok(c.command("LOGOUT"))
    c.close()


def test_dovecot_uids_and_uidvalidity_kept(make_server, dovecot_maildir):
    """A folder Dovecot numbered keeps its UIDVALIDITY, every message its
    UID and the folder its UIDNEXT (so clients keep their caches; the
    first new message gets Dovecot's next UID); dovecot-uidlist is read
    once and set aside, so a lost index later means a new UIDVALIDITY,
    never Dovecot's old numbers again.  HIGHESTMODSEQ starts above any
    Dovecot reaches (a client's cached one is below every message's)."""
    s = make_server(start=False, extra={"imap_listen": "127.0.0.1:0",
                                        "imap_allow_plaintext": "yes"})
    md = s.maildir("alice")
    os.makedirs(os.path.dirname(md), exist_ok=True)
    shutil.copytree(dovecot_maildir, md, symlinks=True)
    with open(os.path.join(md, "dovecot-uidlist"), "rb") as f:
        assert f.read(2) == b"3 "  # the version 3 format Dovecot 2.3 writes
    subprocess.run(["chown", "-R", run_user(), os.path.join(s.data, "mail")], check=True)
    s.start()
    c = imapdiff.Conn(s.ports["imap"])
    ok(c.command(f'LOGIN "{USER}" "{PASSWORD}"'))
    for folder, (uidvalidity, uidnext, uids) in DOVECOT_UIDS.items():
        st = b"\n".join(ok(c.command(f"STATUS {folder} (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)")))
        assert re.search(rb"UIDVALIDITY (\d+)", st).group(1) == uidvalidity, (folder, st)
        assert re.search(rb"UIDNEXT (\d+)", st).group(1) == uidnext, (folder, st)
        assert int(re.search(rb"HIGHESTMODSEQ (\d+)", st).group(1)) > 1 << 40
        ok(c.command(f"SELECT {folder}"))
        f = b"\n".join(ok(c.command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")))
        assert uid_map(f) == uids, (folder, uids, f)
    assert len(DOVECOT_UIDS["INBOX"][2]) == 5
    assert int(DOVECOT_UIDS["INBOX"][1]) == 7  # 5 messages, 6 expunged
    for d in (md, os.path.join(md, ".Work.2024")):
        assert not os.path.exists(os.path.join(d, "dovecot-uidlist"))
        assert os.path.exists(os.path.join(d, "dovecot-uidlist.postern-imported"))
    assert "result=imported" in s.log()
    # New mail: Dovecot's next UID.
    new = b"Subject: new\r\n\r\nx\r\n"
    ok(c.command(b"APPEND INBOX {%d}\r\n%s" % (len(new), new)))
    ok(c.command("SELECT INBOX"))
    r = b"\n".join(ok(c.command("UID SEARCH SUBJECT new")))
    assert b"* SEARCH 7" in r, r
    ok(c.command("LOGOUT"))
    c.close()
    # The index lost (and the list set aside): a new UIDVALIDITY.
    s.stop()
    for name in os.listdir(md):
        if name.startswith("postern-index") or name.startswith("postern-log"):
            os.unlink(os.path.join(md, name))
    s.start()
    c = imapdiff.Conn(s.ports["imap"])
    ok(c.command(f'LOGIN "{USER}" "{PASSWORD}"'))
    st = b"\n".join(ok(c.command("STATUS INBOX (UIDVALIDITY)")))
    assert re.search(rb"UIDVALIDITY (\d+)", st).group(1) != DOVECOT_UIDS["INBOX"][0]
    ok(c.command("LOGOUT"))
    c.close()
