"""directory = postgresql with the database out of reach (a closed
loopback port), against the real daemon: posternd still starts (the
workers' handles connect lazily; the start-up check warns), RCPT answers
451 4.3.0 and AUTH 454 4.7.0, and the outage is logged once for the
process, not once per worker or per lookup.  posternctl check names the
reason.  (With a real database: the tests that use tests/pg/pgtest.sh.)"""
import base64
import smtplib

from conftest import free_port

PLAINTEXT = {"auth_require_tls": "no"}


def down_config():
    # Nothing listens there: every connect is refused at once.
    return dict(PLAINTEXT, directory="postgresql",
                pg_conninfo=f"postgresql://postern@127.0.0.1:{free_port()}/postern",
                pg_connect_timeout="1s")


def test_starts_tempfails_and_logs_the_outage_once(make_server):
    s = make_server(down_config(), populate=False)
    log = s.log()
    assert "event=directory-check backend=postgresql" in log, log
    for i in range(6):
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.ehlo("client.example")
            c.mail("x@remote.example")
            code, text = c.rcpt(f"user{i}@example.test")
            assert (code, text[:5]) == (451, b"4.3.0"), (code, text)
    with smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30) as c:
        c.ehlo("client.example")
        cred = base64.b64encode(b"\0alice@example.test\0secret").decode()
        code, text = c.docmd("AUTH", "PLAIN " + cred)
        assert (code, text[:5]) == (454, b"4.7.0"), (code, text)
    log = s.log()
    assert log.count("event=directory-down backend=postgresql") == 1, log
    assert "event=directory-up" not in log
    assert "result=tempfail" in log


def test_check_names_the_database(make_server):
    s = make_server(down_config(), populate=False, start=False)
    # A warning, not an error: posternd starts without the database
    # (test_starts_tempfails_and_logs_the_outage_once) and serves once it is back.
    r = s.ctl("check", check=False)
    assert r.returncode == 0, r
    assert "warning: " in r.stdout and "directory: PostgreSQL: " in r.stdout, r.stdout
    assert "Connection refused" in r.stdout, r.stdout
    assert "posternd starts, and answers 4xx" in r.stdout, r.stdout


def test_password_in_conninfo_is_a_config_error(make_server):
    cfg = down_config()
    cfg["pg_conninfo"] = cfg["pg_conninfo"].replace("postern@", "postern:pw@")
    s = make_server(cfg, populate=False, start=False)
    r = s.ctl("check", check=False)
    assert r.returncode != 0
    assert "pg_conninfo: the password goes in pg_passfile" in r.stderr, r.stderr
