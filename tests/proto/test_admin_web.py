"""The web admin over HTTPS (http.client) against the real daemon: every
page, login and its lock-out, sessions, CSRF, escaping, static files,
domain admins, Mail Relay Options applied live (and a bad save changing
nothing), the directory pages, the queue page, the log page, the
dashboard's counters against a known load, /metrics and the connection
bound."""
import os
import pathlib
import re
import smtplib
import socket
import ssl
import tempfile
import time

import pytest

from conftest import ADMIN_PASSWORD, Admin, wait_for

PAGES = ["/", "/relay", "/relay-check", "/domains", "/users", "/aliases",
         "/queue", "/log", "/users/edit?a=alice%40example.test"]


def rcpt(server, to, frm="someone@example.net"):
    s = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20)
    s.ehlo("client.example")
    assert s.mail(frm)[0] == 250
    code, text = s.rcpt(to)
    s.quit()
    return code, text.decode()


def flash(body):
    m = re.search(r'id="flash">(.*?)</p>', body, re.S)
    return m.group(1) if m else None


# ---- access -------------------------------------------------------------

def test_nothing_without_login(admin_server):
    s = admin_server()
    a = Admin(s)
    for p in PAGES:
        st, h, body = a.get(p)
        assert st == 303 and h["location"] == "/login", (p, st)
        assert "alice" not in body
    # A POST without a session changes nothing and goes to the login.
    st, h, _ = a.post("/users", {"op": "user-del", "a": "alice@example.test",
                                 "confirm": "yes"}, csrf=False)
    assert st == 303 and h["location"] == "/login"
    assert "alice@example.test" in s.ctl("user", "list").stdout
    # The API and /metrics want a bearer token.
    st, _ = a.api("GET", "/api/v1/users", "pst_00000000_" + "0" * 64)
    assert st == 401
    st, h, _ = a.request("GET", "/api/v1/users", cookie=False)
    assert st == 401 and h.get("www-authenticate") == "Bearer"
    st, _, _ = a.get("/metrics")
    assert st == 401
    # A made-up cookie is no session.
    a.cookie = "postern_session=" + "a" * 64
    st, h, _ = a.get("/")
    assert st == 303 and h["location"] == "/login"


def test_login_logout_and_headers(admin_server):
    s = admin_server()
    a = Admin(s)
    st, h, body = a.get("/login")
    assert st == 200 and 'name="password"' in body
    st, h, body = a.request("POST", "/login", {"name": "boss", "password": "wrong"})
    assert st == 403 and "Wrong name or password" in body and a.cookie is None
    st, h, body = a.request("POST", "/login", {"name": "nobody", "password": "x"})
    assert st == 403 and "Wrong name or password" in body
    st, h, _ = a.request("POST", "/login", {"name": "BOSS", "password": ADMIN_PASSWORD})
    assert st == 303 and a.cookie
    cookie = h["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie, cookie
    st, h, body = a.get("/")
    assert st == 200 and "Dashboard" in body
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-store"
    # No resource from elsewhere: every src/href is local.
    for page in PAGES:
        st, _, body = a.get(page)
        assert st == 200, page
        for ref in re.findall(r'(?:src|href)="([^"]*)"', body):
            assert ref.startswith("/") and not ref.startswith("//"), (page, ref)
    old = a.cookie
    st, h, _ = a.post("/logout", {})
    assert st == 303 and h["location"] == "/login"
    # The old cookie is dead on the server, not just forgotten.
    a.cookie = old
    st, h, _ = a.get("/")
    assert st == 303 and h["location"] == "/login"
    log = s.log()
    assert "event=admin-login result=ok admin=boss client=127.0.0.1" in log
    assert "event=admin-login result=fail admin=nobody" in log
    assert "event=admin-logout admin=boss" in log


def test_login_lockout_shared_with_mail(admin_server):
    s = admin_server({"auth_max_failures": "3", "auth_lockout": "1m"})
    a = Admin(s)
    for i in range(3):
        st, _, body = a.request("POST", "/login", {"name": "boss", "password": "bad"})
        # The failure that locks says so at once.
        assert st == (429 if i == 2 else 403), (i, st)
    # Locked: the right password is refused too, and says so.
    st, _, body = a.request("POST", "/login", {"name": "boss", "password": ADMIN_PASSWORD})
    assert st == 429 and "locked out" in body and a.cookie is None
    assert "event=admin-login result=locked" in s.log()
    # The same client is locked for SMTP AUTH as well (one table).
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=20)
    c.starttls(context=ssl.create_default_context(cafile=s.cert))
    c.ehlo("client.example")
    with pytest.raises(smtplib.SMTPException) as e:
        c.login("alice@example.test", "secret-alice")
    # 421 and the connection closed (smtplib may see only the close).
    assert isinstance(e.value, smtplib.SMTPServerDisconnected) or "421" in str(e.value)
    assert "event=auth-lockout client=127.0.0.1 scope=client" in s.log()


def test_csrf_required(admin_server):
    s = admin_server()
    a = Admin(s).login()
    form = {"op": "user-add", "a": "eve@example.test", "b": "pw"}
    for csrf in (None, "", "0" * 64, a.csrf[:-1] + ("0" if a.csrf[-1] != "0" else "1")):
        f = dict(form)
        if csrf is not None:
            f["csrf"] = csrf
        st, _, body = a.request("POST", "/users", f)
        assert st == 403 and "CSRF" in body, csrf
    # Right token, but from another site's page (Origin): refused.
    f = dict(form, csrf=a.csrf)
    st, _, _ = a.request("POST", "/users", f, {"Origin": "https://evil.example"})
    assert st == 403
    assert "eve@example.test" not in s.ctl("user", "list").stdout
    assert "event=admin-csrf admin=boss" in s.log()
    # The right token from our own origin works.
    st, _, _ = a.request("POST", "/users", f,
                         {"Origin": f"https://127.0.0.1:{a.port}"})
    assert st == 303
    assert "eve@example.test" in s.ctl("user", "list").stdout
    # Nor can another site's page log the browser in (login CSRF).
    b = Admin(s)
    st, _, _ = b.request("POST", "/login", {"name": "boss", "password": ADMIN_PASSWORD},
                         {"Origin": "https://evil.example"})
    assert st == 403 and b.cookie is None
    st, _, _ = b.request("POST", "/login", {"name": "boss", "password": ADMIN_PASSWORD},
                         {"Origin": "null"})
    assert st == 403 and b.cookie is None


def test_static_files_and_bad_paths(admin_server):
    s = admin_server()
    a = Admin(s)
    st, h, body = a.get("/static/admin.css")
    assert st == 200 and h["content-type"].startswith("text/css") and "body{" in body
    st, h, body = a.get("/static/admin.js")
    assert st == 200 and "use strict" in body
    for p in ("/static/../postern.conf", "/static/%2e%2e/postern.conf",
              "/static/..%2fpostern.conf", "/static/admin.css/../../etc/passwd",
              "/static/", "/static/nope.css", "/static/%00admin.css",
              "/static\\..\\postern.conf", "/%2e%2e/%2e%2e/etc/passwd"):
        st, _, body = a.get(p)
        assert st in (400, 404), (p, st)
        assert "root:" not in body and "data_dir" not in body, p


def test_user_values_escaped(admin_server):
    s = admin_server()
    a = Admin(s).login()
    evil = "<script>alert(1)</script>"
    # Echoed in the relay check's form and its error.
    st, _, body = a.get("/relay-check?client=127.0.0.1&from=" + evil +
                        "&to=x%40remote.example&helo=" + evil)
    assert st == 200 and "<script>alert" not in body and "&lt;script&gt;" in body
    # Shown in the flash of a refused add.
    st, _, body = a.follow(a.post("/users", {"op": "user-add", "a": evil + "@example.test",
                                             "b": "pw"}))
    assert "<script>alert" not in body and "&lt;script&gt;" in body
    # A queued message's sender (a quoted local part) in the queue and log pages.
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.ehlo("x")
    c.mail('"<script>alert(1)</script>"@example.net')
    c.rcpt("fwd@example.test")  # an alias to a remote address: queued
    c.data(b"Subject: x\r\n\r\nbody\r\n")
    c.quit()
    for page in ("/queue", "/log?q=script"):
        st, _, body = a.get(page)
        assert st == 200 and "<script>alert" not in body, page
    st, _, body = a.get("/queue")
    assert "&lt;script&gt;" in body


# ---- domain admins -------------------------------------------------------

def test_domain_admin_sees_only_its_domain(admin_server):
    s = admin_server()
    s.ctl("domain", "add", "other.test")
    s.ctl("user", "add", "zed@other.test", input="pw-zed\n")
    s.ctl("alias", "add", "hidden@other.test", "zed@other.test")
    a = Admin(s).login("dom")
    st, _, body = a.get("/users")
    assert st == 200 and "alice@example.test" in body and "zed@other.test" not in body
    st, _, body = a.get("/users?domain=other.test")
    assert "zed@other.test" not in body
    st, _, body = a.get("/users/edit?a=zed%40other.test")
    assert st == 403
    assert a.get("/users/edit?a=alice%40example.test")[0] == 200
    st, _, body = a.get("/aliases")
    assert "info@example.test" in body and "hidden@other.test" not in body
    # The server's pages are not a domain admin's.
    for p in ("/", "/relay", "/relay-check", "/domains", "/queue", "/log"):
        st, _, body = a.get(p)
        assert st == 403, p
    # Changes outside its domain are refused and change nothing.
    for op, obj in (("user-del", "zed@other.test"), ("user-add", "new@other.test"),
                    ("user-disable", "zed@other.test"), ("alias-add", "x@other.test")):
        st, _, body = a.follow(a.post("/users" if op.startswith("user") else "/aliases",
                                      {"op": op, "a": obj, "b": "alice@example.test",
                                       "confirm": "yes"}))
        assert "not in your domain" in flash(body), (op, body)
    assert "zed@other.test" in s.ctl("user", "list").stdout
    assert "new@other.test" not in s.ctl("user", "list").stdout
    # Domain ops are a full admin's.
    st, _, body = a.post("/domains", {"op": "domain-add", "a": "mine.test"})
    assert st == 403
    assert "mine.test" not in s.ctl("domain", "list").stdout
    # Its own domain: allowed.
    st, _, body = a.follow(a.post("/users", {"op": "user-add", "a": "dan@example.test",
                                             "b": "pw-dan"}))
    assert "dan@example.test added" in flash(body)


# ---- Mail Relay Options ----------------------------------------------------

def relay_form(a, **kw):
    f = {"relay": "none", "relay_addresses": "", "relay_domains": "",
         "auth_advertise": "yes", "auth_require_tls": "yes",
         "auth_sender_match": "submission"}
    f.update(kw)
    return a.post("/relay", f)


def test_relay_options_apply_live(admin_server):
    s = admin_server()
    with open(s.conf, "a") as f:
        f.write("# keep this comment\n")
    before = open(s.conf).read()
    a = Admin(s).login()
    st, _, body = a.get("/relay")
    assert st == 200 and 'value="none" id="relay-none" checked' in body
    # The modes a forged sender gets past say so: local-hosts,
    # local-users, anyone.
    for mode in ("local-hosts", "local-users", "anyone"):
        block = body.split('id="relay-%s"' % mode, 1)[1].split("</div>", 1)[0]
        assert 'class="forged"' in block, mode
    for mode in ("none", "addresses"):
        block = body.split('id="relay-%s"' % mode, 1)[1].split("</div>", 1)[0]
        assert 'class="forged"' not in block, mode
    assert rcpt(s, "someone@remote.example")[0] == 550
    st, _, body = a.follow(relay_form(a, relay="addresses",
                                      relay_addresses="127.0.0.1\r\n192.0.2.0/24"))
    assert "Saved and applied: relay = addresses" in flash(body)
    code, text = rcpt(s, "someone@remote.example")
    assert code == 250, text
    after = open(s.conf).read()
    assert "# keep this comment" in after
    assert "relay = addresses" in after and "relay_addresses = 127.0.0.1 192.0.2.0/24" in after
    # Everything else byte for byte as it was.
    kept = [l for l in before.splitlines() if not l.startswith("relay")]
    assert [l for l in after.splitlines() if not l.startswith("relay")] == kept
    log = s.log()
    assert re.search(r'event=admin-change admin=boss via=web what=config object="relay" '
                     r'old="none" new="addresses"', log), log[-2000:]
    assert "event=reload result=ok relay=addresses" in log
    # The warnings of posternctl check come with the save.
    st, _, body = a.follow(relay_form(a, relay="anyone"))
    assert "Warnings" in flash(body) and "open relay" in flash(body).lower()
    st, _, body = a.follow(relay_form(a, relay="none"))
    assert rcpt(s, "someone@remote.example")[0] == 550
    # Saving what is there already changes nothing.
    st, _, body = a.follow(relay_form(a, relay="none"))
    assert "Nothing changed" in flash(body)


def test_relay_options_bad_value_changes_nothing(admin_server):
    s = admin_server()
    a = Admin(s).login()
    before = open(s.conf, "rb").read()
    for bad in ({"relay": "everyone"}, {"relay_addresses": "10.0.0.0/99"},
                {"relay_addresses": "not-an-address"}, {"auth_sender_match": "maybe"},
                {"relay_domains": "bad..domain\x01"}):
        st, _, body = relay_form(a, **bad)
        assert st == 422 and "Not saved" in body, bad
        assert open(s.conf, "rb").read() == before, bad
    # The running server is unchanged too.
    assert rcpt(s, "someone@remote.example")[0] == 550
    assert "event=reload" not in s.log()
    assert not [n for n in os.listdir(os.path.dirname(s.conf)) if ".tmp" in n]


def test_accept_list_editor(admin_server):
    # Where the run user can read it (a reload reads it as that user).
    d = tempfile.mkdtemp(prefix="postern-accept-")
    os.chmod(d, 0o755)
    acc = pathlib.Path(d) / "accept.txt"
    acc.write_text("# the accept list\n")
    s = admin_server({"accept_file": str(acc), "relay": "local-hosts"})
    a = Admin(s).login()
    st, _, body = a.get("/relay")
    assert "# the accept list" in body
    assert rcpt(s, "x@remote.example")[0] == 550
    st, _, body = a.follow(relay_form(a, relay="local-hosts",
                                      accept="# the accept list\n127.0.0.1\n"))
    assert "applied" in flash(body)
    assert acc.read_text() == "# the accept list\n127.0.0.1\n"
    assert rcpt(s, "x@remote.example")[0] == 250
    # A bad line: refused, the file as it was.
    st, _, body = relay_form(a, relay="local-hosts", accept="not an entry with spaces\n")
    assert st == 422
    assert acc.read_text() == "# the accept list\n127.0.0.1\n"
    # A good list with a bad setting beside it: nothing is written at all.
    conf = open(s.conf, "rb").read()
    st, _, body = relay_form(a, relay="local-hosts", relay_addresses="300.0.0.1",
                             accept="# the accept list\n192.0.2.1\n")
    assert st == 422 and "Not saved" in body
    assert acc.read_text() == "# the accept list\n127.0.0.1\n"
    assert open(s.conf, "rb").read() == conf
    # A browser's CRLF line ends are stored as LF.
    st, _, body = a.follow(relay_form(a, relay="local-hosts",
                                      accept="# the accept list\r\n127.0.0.1\r\n::1"))
    assert acc.read_text() == "# the accept list\n127.0.0.1\n::1\n"


# ---- relay check -----------------------------------------------------------

def test_relay_check_page(admin_server):
    s = admin_server()
    a = Admin(s).login()
    st, _, body = a.get("/relay-check")
    assert st == 200 and 'id="relay-check"' in body
    st, _, body = a.get("/relay-check?client=192.0.2.7&from=a%40example.net"
                        "&to=x%40remote.example&port=smtp")
    assert 'id="decision">REJECT' in body and "550" in body
    st, _, body = a.get("/relay-check?client=192.0.2.7&from=a%40example.net"
                        "&to=alice%40example.test")
    assert 'id="decision">ACCEPT' in body and "Mailbox" in body
    st, _, body = a.get("/relay-check?client=192.0.2.7&auth=alice%40example.test"
                        "&from=alice%40example.test&to=x%40remote.example&port=submission")
    assert 'id="decision">ACCEPT' in body
    st, _, body = a.get("/relay-check?client=not-ip&from=a%40b&to=c%40d")
    assert "not an IP address" in body


# ---- directory pages ---------------------------------------------------------

def test_domains_users_aliases_lists(admin_server):
    s = admin_server()
    a = Admin(s).login()
    st, _, body = a.get("/domains")
    assert "example.test" in body and "mail.example.test" in body
    st, _, body = a.follow(a.post("/domains", {"op": "domain-add", "a": "New.Test"}))
    assert "new.test added" in flash(body) or "New.Test added" in flash(body)
    assert "new.test" in s.ctl("domain", "list").stdout
    st, _, body = a.follow(a.post("/domains", {"op": "host-alias-add", "a": "mx.new.test",
                                               "b": "new.test"}))
    assert "mx.new.test" in s.ctl("domain", "alias", "list").stdout
    # Removing wants the confirmation.
    st, _, body = a.follow(a.post("/domains", {"op": "domain-del", "a": "new.test"}))
    assert "tick" in flash(body) and "new.test" in s.ctl("domain", "list").stdout
    a.post("/domains", {"op": "host-alias-del", "a": "mx.new.test", "confirm": "yes"})
    st, _, body = a.follow(a.post("/domains", {"op": "domain-del", "a": "new.test",
                                               "confirm": "yes"}))
    assert "new.test" not in s.ctl("domain", "list").stdout
    # Users: add, then it receives mail and logs in; password; quota; disable.
    st, _, body = a.follow(a.post("/users", {"op": "user-add", "a": "dave@example.test",
                                             "b": "pw-dave-1"}))
    assert "dave@example.test added" in flash(body) and "dave@example.test" in body
    assert rcpt(s, "dave@example.test")[0] == 250
    st, _, body = a.follow(a.post("/users", {"op": "user-add", "a": "dave@example.test",
                                             "b": "x"}))
    assert "Not done" in flash(body)
    st, _, body = a.follow(a.post("/users", {"op": "user-add", "a": "a/b@example.test",
                                             "b": "x"}))
    assert "Not done" in flash(body)
    st, _, body = a.follow(a.post("/users", {"op": "user-passwd", "a": "dave@example.test",
                                             "b": "pw-dave-2"}))
    assert "new password" in flash(body)
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=20)
    c.starttls(context=ssl.create_default_context(cafile=s.cert))
    c.login("dave@example.test", "pw-dave-2")
    c.quit()
    st, _, body = a.follow(a.post("/users", {"op": "user-quota", "a": "dave@example.test",
                                             "c": "10M", "d": "100"}))
    assert "quota set" in flash(body) and "10485760 bytes, 100 messages" in body
    assert ('what=user-quota object="dave@example.test" old="default" '
            'new="bytes 10M, messages 100"') in s.log()
    st, _, body = a.follow(a.post("/users", {"op": "user-quota", "a": "dave@example.test",
                                             "c": "1M", "d": ""}))
    assert "1048576 bytes, no limit on messages" in body
    assert ('old="bytes 10485760, messages 100" new="bytes 1M, messages 0"') in s.log()
    st, _, body = a.follow(a.post("/users", {"op": "user-quota", "a": "dave@example.test",
                                             "c": "lots"}))
    assert "bad size" in flash(body)
    st, _, body = a.follow(a.post("/users", {"op": "user-disable", "a": "dave@example.test"}))
    assert "disabled" in flash(body)
    assert 'what=user-disable object="dave@example.test" old="enabled" new="disabled"' in s.log()
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=20)
    c.starttls(context=ssl.create_default_context(cafile=s.cert))
    with pytest.raises(smtplib.SMTPAuthenticationError):
        c.login("dave@example.test", "pw-dave-2")
    c.close()
    a.post("/users", {"op": "user-enable", "a": "dave@example.test"})
    st, _, body = a.follow(a.post("/users", {"op": "user-del", "a": "dave@example.test",
                                             "confirm": "yes"}))
    assert "dave@example.test" not in s.ctl("user", "list").stdout
    # Aliases and lists.
    st, _, body = a.follow(a.post("/aliases", {"op": "alias-add", "a": "sales@example.test",
                                               "b": "Bob@Example.Test"}))
    assert "sales@example.test" in body
    assert rcpt(s, "sales@example.test")[0] == 250
    a.post("/aliases", {"op": "alias-del", "a": "sales@example.test", "b": "bob@example.test"})
    assert rcpt(s, "sales@example.test")[0] == 550
    a.post("/aliases", {"op": "list-add", "a": "staff@example.test"})
    st, _, body = a.follow(a.post("/aliases", {"op": "member-add", "a": "staff@example.test",
                                               "b": "carol@example.test"}))
    assert "member added" in flash(body)
    assert "carol@example.test" in s.ctl("list", "show", "staff@example.test").stdout
    a.post("/aliases", {"op": "member-del", "a": "staff@example.test",
                        "b": "carol@example.test"})
    assert "carol" not in s.ctl("list", "show", "staff@example.test").stdout
    a.post("/aliases", {"op": "list-del", "a": "staff@example.test", "confirm": "yes"})
    assert "staff@example.test" not in s.ctl("list", "list").stdout
    log = s.log()
    assert 'what=user-add object="dave@example.test" old="-" new="(password set)"' in log
    assert "pw-dave" not in log  # never a password in the log
    assert 'what=alias-add object="sales@example.test"' in log


# ---- queue --------------------------------------------------------------------

def queue_one(s, to="fwd@example.test"):
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.ehlo("x")
    c.sendmail("sender@example.net", [to], b"Subject: queued\r\nX-Test: 1\r\n\r\nbody\r\n")
    c.quit()


def test_queue_page(admin_server):
    # Nothing listens where the next hop is: the message stays queued.
    s = admin_server({"relayhost": "[127.0.0.1]:1", "queue_retry_min": "1h",
                      "queue_retry_max": "1h"})
    queue_one(s)
    a = Admin(s).login()
    ids = wait_for(lambda: re.findall(r'/queue/show\?id=([0-9A-Fa-f]+)', a.get("/queue")[2]),
                   what="a queue entry")
    qid = ids[0]
    st, _, body = a.get("/queue/show?id=" + qid)
    assert st == 200 and "sender@example.net" in body and "X-Test: 1" in body
    # The header block line by line, as in the file.
    headers = re.search(r'<pre class="log" id="headers">(.*?)</pre>', body, re.S).group(1)
    assert "\nX-Test: 1" in headers and "\ufffd" not in headers
    assert "someone@remote.example" in body
    st, _, _ = a.get("/queue/show?id=ffffffff")
    assert st == 404
    st, _, body = a.get("/queue?q=nomatch")
    assert qid not in body
    st, _, body = a.follow(a.post("/queue", {"op": "hold", "a": qid}))
    assert "hold" in flash(body) and "held" in body
    st, _, body = a.get("/queue?held=yes")
    assert qid in body
    st, _, body = a.follow(a.post("/queue", {"op": "release", "a": qid}))
    assert "release" in flash(body)
    st, _, body = a.follow(a.post("/queue", {"op": "flush", "a": "all"}))
    assert "flush all: 1 message" in flash(body)
    wait_for(lambda: "event=control" in s.log() or "flush" in s.log(), what="flush logged")
    # Delete wants the confirmation; then the message is gone.
    st, _, body = a.follow(a.post("/queue", {"op": "delete", "a": qid}))
    assert "Not done" in flash(body)
    st, _, body = a.follow(a.post("/queue", {"op": "delete", "a": qid, "confirm": "yes"}))
    assert "delete" in flash(body)
    assert qid not in a.get("/queue")[2]
    st, _, body = a.follow(a.post("/queue", {"op": "delete", "a": "../../etc",
                                             "confirm": "yes"}))
    assert "bad queue id" in flash(body)
    st, _, body = a.follow(a.post("/queue", {"op": "explode", "a": "all"}))
    assert "unknown" in flash(body)


def test_queue_filter_search_is_bounded(admin_server):
    """The queue page filters on the event loop: it compares at most
    200000 addresses with the filter, and says when it stopped."""
    s = admin_server({"relayhost": "[127.0.0.1]:1", "queue_retry_min": "1h",
                      "queue_retry_max": "1h"})
    s.stop()
    entries = os.path.join(s.data, "queue", "entries")
    now = int(time.time())
    rcpts = "".join("rcpt\tpending\t0\t%d\tr%d@remote.example\t\n" % (now + 3600, i)
                    for i in range(1000))
    for k in range(210):
        qid = "%013X" % (0xA000000000000 + k)
        with open(os.path.join(entries, qid + ".msg"), "w") as f:
            f.write("postern-queue 1\nid\t%s\nfrom\tsender@example.net\narrival\t%d\n"
                    "flags\t\nsize\t20\n%s\nSubject: q\n\nbody\n" % (qid, now, rcpts))
    s.start()
    a = Admin(s).login()
    st, _, body = a.get("/queue?q=r999%40remote")
    assert st == 200
    count = re.search(r'id="queue-count">(.*?)</p>', body, re.S).group(1)
    assert "of 210 messages shown" in count and "the search stopped" in count, count
    shown = len(re.findall(r"/queue/show\?id=", body))
    assert 0 < shown < 210, shown
    # Without a filter nothing is compared: all 210 listed.
    st, _, body = a.get("/queue")
    assert len(re.findall(r"/queue/show\?id=", body)) == 210
    assert "the search stopped" not in body


# ---- log ------------------------------------------------------------------------

def test_log_page(admin_server):
    s = admin_server()
    assert rcpt(s, "someone@remote.example")[0] == 550
    a = Admin(s).login()
    st, _, body = a.get("/log?q=remote.example")
    assert st == 200
    lines = re.search(r'<pre class="log" id="log">(.*?)</pre>', body, re.S).group(1)
    assert "someone@remote.example" in lines
    assert all("remote.example" in l.lower() for l in lines.strip().splitlines())
    st, _, body = a.get("/log?q=127.0.0.1")
    assert "127.0.0.1" in body
    st, _, body = a.get("/log?q=no-such-thing-anywhere")
    assert "0 lines" in body


# ---- dashboard and metrics --------------------------------------------------------

def test_dashboard_counts_a_known_load(admin_server):
    s = admin_server({"admin_metrics_allow": "127.0.0.1"})
    n, m = 3, 2
    for i in range(n):
        c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
        c.sendmail("x@example.net", ["alice@example.test"], b"Subject: %d\r\n\r\nhi\r\n" % i)
        c.quit()
    for i in range(m):
        assert rcpt(s, f"r{i}@remote.example")[0] == 550
    a = Admin(s).login()

    def card(body, name):
        return int(re.search(r'id="total-%s"><div>[^<]*</div><div class="big">(\d+)' % name,
                             body).group(1))
    body = wait_for(lambda: (lambda b: b if card(b, "delivered_local") >= n else None)(
        a.get("/")[2]), what="deliveries counted")
    assert card(body, "received") == n
    assert card(body, "delivered_local") == n
    assert card(body, "relay_refused") == m
    assert card(body, "relayed") == 0
    assert body.count("<svg") >= 8 and "<script" not in body.split("</head>", 1)[1]
    assert 'id="listeners"' in body and 'id="cert"' in body and "expires in" in body
    # /metrics from an allowed address needs no token.
    st, h, text = a.request("GET", "/metrics", cookie=False)
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    assert re.search(r"^postern_messages_received_total %d$" % n, text, re.M), text[:500]
    assert "# TYPE" in text


def test_metrics_needs_token_or_allowed_address(admin_server):
    s = admin_server()
    a = Admin(s)
    st, _, _ = a.get("/metrics")
    assert st == 401
    tok = s.ctl("admin", "token", "boss").stdout.strip().splitlines()[-1]
    assert tok.startswith("pst_")
    st, _, text = a.request("GET", "/metrics", headers={"Authorization": "Bearer " + tok},
                            cookie=False)
    assert st == 200 and "postern_" in text
    st, _, _ = a.request("GET", "/metrics", headers={"Authorization": "Bearer " + tok[:-1] + "x"},
                         cookie=False)
    assert st == 401


# ---- bounds ------------------------------------------------------------------------

def test_connection_bound_and_sizes(admin_server):
    s = admin_server({"admin_max_connections": "2"})
    ctx = ssl.create_default_context(cafile=s.cert)
    held = []
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=10)
        held.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
    # A third waits in the backlog: no TLS handshake while two are open.
    raw = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=2)
    with pytest.raises((socket.timeout, TimeoutError, ssl.SSLError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    assert "event=admin-full connections=2" in s.log()
    held[0].close()
    time.sleep(0.5)
    st, _, _ = Admin(s).get("/login")
    assert st == 200
    for h in held[1:]:
        h.close()
    a = Admin(s).login()
    # Headers and bodies past their bounds are refused whole.
    st, _, _ = a.request("GET", "/", headers={"X-Big": "a" * 20000})
    assert st in (400, 413, 431)
    # (evhttp answers 413 and closes while the client still sends.)
    try:
        st, _, _ = a.request("POST", "/users", "a=" + "b" * (1 << 21),
                             {"Content-Type": "application/x-www-form-urlencoded"})
        assert st in (400, 413)
    except (ssl.SSLError, ConnectionError):
        pass
    assert Admin(s).login().get("/users")[0] == 200
    # Methods other than GET and POST on pages.
    st, _, _ = a.request("DELETE", "/users")
    assert st == 405


def test_slow_and_greedy_clients(admin_server):
    """A client trickling its request (a byte now and then, which the idle
    timeout alone never ends) is cut ADMIN_REQUEST_S (15 s) after its
    connect; one client holds at most 8 connections, others still get in."""
    s = admin_server()
    ctx = ssl.create_default_context(cafile=s.cert)
    raw = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=30)
    slow = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    t0, cut = time.time(), False
    while time.time() - t0 < 25:
        try:
            slow.sendall(b"X-A: b\r\n")
            time.sleep(1)
        except (OSError, ssl.SSLError):
            cut = True
            break
    assert cut and 13 < time.time() - t0 < 25, time.time() - t0
    wait_for(lambda: "event=admin-cut" in s.log(), what="the cut logged")
    held = []
    for _ in range(8):
        r = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=10)
        held.append(ctx.wrap_socket(r, server_hostname="127.0.0.1"))
    r = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=10)
    with pytest.raises((OSError, ssl.SSLError)):
        t = ctx.wrap_socket(r, server_hostname="127.0.0.1")
        t.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        if not t.recv(100):
            raise OSError("closed")
    assert "event=admin-refuse client=127.0.0.1" in s.log()
    # Another client address is not held to 127.0.0.1's count.
    r = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=10,
                                 source_address=("127.0.0.2", 0))
    t = ctx.wrap_socket(r, server_hostname="127.0.0.1")
    t.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert t.recv(20).startswith(b"HTTP/1.1 200")
    t.close()
    for h in held:
        h.close()
    time.sleep(0.5)
    assert Admin(s).get("/login")[0] == 200


def test_sessions_end_with_their_admin(admin_server):
    """A deleted admin's sessions, and those of an admin whose password
    changed, end within ADMIN_RECHECK_S (10 s) and a request."""
    s = admin_server()
    s.ctl("admin", "add", "temp", input=ADMIN_PASSWORD + "\n")
    gone, moved, stays = Admin(s).login("temp"), Admin(s).login("dom"), Admin(s).login()
    s.ctl("admin", "del", "temp")
    s.ctl("admin", "passwd", "dom", input="another-pw-1\n")

    def ended(a):
        st, h, _ = a.get("/users")
        return st == 303 and h["location"] == "/login"
    wait_for(lambda: ended(gone) and ended(moved), timeout=30, what="sessions ended")
    assert not ended(stays)
    assert 'event=admin-logout admin=temp reason="the admin was deleted or changed"' in s.log()
    # A change of nothing (the same domain, the same hash) keeps a session.
    time.sleep(11)
    assert not ended(stays)
    assert not ended(stays)


def test_quoted_local_parts_refused(admin_server):
    """What the pages add they list and remove by the same text: a quoted
    local part (which the directory stores without its quotes) is left to
    posternctl, for aliases, lists and their targets and members."""
    s = admin_server()
    a = Admin(s).login()
    for op, obj, b in (("alias-add", '"z@example.org"@example.test', "bob@example.test"),
                       ("alias-add", "ok@example.test", '"q q"@remote.example'),
                       ("list-add", '"a b"@example.test', ""),
                       ("member-add", "team@example.test", '"x y"@example.test')):
        st, _, body = a.follow(a.post("/aliases", {"op": op, "a": obj, "b": b}))
        assert "only plain local parts" in flash(body), (op, obj, b)
    assert "z@example.org" not in s.ctl("alias", "list").stdout
    assert "ok@example.test" not in s.ctl("alias", "list").stdout


def test_admin_socket(admin_server):
    """admin_socket: plain HTTP on a Unix socket (mode 0660) for a proxy
    on the same host; the pages as over TLS, every client is "local", and
    /metrics always wants a token there."""
    import http.client
    import stat
    import urllib.parse
    d = tempfile.mkdtemp(prefix="postern-sock-")
    os.chmod(d, 0o777)
    path = os.path.join(d, "admin.sock")
    s = admin_server({"admin_socket": path, "admin_metrics_allow": "127.0.0.1"})
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert os.stat(path).st_mode & 0o777 == 0o660

    class Unix(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(path)

    def req(method, url, body=None, headers=None):
        c = Unix("localhost", timeout=20)
        c.request(method, url, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read().decode()
        out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        c.close()
        return out
    st, _, body = req("GET", "/login")
    assert st == 200 and 'name="password"' in body
    st, h, _ = req("POST", "/login", urllib.parse.urlencode(
        {"name": "boss", "password": ADMIN_PASSWORD}),
        {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 303
    cookie = h["set-cookie"].split(";", 1)[0]
    st, _, body = req("GET", "/users", headers={"Cookie": cookie})
    assert st == 200 and "alice@example.test" in body
    assert "event=admin-login result=ok admin=boss client=local" in s.log()
    st, _, _ = req("GET", "/metrics")
    assert st == 401
    # Over TLS from 127.0.0.1 the allow list applies.
    assert Admin(s).request("GET", "/metrics", cookie=False)[0] == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="the writer keeps root's privileges only as root")
def test_writer_refuses_lists_others_could_swap(admin_server):
    """As root the writer reads and writes the list files only where no
    one else could have replaced them: an accept list in a directory
    anyone may write refuses every save (its validation would read the
    file, as root, wherever a planted link points)."""
    d = tempfile.mkdtemp(prefix="postern-open-")
    os.chmod(d, 0o777)  # no sticky bit
    acc = os.path.join(d, "accept.txt")
    with open(acc, "w") as f:
        f.write("# accept\n")
    s = admin_server({"accept_file": acc})
    before = open(s.conf, "rb").read()
    a = Admin(s).login()
    st, _, body = relay_form(a, relay="addresses", relay_addresses="127.0.0.1")
    assert st == 422 and d in body, body[-500:]
    st, _, body = relay_form(a, accept="# accept\n127.0.0.1\n")
    assert st == 422
    assert open(s.conf, "rb").read() == before
    assert open(acc).read() == "# accept\n"


def test_jobs_outlive_their_connections(admin_server):
    """A client that sends a request and leaves at once (a login's check,
    a page's directory read, a save still running): the job ends on a
    connection that is gone, touching nothing of it (ASan watches), and
    the server goes on serving."""
    s = admin_server()
    a = Admin(s).login()
    ctx = ssl.create_default_context(cafile=s.cert)
    body = "name=boss&password=" + ADMIN_PASSWORD
    reqs = [("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
             "urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)),
            "GET /users HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n" % a.cookie,
            "GET /domains HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n" % a.cookie]
    left = 0
    for _ in range(10):
        for r in reqs:
            raw = socket.create_connection(("127.0.0.1", s.ports["admin"]), timeout=10)
            try:
                t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                t.sendall(r.encode())
                t.close()
                left += 1
            except (OSError, ssl.SSLError):
                # A connection whose job still runs is held until its
                # reply fails: past 8 of them this client is refused.
                raw.close()
            time.sleep(0.1)
    assert left >= 8
    time.sleep(3)
    assert a.get("/users")[0] == 200
    assert Admin(s).login().get("/")[0] == 200


# ---- limits and paths the tests above leave out ------------------------------

def test_sessions_per_admin_cap(admin_server):
    """An admin has at most 10 sessions: the 11th login ends that admin's
    oldest, never another admin's."""
    s = admin_server()
    other = Admin(s).login("dom")
    mine = [Admin(s).login() for _ in range(11)]

    def alive(a):
        st, h, _ = a.get("/queue" if a is not other else "/users")
        return st == 200

    assert not alive(mine[0])
    assert all(alive(a) for a in mine[1:])
    assert alive(other)


def test_noise_lines_are_bounded(admin_server):
    """Lines strangers cause (here: bad API tokens) are at most 20 a
    second; the next line says how many were left out (dropped=N).
    Malformed tokens in the burst, a well-formed unknown one last."""
    import http.client
    s = admin_server({"auth_max_failures": "1000", "auth_account_max_failures": "100000"})
    a = Admin(s)
    conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=a.ctx, timeout=30)
    n = 0
    for i in range(200):
        try:
            conn.request("GET", "/api/v1/queue",
                         headers={"Authorization": "Bearer pst_%08x_bad" % i})
            r = conn.getresponse()
            r.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=a.ctx,
                                               timeout=30)
            continue
        assert r.status == 401
        n += 1
    conn.close()
    assert n > 150
    time.sleep(1.1)
    st, _ = a.api("GET", "/api/v1/queue", "pst_ffffffff_" + "0" * 64)
    assert st == 401
    log = wait_for(lambda: (lambda t: t if "id=ffffffff" in t else None)(s.log()),
                   what="the last token line: " + s.log()[-1500:])
    lines = [l for l in log.splitlines() if "event=admin-token result=fail" in l]
    assert len(lines) < n, len(lines)
    dropped = sum(int(m) for m in re.findall(r"event=admin-token .*dropped=(\d+)", log))
    # Every request is either logged or counted as dropped.
    assert dropped > 0 and len(lines) + dropped == n + 1, (len(lines), dropped)


def test_relay_recipients_editor(admin_server):
    d = tempfile.mkdtemp(prefix="postern-rcpts-")
    os.chmod(d, 0o755)
    f = pathlib.Path(d) / "recipients.txt"
    f.write_text("# who we accept\nkeep@relay.example\n")
    s = admin_server({"relay_domains": "relay.example", "relay_recipients": str(f)})
    a = Admin(s).login()
    st, _, body = a.get("/relay")
    assert 'id="recipients"' in body and "keep@relay.example" in body
    assert rcpt(s, "keep@relay.example")[0] == 250
    assert rcpt(s, "new@relay.example")[0] == 550
    st, _, body = a.follow(relay_form(a, relay_domains="relay.example",
                                      recipients="# who we accept\r\nkeep@relay.example\r\n"
                                                 "new@relay.example"))
    assert "applied" in flash(body), flash(body)
    assert f.read_text() == "# who we accept\nkeep@relay.example\nnew@relay.example\n"
    assert rcpt(s, "new@relay.example")[0] == 250
    assert re.search(r'event=admin-change admin=boss via=web what=relay-recipients', s.log())
    # A bad line: 422, the file as it was, the server as it was.
    st, _, body = relay_form(a, relay_domains="relay.example",
                             recipients="not an address at all\n")
    assert st == 422 and "Not saved" in body
    assert "line 1: not an address at all: not an address (user@domain)" in body, body[-800:]
    assert f.read_text() == "# who we accept\nkeep@relay.example\nnew@relay.example\n"
    assert rcpt(s, "new@relay.example")[0] == 250


def test_save_while_another_editor_holds_the_lock(admin_server):
    """posternctl config set (or an admin's editor honouring the lock)
    holds .postern.conf.lock: a web save waits up to 10 s, then says so,
    and nothing changes."""
    import fcntl
    s = admin_server()
    a = Admin(s).login()
    before = open(s.conf, "rb").read()
    lock = os.path.join(os.path.dirname(s.conf), "." + os.path.basename(s.conf) + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        st, _, body = relay_form(a, relay="addresses", relay_addresses="192.0.2.1")
        waited = time.monotonic() - t0
    finally:
        os.close(fd)
    assert st == 422 and "another edit holds the lock" in body, (st, body[-500:])
    assert waited > 5, waited  # it waited, rather than failing at once
    assert open(s.conf, "rb").read() == before
    assert rcpt(s, "someone@remote.example")[0] == 550
    # Once the lock is free the same save goes through.
    st, _, body = a.follow(relay_form(a, relay="addresses", relay_addresses="127.0.0.1"))
    assert "Saved and applied" in flash(body)
