"""The JSON API under /api/v1/ with bearer tokens (posternctl admin
token NAME): every route once, its refusals (no token, a bad or deleted
token, bad JSON, unknown routes and members, a domain admin outside its
domain), and that the API never reads the session cookie."""
import json
import re
import smtplib

from conftest import Admin, wait_for


def token(s, name="boss"):
    t = s.ctl("admin", "token", name).stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"pst_[0-9a-f]{8}_[0-9a-f]{64}", t), t
    return t


def rcpt(s, to):
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.ehlo("x")
    c.mail("someone@example.net")
    code, _ = c.rcpt(to)
    c.quit()
    return code


def test_tokens(admin_server):
    # Bad tokens count as failed logins of the client: room for them here.
    s = admin_server({"auth_max_failures": "50"})
    a = Admin(s)
    t = token(s)
    st, body = a.api("GET", "/api/v1/users", t)
    assert st == 200 and any(u["address"] == "alice@example.test" for u in body["users"])
    for bad in ("", "pst_", "pst_zzzzzzzz_" + "0" * 64, t[:-1],
                t + "0", "Basic " + t, "pst_" + "0" * 8 + "_" + "0" * 64):
        st, body = a.api("GET", "/api/v1/users", bad)
        assert st == 401, bad
    # A deleted token stops working at once.
    tid = t.split("_")[1]
    s.ctl("admin", "token", "del", tid)
    st, _ = a.api("GET", "/api/v1/users", t)
    assert st == 401
    assert "event=admin-token result=fail" in s.log()
    # A session cookie opens no API route.
    a.login()
    st, _, _ = a.request("GET", "/api/v1/users")
    assert st == 401
    # The secret is stored only as its hash.
    t2 = token(s)
    if s.pg is not None:
        dump = s.psql("SELECT * FROM admin_tokens")
    else:
        import os
        import sqlite3
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(s.data, "postern.db"),
                             uri=True)
        dump = "\n".join(db.iterdump())
        db.close()
    assert t2.split("_")[1] in dump and t2.split("_")[2] not in dump


def test_directory_routes(admin_server):
    s = admin_server()
    a, t = Admin(s), token(s)

    def ok(method, path, body=None, status=200):
        st, b = a.api(method, path, t, body)
        assert st == status, (method, path, st, b)
        return b

    b = ok("GET", "/api/v1/domains")
    assert "example.test" in b["domains"]
    assert {"alias": "mail.example.test", "domain": "example.test"} in b["host_aliases"]
    ok("POST", "/api/v1/domains", {"domain": "api.test"})
    assert "api.test" in s.ctl("domain", "list").stdout
    ok("POST", "/api/v1/host-aliases", {"alias": "mx.api.test", "domain": "api.test"})
    ok("DELETE", "/api/v1/host-aliases/mx.api.test")
    ok("DELETE", "/api/v1/domains/api.test")
    assert "api.test" not in s.ctl("domain", "list").stdout
    b = ok("POST", "/api/v1/domains", {"domain": "bad..name"}, 422)
    assert "bad domain" in b["error"]
    ok("POST", "/api/v1/users", {"address": "erin@example.test", "password": "pw-erin"})
    assert rcpt(s, "erin@example.test") == 250
    b = ok("POST", "/api/v1/users", {"address": "erin@example.test", "password": "x"}, 422)
    assert b["error"]
    ok("POST", "/api/v1/users/erin@example.test/password", {"password": "pw-erin-2"})
    ok("POST", "/api/v1/users/erin@example.test/quota", {"bytes": "1M", "messages": "5"})
    b = ok("GET", "/api/v1/users?domain=example.test")
    erin = [u for u in b["users"] if u["address"] == "erin@example.test"][0]
    assert erin["quota_bytes"] == 1048576 and erin["quota_messages"] == 5
    assert erin["disabled"] is False and erin["last_login"] is None
    ok("POST", "/api/v1/users/erin@example.test/disable", {})
    b = ok("GET", "/api/v1/users")
    assert [u for u in b["users"] if u["address"] == "erin@example.test"][0]["disabled"]
    ok("POST", "/api/v1/users/erin@example.test/enable", {})
    ok("DELETE", "/api/v1/users/erin@example.test")
    assert "erin@" not in s.ctl("user", "list").stdout
    ok("POST", "/api/v1/aliases", {"address": "help@example.test", "target": "bob@example.test"})
    b = ok("GET", "/api/v1/aliases")
    assert {"address": "help@example.test", "target": "bob@example.test"} in b["aliases"]
    ok("DELETE", "/api/v1/aliases/help@example.test?target=bob@example.test")
    assert rcpt(s, "help@example.test") == 550
    ok("POST", "/api/v1/lists", {"address": "crew@example.test"})
    ok("POST", "/api/v1/lists/crew@example.test/members", {"member": "alice@example.test"})
    b = ok("GET", "/api/v1/lists/crew@example.test/members")
    assert b["members"] == ["alice@example.test"]
    assert "crew@example.test" in ok("GET", "/api/v1/lists")["lists"]
    ok("DELETE", "/api/v1/lists/crew@example.test/members/alice@example.test")
    ok("DELETE", "/api/v1/lists/crew@example.test")
    log = s.log()
    assert "event=admin-change admin=boss via=api what=user-add" in log
    assert "pw-erin" not in log


def test_bad_requests(admin_server):
    s = admin_server()
    a, t = Admin(s), token(s)
    for body in ("{", "[]", '{"a":1}x', '{"a":1,"a":2}', '{"address":"\\u0000"}',
                 "\xff", "{" + ",".join('"k%d":1' % i for i in range(40)) + "}"):
        st, b = a.api("POST", "/api/v1/users", t, body)
        assert st == 400 and "JSON" in b["error"], body
    st, b = a.api("GET", "/api/v1/nope", t)
    assert st == 404
    st, b = a.api("GET", "/api/v2/users", t)
    assert st == 404
    st, b = a.api("POST", "/api/v1/relay", t, {"relay": "none", "user": "root"})
    assert st == 400 and "unknown member" in b["error"]
    st, b = a.api("PATCH", "/api/v1/users", t, {})
    assert st in (404, 405, 501)  # evhttp refuses methods it was not given


def test_bad_tokens_lock_the_client_out(admin_server):
    s = admin_server({"auth_max_failures": "3"})
    a = Admin(s)
    for _ in range(3):
        assert a.api("GET", "/api/v1/users", "pst_00000000_" + "1" * 64)[0] == 401
    # Guessing tokens costs the client its logins, like guessing passwords.
    st, _, body = a.request("POST", "/login", {"name": "boss", "password": "x"})
    assert st == 429


def test_relay_routes(admin_server):
    s = admin_server()
    a, t = Admin(s), token(s)
    st, b = a.api("GET", "/api/v1/relay", t)
    assert st == 200 and b["relay"] == "none" and b["relay_addresses"] == []
    assert b["auth_advertise"] is True and b["accept"] is None
    assert rcpt(s, "x@remote.example") == 550
    st, b = a.api("POST", "/api/v1/relay", t,
                  {"relay": "addresses", "relay_addresses": ["127.0.0.1", "192.0.2.0/24"]})
    assert st == 200 and b["ok"] and b["applied"] and b["relay"] == "addresses", b
    assert rcpt(s, "x@remote.example") == 250
    st, b = a.api("GET", "/api/v1/relay", t)
    assert b["relay_addresses"] == ["127.0.0.1", "192.0.2.0/24"]
    before = open(s.conf, "rb").read()
    st, b = a.api("POST", "/api/v1/relay", t, {"relay_addresses": ["300.1.1.1"]})
    assert st == 422 and b["error"]
    assert open(s.conf, "rb").read() == before
    assert rcpt(s, "x@remote.example") == 250
    st, b = a.api("POST", "/api/v1/relay-check", t,
                  {"client": "192.0.2.9", "from": "a@example.net", "to": "x@remote.example"})
    assert st == 200 and b["decision"] == "ACCEPT" and b["rule"], b
    st, b = a.api("GET", "/api/v1/relay-check?client=203.0.113.1&from=a%40example.net"
                  "&to=x%40remote.example", t)
    assert st == 200 and b["decision"] == "REJECT" and b["code"].startswith("550")
    st, b = a.api("GET", "/api/v1/relay-check?client=203.0.113.1&from=a%40example.net"
                  "&to=alice%40example.test", t)
    assert b["decision"] == "ACCEPT" and b["mailboxes"] == ["alice@example.test"]
    st, b = a.api("POST", "/api/v1/relay-check", t, {"client": "nope", "to": "x@y"})
    assert st == 400
    assert 'what=config object="relay" old="none" new="addresses"' in s.log()


def test_queue_stats_log_routes(admin_server):
    s = admin_server({"relayhost": "[127.0.0.1]:1", "queue_retry_min": "1h",
                      "queue_retry_max": "1h"})
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.sendmail("sender@example.net", ["fwd@example.test"], b"Subject: q\r\n\r\nbody\r\n")
    c.quit()
    a, t = Admin(s), token(s)
    msgs = wait_for(lambda: a.api("GET", "/api/v1/queue", t)[1]["messages"], what="queued")
    m = msgs[0]
    assert m["sender"] == "sender@example.net"
    assert m["recipients"][0]["address"] == "someone@remote.example"
    st, b = a.api("GET", "/api/v1/queue/" + m["id"], t)
    assert st == 200 and b["messages"][0]["id"] == m["id"]
    st, b = a.api("GET", "/api/v1/queue/ffffffff", t)
    assert st == 404
    st, b = a.api("POST", "/api/v1/queue/%s/hold" % m["id"], t, {})
    assert st == 200 and b["done"] == 1
    assert a.api("GET", "/api/v1/queue/" + m["id"], t)[1]["messages"][0]["held"]
    st, b = a.api("POST", "/api/v1/queue/all/flush", t, {})
    assert st == 200 and b["skipped_held"] == 1
    st, b = a.api("POST", "/api/v1/queue/%s/release" % m["id"], t, {})
    assert st == 200
    st, b = a.api("POST", "/api/v1/queue/%s/delete" % m["id"], t, {})
    assert st == 400 and "confirm" in b["error"]
    st, b = a.api("POST", "/api/v1/queue/%s/delete" % m["id"], t, {"confirm": True})
    assert st == 200 and b["done"] == 1
    assert a.api("GET", "/api/v1/queue", t)[1]["messages"] == []
    st, b = a.api("POST", "/api/v1/queue/nothex!/flush", t, {})
    assert st == 400
    st, b = a.api("GET", "/api/v1/stats", t)
    assert st == 200 and b["total"]["received"] == 1 and len(b["hours"]) == 24
    assert b["queue"]["messages"] == 0
    st, b = a.api("GET", "/api/v1/log?q=sender@example.net", t)
    assert st == 200 and b["lines"] and all("sender@example.net" in l for l in b["lines"])


def test_domain_admin_api(admin_server):
    s = admin_server()
    s.ctl("domain", "add", "other.test")
    s.ctl("user", "add", "zed@other.test", input="pw\n")
    a, t = Admin(s), token(s, "dom")
    st, b = a.api("GET", "/api/v1/users", t)
    assert st == 200
    addrs = [u["address"] for u in b["users"]]
    assert "alice@example.test" in addrs and "zed@other.test" not in addrs
    st, b = a.api("GET", "/api/v1/users?domain=other.test", t)
    assert "zed@other.test" not in json.dumps(b)
    for method, path, body in (("DELETE", "/api/v1/users/zed@other.test", None),
                               ("POST", "/api/v1/users", {"address": "n@other.test",
                                                          "password": "p"}),
                               ("GET", "/api/v1/lists/x@other.test/members", None)):
        st, b = a.api(method, path, t, body)
        assert st == 403, (path, st, b)
    for path in ("/api/v1/relay", "/api/v1/domains", "/api/v1/queue", "/api/v1/stats",
                 "/api/v1/log", "/api/v1/relay-check"):
        st, b = a.api("GET", path, t)
        assert st == 403, path
    assert "zed@other.test" in s.ctl("user", "list").stdout
