"""The web admin in a real browser: headless Chromium driven by selenium
(tests/proto/browser.py) against a real posternd, and every effect checked
outside the page: over SMTP and POP3, in postern.conf, in the Maildir, in
the daemon's log.  Each test leaves a screenshot of each browser it used in
build/screenshots/TEST.png (also when it fails: the last page it saw).

test_docs_pages takes the docs' pictures: with POSTERN_SCREENSHOTS=DIR
(`make screenshots`: docs/img) they go to DIR, otherwise to
build/screenshots/docs, and each page is checked the same way."""
import os
import pathlib
import poplib
import re
import shutil
import smtplib
import tempfile
import time

import pytest

from browser import HEIGHT, SHOTS, WIDTH, Browser, missing, png_size
from conftest import ADMIN_PASSWORD, tls_context, wait_for

why = missing()
if why is not None:
    pytest.skip("no browser: " + why, allow_module_level=True)

RELAY_LINE = re.compile(r"^relay\s*=", re.M)


def start(make_server, extra=None, comments=True):
    """A server with the admin listener (like conftest's admin_server) and,
    in its postern.conf, comments an edit must keep in place."""
    e = {"admin_listen": "127.0.0.1:0", "relay": "none"}
    e.update(extra or {})
    s = make_server(extra=e, start=False)
    if comments:
        with open(s.conf) as f:
            text = f.read()
        text = "# postern.conf of the browser test\n\n" + RELAY_LINE.sub(
            "# who may relay: none until the admin says otherwise\nrelay =", text, count=1)
        text += "# the end of the file\n"
        with open(s.conf, "w") as f:
            f.write(text)
    s.ctl("admin", "add", "boss", input=ADMIN_PASSWORD + "\n")
    s.ctl("admin", "add", "dom", "--domain", "example.test", input=ADMIN_PASSWORD + "\n")
    s.start()
    return s


@pytest.fixture
def browser(request):
    """factory(server, javascript=True) -> a logged-out Browser on the
    server's admin listener; each one's last page is saved as a
    screenshot at teardown, its console must hold no error and it must
    have tried no address but 127.0.0.1."""
    made = []

    def factory(server, javascript=True):
        b = Browser("https://127.0.0.1:%d" % server.ports["admin"], javascript=javascript)
        made.append(b)
        return b

    yield factory
    name = re.sub(r"[^\w.-]", "_", request.node.name)
    errors, outside = [], []
    for i, b in enumerate(made):
        try:
            b.shot(os.path.join(SHOTS, name + ("-%d" % i if i else "") + ".png"))
            errors += b.console_errors()
        finally:
            outside += b.quit()
    assert errors == [], errors
    assert outside == [], "the browser tried the network: %r" % outside


class OtherSite:
    """An HTTPS page on another port of 127.0.0.1 (the test certificate):
    another origin, but the same site, so the browser sends the admin's
    SameSite=Strict cookie with its form.  Its form posts to the admin."""

    def __init__(self, cert, html):
        import http.server
        import ssl
        import threading

        page = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_another_sites_form_is_refused(make_server, browser, cert):
    """Cross-site request forgery in a real browser: a page elsewhere posts
    the Users form to the admin while the browser is logged in (its
    cookie goes along: same site), without the token and then even with
    the session's real token; both refused, nothing added."""
    s = start(make_server, comments=False)
    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    b.get("/users")
    token = b.find("#user-add input[name=csrf]").get_attribute("value")
    action = "https://127.0.0.1:%d/users" % s.ports["admin"]
    for i, csrf in enumerate(["", token]):
        field = '<input type="hidden" name="csrf" value="%s">' % csrf if csrf else ""
        site = OtherSite(cert, '<!DOCTYPE html><title>win a prize</title>'
                         '<form method="post" action="%s">%s'
                         '<input type="hidden" name="op" value="user-add">'
                         '<input type="hidden" name="a" value="evil%d@example.test">'
                         '<input type="hidden" name="b" value="pw-evil">'
                         '<button id="go">Claim</button></form>' % (action, field, i))
        try:
            b.allow("/users", 403)
            b.allow("/favicon.ico", 404)  # asked for by the 403's plain text page
            b.driver.get(site.url)
            b.submit(b.find("#go"))
            assert b.driver.current_url == action
            assert "refused: the form's CSRF token is missing or wrong" in \
                b.driver.find_element("css selector", "body").text
        finally:
            site.stop()
        assert f"evil{i}@example.test" not in s.ctl("user", "list").stdout
    assert s.log().count("event=admin-csrf admin=boss") == 2
    # The session itself is fine: the admin's own form still works.
    b.get("/users")
    b.type("#user-add input[name=a]", "fine@example.test")
    b.type("#user-add input[name=b]", "pw-fine-1")
    b.submit(b.find("#user-add button[type=submit]"))
    assert b.flash() == "fine@example.test added", b.flash()


def smtp_rcpt(server, rcpt, sender="someone@remote.example"):
    """(code, text) of RCPT TO from 127.0.0.1 (no AUTH), then QUIT."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.ehlo("client.example")
        code, _ = c.mail(sender)
        assert code == 250
        code, text = c.rcpt(rcpt)
        return code, text.decode()


def test_login_wrong_password_good_password_logout(make_server, browser):
    s = start(make_server, comments=False)
    b = browser(s)
    b.get("/relay")
    assert b.path() == "/login"  # no page without a session
    b.allow("/login", 403)
    b.login("boss", "not-the-password")
    assert b.path() == "/login"
    assert b.text("[role=alert]") == "Wrong name or password."
    assert b.driver.get_cookies() == []
    assert "event=admin-login result=fail admin=boss client=127.0.0.1" in s.log()

    b.login("boss", ADMIN_PASSWORD)
    assert b.path() == "/"
    assert b.text("h1") == "Dashboard"
    assert b.text("header .logout span") == "boss"
    cookie, = b.driver.get_cookies()
    assert cookie["name"] == "postern_session"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # Every page in the navigation opens, inside the session.
    for link in [a.get_attribute("href") for a in b.finds("nav a")]:
        b.driver.get(link)
        assert b.path() != "/login", link
        assert b.finds("h1"), link
    assert len(b.finds("nav a")) == 8

    b.submit(b.find("form.logout button"))
    assert b.path() == "/login"
    assert "event=admin-logout admin=boss" in s.log()
    # The session ended on the server, not only in this browser: its
    # old cookie, sent again, gets the login page.
    b.driver.add_cookie({"name": "postern_session", "value": cookie["value"], "path": "/",
                         "secure": True, "httpOnly": True, "sameSite": "Strict"})
    b.get("/queue")
    assert b.path() == "/login"

    # A domain admin sees its domain's pages only.
    b.login("dom", ADMIN_PASSWORD)
    assert b.path() == "/users"
    assert [a.text for a in b.finds("nav a")] == ["Users", "Aliases and lists"]
    assert "dom (example.test)" in b.text("header .logout span")


def test_relay_options_none_to_addresses_applies_live(make_server, browser, sinks):
    s = start(make_server)
    sink = sinks("127.0.0.2")
    with open(s.conf) as f:
        before = f.read()
    # BEFORE: relaying from 127.0.0.1 is refused.
    code, text = smtp_rcpt(s, "friend@remote.example")
    assert code == 550 and "5.7.1" in text and "relaying denied" in text.lower(), text

    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    b.find("nav a[href='/relay']").click()
    assert b.text("h1") == "Mail Relay Options"
    assert b.find("#relay-none").is_selected()
    modes = [e.get_attribute("value") for e in b.finds("input[name=relay]")]
    assert len(modes) == 5 and "none" in modes and "addresses" in modes

    # A bad address: not saved, the file and the server unchanged.
    b.allow("/relay", 422)
    b.find("#relay-addresses").click()
    b.type("#relay_addresses", "127.0.0.1 not-an-address")
    b.submit(b.find("#save"))
    assert b.text("#error").startswith("Not saved:"), b.text("#error")
    assert "relay_addresses" in b.text("#error")
    with open(s.conf) as f:
        assert f.read() == before
    assert smtp_rcpt(s, "friend@remote.example")[0] == 550
    # The form kept what was typed, to correct it.
    assert b.find("#relay-addresses").is_selected()
    assert b.find("#relay_addresses").get_attribute("value") == "127.0.0.1 not-an-address"

    b.type("#relay_addresses", "127.0.0.1")
    b.submit(b.find("#save"))
    assert b.path() == "/relay"
    assert b.flash().startswith("Saved and applied: relay = addresses."), b.flash()
    assert b.find("#relay-addresses").is_selected()
    assert b.find("#relay_addresses").get_attribute("value") == "127.0.0.1"
    b.shot(os.path.join(SHOTS, "relay-saved.png"))

    # AFTER, over SMTP: the same client may relay now, no restart.
    code, text = smtp_rcpt(s, "friend@remote.example")
    assert code == 250, (code, text)
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("someone@remote.example", ["friend@remote.example"],
                   b"Subject: relayed after the page\r\n\r\nhello\r\n")
    wait_for(lambda: sink.messages, what="the relayed message at the sink")
    assert sink.messages[0]["to"] == ["friend@remote.example"]
    assert b"relayed after the page" in sink.messages[0]["data"]

    # postern.conf: edited in place, comments and order kept.
    with open(s.conf) as f:
        after = f.read()
    assert "relay = addresses\n" in after and "relay_addresses = 127.0.0.1\n" in after
    assert after.startswith("# postern.conf of the browser test\n\n")
    assert "# who may relay: none until the admin says otherwise\nrelay = addresses\n" in after
    assert "# the end of the file\n" in after
    strip = lambda t: [l for l in t.splitlines() if not l.startswith(("relay ", "relay_addresses"))]
    assert strip(after) == strip(before)
    assert re.search(r'event=admin-change admin=boss via=web what=config object="relay" '
                     r'old="none" new="addresses"', s.log()), s.log()
    assert s.ctl("config", "get", "relay").stdout == "relay = addresses\n"


def test_users_add_in_the_page_then_deliver(make_server, browser, cert):
    s = start(make_server, comments=False)
    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    b.find("nav a[href='/users']").click()
    rows = len(b.finds("#users tbody tr"))
    assert rows == 4  # conftest's alice, bob, carol, postmaster
    b.type("#user-add input[name=a]", "dave@example.test")
    b.type("#user-add input[name=b]", "pw-of-dave-1")
    b.submit(b.find("#user-add button[type=submit]"))
    assert b.path() == "/users"
    assert b.flash() == "dave@example.test added", b.flash()
    assert len(b.finds("#users tbody tr")) == rows + 1
    row = [r.text for r in b.finds("#users tbody tr") if "dave@example.test" in r.text]
    assert row and "active" in row[0] and "never" in row[0], row
    assert "dave@example.test" in s.ctl("user", "list").stdout
    assert re.search(r'event=admin-change admin=boss via=web what=\S+ '
                     r'object="dave@example.test"', s.log()), s.log()

    # The same address again: refused with the reason, nothing added.
    b.type("#user-add input[name=a]", "dave@example.test")
    b.type("#user-add input[name=b]", "another-pw")
    b.submit(b.find("#user-add button[type=submit]"))
    assert b.flash().startswith("Not done:") and "already exists" in b.flash(), b.flash()
    assert len(b.finds("#users tbody tr")) == rows + 1

    # Mail to the new user is delivered to its Maildir...
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("someone@remote.example", ["dave@example.test"],
                   b"Subject: welcome dave\r\n\r\nyour first mail\r\n")
    msgs = wait_for(lambda: s.messages("dave"), what="dave's Maildir")
    assert b"Subject: welcome dave" in msgs[0]
    # ...and the password typed in the page is the one POP3 takes.
    p = poplib.POP3_SSL("127.0.0.1", s.ports["pop3s"], context=tls_context(cert), timeout=20)
    try:
        p.user("dave@example.test")
        p.pass_("pw-of-dave-1")
        assert p.stat()[0] == 1
        assert b"Subject: welcome dave" in b"\r\n".join(p.retr(1)[1])
    finally:
        p.quit()


def test_accept_list_edited_in_the_browser(make_server, browser, request):
    """The accept list's textarea: a browser sends its lines with CRLF and
    drops a newline right after <textarea>; the file gets what was shown
    and typed, LF line ends, and a save without an edit changes nothing."""
    d = tempfile.mkdtemp(prefix="postern-accept-")
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)  # the run user reads it at a reload
    acc = pathlib.Path(d) / "accept.txt"
    acc.write_text("\n# the accept list\n\n# hosts of the office\n")
    s = start(make_server, {"relay": "local-hosts", "accept_file": str(acc)})
    assert smtp_rcpt(s, "friend@remote.example")[0] == 550
    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    b.get("/relay")
    assert b.find("#accept").get_attribute("value") == acc.read_text()
    before = os.stat(acc)
    b.submit(b.find("#save"))
    assert b.flash() == "Nothing changed.", b.flash()
    assert acc.read_text() == "\n# the accept list\n\n# hosts of the office\n"
    assert os.stat(acc).st_ino == before.st_ino  # not even rewritten

    from selenium.webdriver.common.keys import Keys
    area = b.find("#accept")
    area.send_keys(Keys.CONTROL, Keys.END)
    area.send_keys("127.0.0.1\n")
    b.submit(b.find("#save"))
    assert b.flash().startswith("Saved and applied: relay = local-hosts."), b.flash()
    assert acc.read_text() == "\n# the accept list\n\n# hosts of the office\n127.0.0.1\n"
    assert smtp_rcpt(s, "friend@remote.example")[0] == 250
    assert 'what=accept-list' in s.log()


def queue_ids(s):
    return sorted(l.split("\t")[0] for l in s.ctl("queue", "list").stdout.splitlines()
                  if l and not l.startswith(("\t", "ID")))


def test_queue_flush_from_the_page(make_server, browser):
    s = start(make_server, {"relay": "addresses", "relay_addresses": "127.0.0.1",
                            "queue_retry_min": "1h", "queue_retry_max": "1h"},
              comments=False)
    for to in ("u@down.example", "v@down.example"):
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
            c.sendmail("alice@example.test", [to], b"Subject: q\r\n\r\nhello\r\n")
    wait_for(lambda: s.log().count("status=deferred") == 2, what="two deferrals")
    qid, qid2 = queue_ids(s)

    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    b.find("nav a[href='/queue']").click()
    assert b.text("#queue-count").startswith("2 of 2 messages")
    rows = {r.find_element("css selector", "td a").text: r for r in b.finds("#queue tbody tr")}
    assert sorted(rows) == [qid, qid2]
    assert "waiting" in rows[qid].text

    # Flush all: both tried again now (the retry was an hour away).
    b.submit([x for x in b.finds("main form button") if x.text == "Flush all"][0])
    assert b.path() == "/queue"
    assert b.flash() == "flush all: 2 messages", b.flash()
    for q in (qid, qid2):
        assert f"id={q} event=queue-flush" in s.log()
    wait_for(lambda: s.log().count("status=deferred") == 4, what="two new attempts")
    assert re.search(r'event=admin-change admin=boss via=web what=queue object="all" '
                     r'old="-" new="flush"', s.log()), s.log()

    # Flush one, from its row.
    row = [r for r in b.finds("#queue tbody tr") if qid in r.text][0]
    b.submit([x for x in row.find_elements("css selector", "button") if x.text == "Flush"][0])
    assert b.flash() == f"flush {qid}: 1 message", b.flash()
    wait_for(lambda: s.log().count("status=deferred") == 5, what="one new attempt")

    # One message's page (its id is a link): envelope and headers; Hold
    # there, Release from the list.
    rows = {r.find_element("css selector", "td a").text: r for r in b.finds("#queue tbody tr")}
    rows[qid].find_element("css selector", "td a").click()
    b.wait(lambda: b.text("h1") == "Queued message", what="the message's page")
    assert "alice@example.test" in b.text("#envelope")
    assert "u@down.example" in b.text("#recipients")
    assert "Subject: q" in b.text()
    b.submit([x for x in b.finds("main form button") if x.text == "Hold"][0])
    assert b.path() == "/queue" and b.flash() == f"hold {qid}: 1 message", b.flash()
    row = [r for r in b.finds("#queue tbody tr") if qid in r.text][0]
    assert "held" in row.text
    assert "held" in [l for l in s.ctl("queue", "list").stdout.splitlines()
                      if l.startswith(qid)][0]
    b.submit([x for x in row.find_elements("css selector", "button") if x.text == "Release"][0])
    assert b.flash() == f"release {qid}: 1 message", b.flash()

    # Delete: the script asks first (instead of the "sure" box, hidden
    # with the script on); "Cancel" posts nothing.
    def delete_button():
        row = [r for r in b.finds("#queue tbody tr") if qid2 in r.text][0]
        assert not row.find_element("css selector", "input[name=confirm]").is_displayed()
        return [x for x in row.find_elements("css selector", "button") if x.text == "Delete"][0]
    old = b.find("html")
    delete_button().click()
    b.alert().dismiss()
    time.sleep(0.5)
    assert not b._stale(old) and queue_ids(s) == [qid, qid2]
    # "OK": gone from the queue, no bounce.
    delete_button().click()
    alert = b.alert()
    assert alert.text == "Delete this message without a bounce?"
    alert.accept()
    b.wait(lambda: b._stale(old), what="the queue page")
    assert b.flash() == f"delete {qid2}: 1 message", b.flash()
    assert queue_ids(s) == [qid]
    assert b.text("#queue-count").startswith("1 of 1 message")


def test_without_javascript(make_server, browser):
    """The pages work with the script off: a save, a removal (the "sure"
    box instead of the script's question), the relay check."""
    s = start(make_server)
    b = browser(s, javascript=False)
    b.login("boss", ADMIN_PASSWORD)
    b.get("/users")
    assert b.finds("input[type=search]") == []  # the script's filter box: not there
    row = [r for r in b.finds("#users tbody tr") if "carol@example.test" in r.text][0]
    sure = row.find_element("css selector", "input[name=confirm]")
    assert sure.is_displayed() and sure.get_attribute("required") == "true"
    sure.click()
    b.submit([x for x in row.find_elements("css selector", "button") if x.text == "Remove"][0])
    assert b.flash() == "carol@example.test removed", b.flash()
    assert "carol@example.test" not in s.ctl("user", "list").stdout

    b.get("/relay")
    b.find("#relay-addresses").click()
    b.type("#relay_addresses", "127.0.0.1")
    b.submit(b.find("#save"))
    assert b.flash().startswith("Saved and applied: relay = addresses."), b.flash()
    assert smtp_rcpt(s, "friend@remote.example")[0] == 250

    b.get("/relay-check")
    b.type("input[name=client]", "192.0.2.7")
    b.type("input[name=from]", "someone@remote.example")
    b.type("input[name=to]", "friend@remote.example")
    b.submit(b.find("#relay-check button[type=submit]"))
    assert "REJECT" in b.text(), b.text()


# ---- the docs' pictures ---------------------------------------------------

DOCS_PAGES = [
    ("dashboard", "/"),
    ("relay-options", "/relay"),
    ("relay-check", "/relay-check?client=192.0.2.7&helo=client.example"
                    "&from=someone%40remote.example&to=friend%40remote.example"),
    ("users", "/users"),
    ("queue", "/queue"),
    ("log", "/log"),
]


def test_docs_pages(make_server, browser, sinks):
    """A little realistic traffic, then each main page at 1280x900, and
    the dashboard's counters are that traffic's."""
    out = os.environ.get("POSTERN_SCREENSHOTS") or os.path.join(SHOTS, "docs")
    s = start(make_server, {"relay": "none", "log_level": "info",
                            "queue_retry_min": "1h", "queue_retry_max": "1h"})
    sinks("127.0.0.2")
    for u in ("dave", "erin"):
        s.ctl("user", "add", f"{u}@example.test", input="secret-" + u + "\n")
    s.ctl("user", "disable", "erin@example.test")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        for i, to in enumerate(["alice@example.test", "bob@example.test",
                                "info@example.test", "dave@example.test"]):
            c.sendmail("news@remote.example", [to], b"Subject: m%d\r\n\r\nhello\r\n" % i)
    # Refused: two relay attempts while relay = none, and a bad login.
    for to in ("y@remote.example", "z@elsewhere.example"):
        assert smtp_rcpt(s, to)[0] == 550
    pop = poplib.POP3_SSL("127.0.0.1", s.ports["pop3s"], context=tls_context((s.cert, s.key)),
                          timeout=20)
    pop.user("bob@example.test")
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong")
    pop.close()
    # Then this host may relay (posternctl: the same edit as the page's).
    s.ctl("config", "set", "relay", "addresses",
          "relay_addresses", "127.0.0.1/32 10.0.0.0/8", "relay_domains", "backup.example")
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", ["friend@remote.example"],
                   b"Subject: lunch\r\n\r\nhello\r\n")
        c.sendmail("alice@example.test", ["partner@down.example"],
                   b"Subject: the quarterly report\r\n\r\nattached\r\n")
    wait_for(lambda: "status=deferred" in s.log(), what="the deferred message")
    wait_for(lambda: "to=<friend@remote.example>" in s.log() and "status=sent" in s.log(),
             what="the relayed message")
    wait_for(lambda: s.messages("dave"), what="local deliveries")

    b = browser(s)
    b.login("boss", ADMIN_PASSWORD)
    cards = dict(c.text.split("\n")[:2] for c in b.finds(".card"))
    assert cards["Messages received since start"] == "6", cards
    assert cards["Relays refused since start"] == "2", cards
    assert cards["AUTH failures since start"] == "1", cards
    assert cards["Relayed since start"] == "1", cards
    assert cards["Deferred since start"] == "1", cards
    for name, path in DOCS_PAGES:
        b.get(path)
        assert b.path() != "/login"
        assert b.finds("h1")
        p = b.shot(os.path.join(out, name + ".png"))
        assert png_size(p) == (WIDTH, HEIGHT), (p, png_size(p))
        assert b.console_errors() == [], name
