"""posternctl: every directory command, its plain-text output and its
errors (one line on stderr, non-zero exit)."""
import sqlite3
import subprocess

import pytest

from conftest import POSTERNCTL


@pytest.fixture
def ctl(make_server):
    s = make_server(start=False, populate=False)
    return s


def test_domains_and_host_aliases(ctl):
    ctl.ctl("domain", "add", "Example.TEST.")
    ctl.ctl("domain", "add", "b.example")
    assert ctl.ctl("domain", "list").stdout == "b.example\nexample.test\n"
    ctl.ctl("domain", "alias", "add", "mail.example.test", "example.test")
    assert ctl.ctl("domain", "alias", "list").stdout == "mail.example.test\texample.test\n"
    r = ctl.ctl("domain", "add", "example.test", check=False)
    assert r.returncode == 1 and r.stderr == "posternctl: domain example.test already exists\n"
    r = ctl.ctl("domain", "alias", "add", "x.example", "nosuch.example", check=False)
    assert r.returncode == 1 and "no such domain" in r.stderr
    r = ctl.ctl("domain", "add", "bad..name", check=False)
    assert r.returncode == 1 and "bad domain name" in r.stderr
    ctl.ctl("domain", "alias", "del", "mail.example.test")
    assert ctl.ctl("domain", "alias", "list").stdout == ""
    ctl.ctl("domain", "del", "b.example")
    assert ctl.ctl("domain", "list").stdout == "example.test\n"


def test_users(ctl):
    ctl.ctl("domain", "add", "example.test")
    ctl.ctl("user", "add", "Alice@Example.test", input="pw-one\n")
    ctl.ctl("user", "add", "bob@example.test", input="pw-two\n")
    assert ctl.ctl("user", "list").stdout == "alice@example.test\nbob@example.test\n"
    assert ctl.ctl("user", "list", "example.test").stdout.count("\n") == 2
    db = sqlite3.connect(ctl.data + "/postern.db")
    (h1,), = db.execute("SELECT hash FROM users WHERE local='alice'")
    assert h1.startswith("$y$")
    assert "pw-one" not in open(ctl.data + "/postern.db", "rb").read().decode("latin-1")
    ctl.ctl("user", "passwd", "alice@example.test", input="pw-new\n")
    (h2,), = db.execute("SELECT hash FROM users WHERE local='alice'")
    assert h2 != h1
    # Errors: duplicates, unknown domain, empty password, unsafe names,
    # a password on the command line is not accepted.
    for args, inp, text in [
        (("user", "add", "alice@example.test"), "x\n", "already exists as a user"),
        (("user", "add", "zed@nosuch.example"), "x\n", "no such domain"),
        (("user", "add", "zed@example.test"), "\n", "empty password"),
        (("user", "add", "zed@example.test"), "", "empty password"),
        (("user", "add", "\"../x\"@example.test"), "x\n", "plain dot-atom"),
        (("user", "add", "a/b@example.test"), "x\n", "without '/'"),
        (("user", "add", "zed@example.test", "secret"), "", "usage:"),
        (("user", "del", "zed@example.test"), "", "no such user"),
        (("user", "add", "not-an-address"), "x\n", "missing '@domain'"),
    ]:
        r = ctl.ctl(*args, input=inp, check=False)
        assert r.returncode != 0, args
        assert text in r.stderr, (args, r.stderr)
    ctl.ctl("user", "del", "bob@example.test")
    assert ctl.ctl("user", "list").stdout == "alice@example.test\n"


def test_aliases_and_lists(ctl):
    ctl.ctl("domain", "add", "example.test")
    ctl.ctl("user", "add", "alice@example.test", input="x\n")
    ctl.ctl("alias", "add", "info@example.test", "alice@example.test", "Someone@Remote.Example")
    assert ctl.ctl("alias", "list").stdout == (
        "info@example.test\talice@example.test\ninfo@example.test\tsomeone@remote.example\n")
    ctl.ctl("alias", "del", "info@example.test", "someone@remote.example")
    assert ctl.ctl("alias", "list").stdout == "info@example.test\talice@example.test\n"
    ctl.ctl("list", "add", "team@example.test")
    ctl.ctl("list", "member-add", "team@example.test", "alice@example.test", "x@remote.example")
    assert ctl.ctl("list", "show", "team@example.test").stdout == "alice@example.test\nx@remote.example\n"
    assert ctl.ctl("list", "list").stdout == "team@example.test\n"
    ctl.ctl("list", "member-del", "team@example.test", "x@remote.example")
    assert ctl.ctl("list", "show", "team@example.test").stdout == "alice@example.test\n"
    for args, text in [
        (("alias", "add", "alice@example.test", "x@remote.example"), "already exists as a user"),
        (("list", "add", "info@example.test"), "already exists as an alias"),
        (("list", "show", "info@example.test"), "no such list"),
        (("list", "member-add", "nolist@example.test", "a@b.example"), "no such list"),
        (("alias", "add", "x@example.test", "bad address"), "posternctl:"),
        (("alias", "add", "x@example.test", "a@[127.0.0.1]"), "literals"),
        (("alias", "del", "nosuch@example.test"), "no such alias"),
        (("list", "del", "nolist@example.test"), "no such list"),
        (("domain", "del", "example.test"), "delete them first"),
        (("frobnicate",), "usage:"),
    ]:
        r = ctl.ctl(*args, check=False)
        assert r.returncode != 0, args
        assert text in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 or "usage:" in r.stderr
    ctl.ctl("list", "del", "team@example.test")
    ctl.ctl("alias", "del", "info@example.test")
    assert ctl.ctl("list", "list").stdout == ""
    assert ctl.ctl("alias", "list").stdout == ""


def test_check(ctl):
    r = ctl.ctl("check")
    assert r.stdout.startswith("ok: ")
    r = subprocess.run([POSTERNCTL, "-c", "/nonexistent/postern.conf", "check"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "No such file" in r.stderr
    r = subprocess.run([POSTERNCTL], capture_output=True, text=True)
    assert r.returncode == 2 and "usage:" in r.stderr
