"""Moving a directory between SQLite and PostgreSQL with posternctl db
export / db import (issue 13: "a one-node site can grow into several"):
SQLite -> PostgreSQL -> SQLite is exact (each export the same bytes), and
the PostgreSQL node serves what it got: the users log in with their old
passwords, mail reaches them through the aliases and lists, quotas of
their own apply.  An import into PostgreSQL is all or nothing too."""
import poplib
import smtplib

from conftest import wait_for

PLAIN = {"auth_require_tls": "no", "pop3_allow_plaintext": "yes"}


def export(s):
    r = s.ctl("db", "export")
    assert r.stderr == ""
    return r.stdout


def test_sqlite_to_postgresql_and_back(make_server):
    old = make_server(PLAIN, directory="sqlite")
    old.ctl("user", "quota", "bob@example.test", "1M", "100")
    old.ctl("alias", "add", '"a b"@example.test', "alice@example.test")
    text = export(old)
    pg = make_server(PLAIN, directory="postgresql", populate=False)
    assert pg.ctl("db", "import", input=text).returncode == 0
    assert export(pg) == text
    back = make_server(PLAIN, directory="sqlite", populate=False)
    assert back.ctl("db", "import", input=export(pg)).returncode == 0
    assert export(back) == text
    # The PostgreSQL node serves the imported directory.
    with smtplib.SMTP("127.0.0.1", pg.ports["smtp"], timeout=30) as c:
        c.login("carol@example.test", "secret-carol")
    with smtplib.SMTP("127.0.0.1", pg.ports["smtp"], timeout=30) as c:
        c.sendmail("x@remote.example", ["team@example.test", '"a b"@example.test'],
                   b"Subject: moved\r\n\r\nto the list and the quoted alias\r\n")
    wait_for(lambda: len(pg.messages("alice")) == 1 and len(pg.messages("carol")) == 1
             and len(pg.messages("bob")) == 1, what="list expansion on PostgreSQL")
    p = poplib.POP3("127.0.0.1", pg.ports["pop3"], timeout=30)
    p.user("alice@example.test")
    p.pass_("secret-alice")
    assert p.stat()[0] == 1
    p.quit()
    # bob's own quota came across (it is in the export compared above).
    assert pg.psql("SELECT bytes, messages FROM user_quotas WHERE local = 'bob'").strip() \
        == "1048576|100"


def test_import_into_postgresql_is_all_or_nothing(make_server):
    src = make_server(directory="sqlite")
    lines = export(src).splitlines(keepends=True)
    pg = make_server(directory="postgresql", populate=False)
    # A user in a domain the file never adds, in the middle: refused.
    bad = lines[:3] + ['{"type":"user","address":"eve@nowhere.test","hash":"x"}\n'] + lines[3:]
    bad[-1] = bad[-1].replace('"records":%d' % (len(lines) - 2), '"records":%d' % (len(lines) - 1))
    r = pg.ctl("db", "import", input="".join(bad), check=False)
    assert r.returncode == 1
    assert "line 4:" in r.stderr, r.stderr
    assert pg.psql("SELECT count(*) FROM domains").strip() == "0"
    assert pg.psql("SELECT count(*) FROM users").strip() == "0"
    # The good file then goes in whole.
    assert pg.ctl("db", "import", input="".join(lines)).returncode == 0
    assert pg.psql("SELECT count(*) FROM users").strip() == "4"
    # A second import into the now non-empty directory is refused.
    r = pg.ctl("db", "import", input="".join(lines), check=False)
    assert r.returncode == 1 and pg.psql("SELECT count(*) FROM users").strip() == "4"
