"""The login lock-out shared by the nodes of one PostgreSQL directory
(issue 13; docs/admin.md "Lock-out", 7.): failures counted at node A and
at node B add up, so a brute-forcer cannot spread its guesses over the
nodes.  Each case is set so that neither node's own table could lock on
its share alone: a lock seen here is the shared one.  Real SMTP AUTH
(smtplib) and POP3 from different loopback addresses (127.0.0.0/8 is all
local on Linux)."""
import base64
import smtplib
import time

from conftest import wait_for
from test_multinode import fail_auths, pop_login, smtp_auth, two_nodes

# auth_account_max_failures = 4 and auth_max_failures = 3: two failures
# at each node lock the account, two at A and one at B lock the client.
LIMITS = {"auth_account_max_failures": "4", "auth_max_failures": "3",
          "auth_failure_window": "10m", "auth_lockout": "15m"}


def test_account_guesses_on_two_nodes_add_up(make_server, pg):
    a, b = two_nodes(make_server, pg, LIMITS)
    # Two wrong passwords for alice at each node, each from a client of
    # its own (no client reaches auth_max_failures).
    assert fail_auths(a, "alice@example.test", 1, "127.0.0.21") == [535]
    assert fail_auths(b, "alice@example.test", 1, "127.0.0.22") == [535]
    assert fail_auths(a, "alice@example.test", 1, "127.0.0.23") == [535]
    # The fourth failure, at B, locks the account everywhere.
    assert fail_auths(b, "alice@example.test", 1, "127.0.0.24") == [421]
    assert "event=auth-lockout" in b.log() and "scope=shared" in b.log()
    # The right password, from clients that never failed, at both nodes
    # (spelt through the host alias too): refused as locked.
    for node, src in ((a, "127.0.0.25"), (b, "127.0.0.26")):
        code, text = smtp_auth(node, "alice@example.test", "secret-alice", src)
        assert (code, text.split()[0]) == (421, "4.7.0"), (code, text)
    code, _ = smtp_auth(a, "alice@mail.example.test", "secret-alice", "127.0.0.27")
    assert code == 421
    assert pop_login(b, "alice@example.test", "secret-alice", "127.0.0.28").startswith(
        "-ERR [AUTH]")
    # Another account is not touched, at either node.
    assert smtp_auth(a, "bob@example.test", "secret-bob", "127.0.0.29")[0] == 235
    assert smtp_auth(b, "bob@example.test", "secret-bob", "127.0.0.29")[0] == 235
    # The row is in the shared table, with its lock.
    rows = a.psql("SELECT key, failures, locked_until > now() FROM authfail "
                  "WHERE key = 'a:alice@example.test'")
    assert rows.strip() == "a:alice@example.test|4|t"


def test_client_guesses_on_two_nodes_add_up(make_server, pg):
    a, b = two_nodes(make_server, pg, LIMITS)
    src = "127.0.0.31"
    # Two failures at A, for two accounts (no account near its limit).
    assert fail_auths(a, "bob@example.test", 1, src) == [535]
    assert fail_auths(a, "carol@example.test", 1, src) == [535]
    # The third, at B, locks the client at both nodes.
    assert fail_auths(b, "nobody@example.test", 1, src) == [421]
    assert smtp_auth(a, "carol@example.test", "secret-carol", src)[0] == 421
    assert smtp_auth(b, "carol@example.test", "secret-carol", src)[0] == 421
    # Other clients log in as before.
    assert smtp_auth(b, "carol@example.test", "secret-carol", "127.0.0.32")[0] == 235
    # A's log says why it refused a client A itself saw fail only twice.
    assert f"result=locked client={src}" in a.log()


def test_a_pair_trusted_at_a_node_keeps_its_user_in(make_server, pg):
    """The node's trusted pairs are not shared: alice, who logged in at A
    from 127.0.0.41 before, still logs in there while her account is
    locked by guesses at both nodes; at B (no trust) she is refused."""
    a, b = two_nodes(make_server, pg, LIMITS)
    home = "127.0.0.41"
    assert smtp_auth(a, "alice@example.test", "secret-alice", home)[0] == 235
    codes = (fail_auths(a, "alice@example.test", 1, "127.0.0.42")
             + fail_auths(b, "alice@example.test", 1, "127.0.0.43")
             + fail_auths(a, "alice@example.test", 1, "127.0.0.44")
             + fail_auths(b, "alice@example.test", 1, "127.0.0.45"))
    assert codes == [535, 535, 535, 421]
    assert smtp_auth(a, "alice@example.test", "secret-alice", home)[0] == 235
    assert smtp_auth(b, "alice@example.test", "secret-alice", home)[0] == 421


def test_the_shared_lock_ends(make_server, pg):
    """auth_lockout passes: the account logs in again at both nodes, and
    a failure after the window starts the count again at 1."""
    limits = dict(LIMITS, auth_lockout="2s", auth_failure_window="2s")
    a, b = two_nodes(make_server, pg, limits)
    fail_auths(a, "bob@example.test", 2, "127.0.0.51")
    assert fail_auths(b, "bob@example.test", 2, "127.0.0.52") == [535, 421]
    assert smtp_auth(a, "bob@example.test", "secret-bob", "127.0.0.53")[0] == 421
    time.sleep(2.5)
    wait_for(lambda: smtp_auth(a, "bob@example.test", "secret-bob", "127.0.0.54")[0] == 235,
             timeout=20, what="the lock to end at A")
    assert smtp_auth(b, "bob@example.test", "secret-bob", "127.0.0.55")[0] == 235
    assert fail_auths(b, "bob@example.test", 1, "127.0.0.56") == [535]
    rows = a.psql("SELECT failures FROM authfail WHERE key = 'a:bob@example.test'")
    assert rows.strip() == "1"


def test_one_node_directory_keeps_its_own_lockout(make_server):
    """SQLite (one node): no shared table; the node's own lock-out as
    before (four failures for one account from four clients lock it)."""
    s = make_server(dict(LIMITS, auth_require_tls="no"), directory="sqlite")
    codes = [smtp_auth(s, "alice@example.test", "bad", f"127.0.0.6{i}")[0] for i in range(4)]
    assert codes == [535, 535, 535, 421]


def test_a_name_of_arbitrary_bytes_is_counted(make_server, pg):
    """A login name that is not UTF-8 (the database's encoding) is a
    failed login like any other (535), counted in the shared table under
    an escaped key: not a directory error (454) that counts nothing."""
    a, b = two_nodes(make_server, pg, LIMITS)
    codes = []
    for node, src in ((a, "127.0.0.71"), (b, "127.0.0.72")):
        c = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30,
                         source_address=(src, 0))
        c.ehlo("client.example")
        creds = base64.b64encode(b"\0al\xffice@example.test\0x").decode()
        codes.append(c.docmd("AUTH", "PLAIN " + creds)[0])
        c.close()
    assert codes == [535, 535]
    rows = a.psql("SELECT failures FROM authfail WHERE key = 'a:al%FFice@example.test'")
    assert rows.strip() == "2"
