"""Logins under attack, part two (the review of the lock-out rework): a
flood of password checks beside local mail, the lock as an existence
oracle, imported hashes and timing, filling the lock-out table, and one
account filling the trusted-pair table.  Clients bind distinct loopback
addresses (127.x.y.z) to play distinct attackers."""
import base64
import collections
import os
import socket
import sqlite3
import statistics
import time
import warnings

from test_auth import PLAINTEXT, plain, pop_login, smtp_auth, smtp_from


def open_ehlo(server, source):
    k = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=120,
                                 source_address=(source, 0))
    f = k.makefile("rb")
    assert f.readline().startswith(b"220")
    k.sendall(b"EHLO client.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    return k, f


def rcpt_time(server):
    """Seconds a local RCPT takes to answer (from a session of its own)."""
    c = smtp_from(server, "127.0.0.1")
    assert c.mail("someone@remote.example")[0] == 250
    t = time.perf_counter()
    code, _ = c.rcpt("alice@example.test")
    dt = time.perf_counter() - t
    c.quit()
    assert code == 250
    return dt


def test_login_flood_does_not_delay_local_mail(make_server):
    """400 sessions from 100 addresses send AUTH PLAIN for unknown names
    at once (each under auth_max_failures, so nothing locks).  Before,
    every one cost a yescrypt hash on the pool that also serves RCPT: a
    local RCPT waited for the flood (25 s for 600).  Now logins have their
    own pool, at most auth_max_pending are checked or queued, the rest
    answer 454 at once, and a RCPT answers as quickly as ever."""
    s = make_server(dict(PLAINTEXT))
    socks = [open_ehlo(s, f"127.6.0.{1 + n // 4}") for n in range(400)]
    for n, (k, _) in enumerate(socks):
        k.sendall(b"AUTH " + plain(f"nosuch{n}@example.test", "x").encode() + b"\r\n")
    time.sleep(0.2)
    during = rcpt_time(s)
    replies = [f.readline().decode() for _, f in socks]
    for k, f in socks:
        f.close()
        k.close()
    codes = collections.Counter(r[:3] for r in replies)
    assert during < 3.0, f"a local RCPT took {during:.1f}s during the flood ({codes})"
    assert set(codes) <= {"535", "454"}, codes
    busy = [r for r in replies if r.startswith("454")]
    assert busy and all("4.7.0 Too many logins in progress" in r for r in busy), codes
    assert codes["535"] >= 32, codes
    assert "event=auth result=busy reason=pending" in s.log()
    # The refused ones counted nothing; a real login works at once, also
    # from an address of the flood.
    assert smtp_auth(s, "127.6.0.1", "alice@example.test", "secret-alice")[0] == 235
    assert pop_login(s, "127.6.0.2", "bob@example.test", "secret-bob").startswith("+OK")


def import_hashes(server, users):
    """Writes users with hashes imported from elsewhere (as a migration
    from Dovecot or /etc/shadow would) straight into the directory."""
    con = sqlite3.connect(os.path.join(server.data, "postern.db"))
    for user, h in users.items():
        con.execute("INSERT INTO users VALUES(?,?,?)", (user, "example.test", h))
    con.commit()
    con.close()


def mkhash(method, password, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(getattr(crypt, method), **kw))


def test_imported_fast_hashes_take_as_long_as_yescrypt(make_server):
    """A $6$ (sha512-crypt) or cheap bcrypt hash verifies in a fraction of
    yescrypt's time: before, a wrong password for such a user answered
    7 times sooner than one for an unknown name, telling that the account
    exists.  Every check now takes at least as long as a yescrypt one."""
    s = make_server(dict(PLAINTEXT, auth_max_failures="1000",
                         auth_account_max_failures="1000"))
    import_hashes(s, {"six": mkhash("METHOD_SHA512", "pw6"),
                      "blow": mkhash("METHOD_BLOWFISH", "pw2", rounds=1 << 5)})

    def median(user):
        c = smtp_from(s, "127.0.0.90")
        times = []
        for i in range(7):
            t = time.perf_counter()
            code, _ = c.docmd("AUTH", plain(user, f"wrong{i}"))
            times.append(time.perf_counter() - t)
            assert code == 535
        c.close()
        return statistics.median(times)

    unknown = median("nosuch@example.test")
    yes = median("alice@example.test")
    for user in ("six@example.test", "blow@example.test"):
        t = median(user)
        assert t >= unknown / 2 and t >= yes / 2, \
            f"{user}: {t * 1000:.1f} ms, unknown {unknown * 1000:.1f} ms, yescrypt {yes * 1000:.1f} ms"
    # The imported hashes still log in.
    assert smtp_auth(s, "127.0.0.91", "six@example.test", "pw6")[0] == 235
    assert pop_login(s, "127.0.0.91", "blow@example.test", "pw2").startswith("+OK")


def test_account_lock_does_not_tell_which_accounts_exist(make_server):
    """Defaults (5 per client, 10 per account): 11 wrong passwords from
    3 clients, spelt directly, in capitals and through the host alias.
    Before, an existing account locked (535 x9, then 421) and an unknown
    name never did (535 x11): the lock told which accounts exist."""
    s = make_server(dict(PLAINTEXT))
    res = {}
    for base, local in ((70, "bob"), (80, "nosuch")):
        codes = []
        for i in range(11):
            domain = ("example.test", "mail.example.test", "EXAMPLE.test")[i % 3]
            codes.append(smtp_auth(s, f"127.0.0.{base + i // 4}",
                                   f"{local}@{domain}", f"guess{i}")[0])
        res[local] = codes
    assert res["bob"] == res["nosuch"], res
    assert res["bob"] == [535] * 9 + [421] * 2, res
    assert 'event=auth-lockout account="nosuch@example.test" scope=account' in s.log()
    # POP3 answers alike too.
    assert pop_login(s, "127.0.0.99", "nosuch@example.test", "x") == \
        pop_login(s, "127.0.0.98", "bob@example.test", "x")


def auth_no_hash(server, ip):
    """AUTH PLAIN with an authorisation identity other than the user:
    a failure counted for the client, with no password check at all."""
    c = smtp_from(server, ip)
    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"x\0y@z\0p").decode())
    c.close()
    return code


def test_full_lockout_table_evicts_and_never_refuses(make_server):
    """Failures that cost no hash filled the table (auth_table_limit),
    after which every new client was answered 454 for the whole window:
    a login DoS.  Now the table evicts (unlocked records with the fewest
    failures first), and a real user from a new address logs in."""
    s = make_server(dict(PLAINTEXT, auth_table_limit="10"))
    # A locked client before the flood (auth_max_failures = 5).
    assert [auth_no_hash(s, "127.1.9.9") for _ in range(5)][-1] == 421
    codes = [auth_no_hash(s, f"127.1.0.{1 + i}") for i in range(40)]
    assert set(codes) == {535}, codes
    assert smtp_auth(s, "127.2.0.1", "alice@example.test", "secret-alice")[0] == 235
    assert pop_login(s, "127.2.0.2", "alice@example.test", "secret-alice").startswith("+OK")
    assert "event=auth-table-evict kind=client" in s.log()
    # The locked client was kept (evicted last).
    assert auth_no_hash(s, "127.1.9.9") == 421


def test_one_account_cannot_strip_others_of_trust(make_server):
    """carol logs in from 105 addresses (auth_table_limit 100): before,
    the trusted-pair table was full for 30 days, bob's login from home was
    silently not trusted, and 4 guesses elsewhere locked him out at home
    too.  Now an account keeps at most auth_trusted_per_account pairs and
    a success is always trusted."""
    for limit, logins in (("100", 105), ("10", 14)):
        s = make_server(dict(PLAINTEXT, auth_table_limit=limit,
                             auth_max_failures="3", auth_account_max_failures="4"))
        for i in range(logins):
            assert smtp_auth(s, f"127.3.0.{1 + i}", "carol@example.test",
                             "secret-carol")[0] == 235
        assert smtp_auth(s, "127.4.0.1", "bob@example.test", "secret-bob")[0] == 235
        codes = [smtp_auth(s, f"127.5.0.{1 + i}", "bob@example.test", f"g{i}")[0]
                 for i in range(4)]
        assert codes == [535, 535, 535, 421], codes
        assert smtp_auth(s, "127.5.0.9", "bob@example.test", "secret-bob")[0] == 421
        assert smtp_auth(s, "127.4.0.1", "bob@example.test", "secret-bob")[0] == 235, \
            f"bob locked out where he logged in before (auth_table_limit {limit})"
        log = s.log()
        if limit == "100":
            assert 'event=auth-trusted-evict account="carol@example.test" limit=16' in log
        else:
            assert "event=auth-table-evict kind=trusted" in log
        s.stop()


def test_sender_match_spellings(make_server, cert):
    """After AUTH, the user's own addresses are accepted in every host
    alias's spelling (they were refused with 553); another user's address
    in any spelling, and the null sender, are refused with 553 5.7.1."""
    from conftest import tls_context
    s = make_server()
    c = smtp_from(s)
    c.starttls(context=tls_context(cert))
    c.ehlo("client.example")
    c.login("alice@example.test", "secret-alice")
    got = {}
    for frm in ("<alice@example.test>", "<ALICE@Mail.Example.Test>",
                "<alice@mail.example.test>", "<info@mail.example.test>",
                "<bob@mail.example.test>", "<bob@example.test>", "<>"):
        got[frm] = c.docmd("MAIL FROM:" + frm)[0]
        c.rset()
    c.quit()
    assert got == {"<alice@example.test>": 250, "<ALICE@Mail.Example.Test>": 250,
                   "<alice@mail.example.test>": 250, "<info@mail.example.test>": 250,
                   "<bob@mail.example.test>": 553, "<bob@example.test>": 553,
                   "<>": 553}, got
