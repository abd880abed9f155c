"""posternctl db (issue 13): the schema commands (status, init, upgrade)
on a new, an old and a newer SQLite file, and moving a directory with
db export / db import between two real servers: the copy is exact (an
export of it is the same bytes), its users log in with their passwords
and get mail through its aliases and lists; an import is all or nothing
(a non-empty target, a bad or refused line or a cut-off file changes
nothing); the export file is the invoking user's, mode 0600."""
import json
import os
import poplib
import smtplib
import sqlite3
import stat

from conftest import tls_context, wait_for


def db_path(s):
    return os.path.join(s.data, "postern.db")


def sql(s, text):
    """Changes the file as an old or newer posternctl would have left it
    (in place: the file keeps its owner)."""
    db = sqlite3.connect(db_path(s))
    db.executescript(text)
    db.commit()
    db.close()


def user_version(s):
    db = sqlite3.connect(db_path(s))
    v = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    return v, tables


def export(s):
    r = s.ctl("db", "export")
    assert r.stderr == ""
    return r.stdout


def populated(make_server):
    """The demo directory, and what only db export carries: a quota of a
    user's own and an alias whose local part needs quoting."""
    s = make_server()
    s.ctl("user", "quota", "bob@example.test", "1M", "100")
    s.ctl("alias", "add", '"a b"@example.test', "alice@example.test")
    return s


def test_export_format(make_server, tmp_path):
    s = populated(make_server)
    path = str(tmp_path / "dir.jsonl")
    r = s.ctl("db", "export", path)
    assert r.stdout == r.stderr == ""
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()  # written as the invoking user
    assert os.listdir(tmp_path) == ["dir.jsonl"]  # no temporary left
    text = open(path).read()
    assert text == export(s)
    lines = [json.loads(l) for l in text.splitlines()]
    assert lines[0] == {"postern": "directory", "schema": 6, "version": "0.1.0"}
    assert lines[-1] == {"type": "end", "records": len(lines) - 2}
    types = [l["type"] for l in lines[1:-1]]
    order = ["domain", "host_alias", "user", "alias", "list", "member"]
    assert types == sorted(types, key=order.index)
    assert {"type": "domain", "name": "example.test"} in lines
    assert {"type": "host_alias", "alias": "mail.example.test",
            "domain": "example.test"} in lines
    users = {l["address"]: l for l in lines if l.get("type") == "user"}
    assert set(users) == {f"{u}@example.test" for u in ("alice", "bob", "carol", "postmaster")}
    assert users["bob@example.test"]["quota_bytes"] == 1 << 20
    assert users["bob@example.test"]["quota_messages"] == 100
    assert "quota_bytes" not in users["alice@example.test"]
    assert users["alice@example.test"]["hash"].startswith("$y$")
    assert {"type": "alias", "address": '"a b"@example.test',
            "target": "alice@example.test"} in lines
    assert {"type": "member", "list": "team@example.test",
            "member": "info@example.test"} in lines
    # The file is replaced whole: a second export over it is the same.
    s.ctl("db", "export", path)
    assert open(path).read() == text
    r = s.ctl("db", "export", str(tmp_path / "no" / "x.jsonl"), check=False)
    assert r.returncode == 1
    assert r.stderr.endswith("no/x.jsonl: No such file or directory\n")


def test_move_to_a_new_server(make_server, cert, tmp_path):
    src = populated(make_server)
    path = str(tmp_path / "dir.jsonl")
    src.ctl("db", "export", path)
    dst = make_server(populate=False)
    r = dst.ctl("db", "import", path)
    lines = open(path).read().splitlines()
    assert r.stdout == f"imported {len(lines) - 2} records\n"
    assert export(dst) == open(path).read()
    assert dst.ctl("user", "quota", "bob@example.test").stdout.startswith(
        "limit: bytes=1048576 messages=100 source=user")
    # The hashes came over: the same passwords work, others do not.
    with smtplib.SMTP("127.0.0.1", dst.ports["submission"], timeout=30) as c:
        c.starttls(context=tls_context(cert))
        c.login("alice@example.test", "secret-alice")
    with smtplib.SMTP("127.0.0.1", dst.ports["submission"], timeout=30) as c:
        c.starttls(context=tls_context(cert))
        try:
            c.login("alice@example.test", "secret-bob")
            raise AssertionError("a wrong password logged in")
        except smtplib.SMTPAuthenticationError:
            pass
    p = poplib.POP3("127.0.0.1", dst.ports["pop3"], timeout=30)
    p.stls(context=tls_context(cert))
    p.user("carol@mail.example.test")  # through the host alias
    assert p.pass_("secret-carol").startswith(b"+OK")
    p.quit()
    # Aliases and lists expand as they did.
    with smtplib.SMTP("127.0.0.1", dst.ports["smtp"], timeout=30) as c:
        c.sendmail("x@remote.example", ["info@example.test"], b"Subject: 1\r\n\r\none\r\n")
        c.sendmail("x@remote.example", ["team@example.test"], b"Subject: 2\r\n\r\ntwo\r\n")
        c.sendmail("x@remote.example", ['"a b"@example.test'], b"Subject: 3\r\n\r\nthree\r\n")
    wait_for(lambda: len(dst.messages("alice")) == 3 and len(dst.messages("bob")) == 2
             and len(dst.messages("carol")) == 1, what="deliveries")


def test_import_into_a_non_empty_directory_is_refused(make_server, tmp_path):
    src = populated(make_server)
    path = str(tmp_path / "dir.jsonl")
    src.ctl("db", "export", path)
    dst = make_server(populate=False)
    dst.ctl("domain", "add", "other.test")
    before = export(dst)
    r = dst.ctl("db", "import", path, check=False)
    assert r.returncode == 1
    assert "not empty (1 domain)" in r.stderr
    assert r.stdout == ""
    assert export(dst) == before


def import_bad(make_server, text):
    dst = make_server(populate=False, start=False)
    dst.ctl("db", "init")
    empty = export(dst)
    r = dst.ctl("db", "import", input=text, check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert export(dst) == empty  # nothing imported
    return r.stderr


def test_a_bad_line_imports_nothing(make_server):
    src = populated(make_server)
    lines = export(src).splitlines(keepends=True)
    # A line the parser refuses, in the middle of the file.
    bad = lines[:5] + ['{"type":"domain","name":"x.test","owner":"me"}\n'] + lines[5:]
    err = import_bad(make_server, "".join(bad))
    assert err == 'posternctl: line 6: unknown key "owner"\n'
    # A line the directory refuses: a user whose domain is not there.
    bad = lines[:5] + ['{"type":"user","address":"u@nowhere.test","hash":"$y$x"}\n'] + lines[5:]
    assert import_bad(make_server, "".join(bad)).startswith(
        "posternctl: line 6: no such domain")
    # A cut-off file: every line good, the end missing.
    err = import_bad(make_server, "".join(lines[:-3]))
    assert err == f"posternctl: line {len(lines) - 2}: the end line is missing (a cut-off file?)\n"
    # Lines lost in the middle.
    err = import_bad(make_server, "".join(lines[:3] + lines[4:]))
    assert f"the end line counts {len(lines) - 2} records, the file has {len(lines) - 3}" in err
    # A header from a newer posternctl.
    err = import_bad(make_server, "".join(
        ['{"postern":"directory","schema":7,"version":"9.9"}\n'] + lines[1:]))
    assert err == "posternctl: line 1: directory schema 7 is newer than this posternctl (6)\n"
    assert "no header" in import_bad(make_server, "".join(lines[1:]))
    assert "no header: an empty file" in import_bad(make_server, "")
    long_line = '{"type":"domain","name":"' + "a" * 70000 + '"}\n'
    assert "line 2: longer than 65536 bytes" in import_bad(
        make_server, lines[0] + long_line + lines[-1])


def test_status_init_upgrade_on_a_new_file(make_server):
    s = make_server(populate=False, start=False)
    r = s.ctl("db", "status", check=False)
    assert (r.returncode, r.stdout) == (3, "no schema (0 of 6): run posternctl db init\n")
    r = s.ctl("db", "upgrade", check=False)
    assert r.returncode == 1
    assert r.stderr == "posternctl: directory: no schema (run posternctl db init)\n"
    assert user_version(s) == (0, set())
    r = s.ctl("db", "init")
    assert r.stdout == "applied 1: base schema\napplied 2: user_quotas\napplied 3: authfail\napplied 4: notify\napplied 5: admins\napplied 6: send_limits\nschema 6 of 6\n"
    r = s.ctl("db", "status")
    assert r.stdout == "schema 6 of 6\n"
    # Again: says so, changes nothing.
    assert s.ctl("db", "init").stdout == "directory already has schema 6 of 6\n"
    assert s.ctl("db", "upgrade").stdout == "already at schema 6\n"
    assert user_version(s)[0] == 5
    s.populate()
    s.start()


def test_status_and_upgrade_of_an_old_file(make_server):
    s = make_server(start=False)
    sql(s, "DROP TABLE user_quotas; PRAGMA user_version = 0;")
    with open(db_path(s), "rb") as f:
        old = f.read()
    r = s.ctl("db", "status", check=False)
    assert (r.returncode, r.stdout) == (
        3, "schema 1 of 6: upgrade needed: run posternctl db upgrade\n")
    # An old file exports (without quotas) and stays as it was.
    text = export(s)
    assert json.loads(text.splitlines()[0])["schema"] == 1
    with open(db_path(s), "rb") as f:
        assert f.read() == old
    # init on it: says so, then does what upgrade does.
    r = s.ctl("db", "init")
    assert r.stdout == ("directory already has schema 1 of 6\n"
                        "applied 2: user_quotas\napplied 3: authfail\n"
                        "applied 4: notify\napplied 5: admins\napplied 6: send_limits\nschema 6 of 6\n")
    assert user_version(s)[0] == 5 and "user_quotas" in user_version(s)[1]
    sql(s, "DROP TABLE user_quotas; PRAGMA user_version = 0;")
    r = s.ctl("db", "upgrade")
    assert r.stdout == "applied 2: user_quotas\napplied 3: authfail\napplied 4: notify\napplied 5: admins\napplied 6: send_limits\nschema 6 of 6\n"
    assert s.ctl("db", "status").stdout == "schema 6 of 6\n"
    # The rows are still there: the export is the same but for the header.
    assert export(s).splitlines()[1:] == text.splitlines()[1:]
    s.start()


def test_a_newer_file_is_refused(make_server, tmp_path):
    s = make_server(start=False)
    sql(s, "PRAGMA user_version = 7;")
    for cmd in ("status", "init", "upgrade", "export"):
        r = s.ctl("db", cmd, check=False)
        assert r.returncode == 1, cmd
        assert r.stderr == "posternctl: directory schema 8 is newer than this posternctl (6)\n"
    # The export to a file leaves no file and no temporary behind.
    r = s.ctl("db", "export", str(tmp_path / "x.jsonl"), check=False)
    assert r.returncode == 1 and os.listdir(tmp_path) == []
    assert user_version(s)[0] == 7


def test_import_file_must_be_a_regular_file(make_server, tmp_path):
    """db import FILE, run as root: a link is not followed and a FIFO is
    refused at once (it would hang the import), nothing imported."""
    src = make_server()
    good = tmp_path / "dir.jsonl"
    good.write_text(export(src))
    dst = make_server(populate=False, start=False)
    link = tmp_path / "link.jsonl"
    os.symlink(good, link)
    r = dst.ctl("db", "import", str(link), check=False)
    assert r.returncode == 1 and "link.jsonl" in r.stderr, r.stderr
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    r = dst.ctl("db", "import", str(fifo), check=False)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    assert dst.ctl("domain", "list").stdout == ""
    assert dst.ctl("db", "import", str(good)).returncode == 0
