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
from conftest import run_user

USER, PASSWORD = "alice@example.test", "secret-alice"


def ok(lines):
    assert lines[-1].split(b" ")[1] == b"OK", lines
    return lines


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
