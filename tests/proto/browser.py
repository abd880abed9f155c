"""A headless Chromium driven by selenium (Debian's chromium,
chromium-driver and python3-selenium, installed by scripts/deps.sh test)
for the web admin's browser tests and the docs' screenshots.

The browser talks to 127.0.0.1 only: every background service it has
(updates, sync, safe browsing, metrics, field trials) is switched off,
every host name but 127.0.0.1 resolves to nothing, and any proxied
request goes to a closed loopback port.  Debian's /usr/bin/chromium
wrapper is not used: it sources /etc/chromium.d, which turns remote
extensions back on; the binary behind it is started directly."""
import os
import shutil
import time

from conftest import ROOT

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900
SHOTS = os.path.join(ROOT, "build", "screenshots")

# No traffic to anything but the server under test.
FLAGS = [
    "--headless=new",
    "--window-size=%d,%d" % (WIDTH, HEIGHT),
    "--ignore-certificate-errors",  # the test's self-signed certificate
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--dns-prefetch-disable",
    "--disable-quic",
    "--disable-component-extensions-with-background-pages",
    "--no-service-autorun",
    "--disable-features=OptimizationHints,Translate,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,NetworkTimeServiceQuerying",
    # Every name, and every IP literal, but 127.0.0.1: not found.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    "--password-store=basic",
    "--use-mock-keychain",
    "--lang=en-US",
]


def missing():
    """Why no browser can run here, or None."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.access(p, os.X_OK):
            return p + " is not installed (scripts/deps.sh test)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed (scripts/deps.sh test)"
    return None


class Browser:
    """One Chromium with a profile of its own (removed at quit)."""

    def __init__(self, base_url, javascript=True, profile_parent=None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        import tempfile

        self.base = base_url.rstrip("/")
        self.profile = tempfile.mkdtemp(prefix="postern-chromium-", dir=profile_parent)
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for f in FLAGS:
            o.add_argument(f)
        o.add_argument("--user-data-dir=" + self.profile)
        # Every connection the browser tries, for network_outside().
        self.netlog = os.path.join(self.profile, "netlog.json")
        o.add_argument("--log-net-log=" + self.netlog)
        if os.geteuid() == 0:
            o.add_argument("--no-sandbox")  # Chromium refuses root otherwise
        prefs = {"credentials_enable_service": False,
                 "profile.password_manager_enabled": False,
                 "net.network_prediction_options": 2,  # no preconnect (the search engine)
                 "search.suggest_enabled": False,
                 "signin.allowed": False,
                 "signin.allowed_on_next_startup": False}
        if not javascript:
            prefs["profile.managed_default_content_settings.javascript"] = 2
        o.add_experimental_option("prefs", prefs)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.javascript = javascript
        self.allowed = []
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        self.driver.set_page_load_timeout(30)
        # The viewport exactly WIDTH x HEIGHT, whatever the window adds.
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})

    # ---- navigation -----------------------------------------------------

    def get(self, path):
        self.driver.get(self.base + path)
        return self

    def path(self):
        url = self.driver.current_url
        assert url.startswith(self.base), url
        return url[len(self.base):] or "/"

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css="main"):
        return self.find(css).text

    def flash(self):
        f = self.finds("#flash")
        return f[0].text if f else None

    def type(self, css, value):
        e = self.find(css)
        e.clear()
        e.send_keys(value)
        return e

    def submit(self, button):
        """Clicks a submit button and waits for the page it leads to."""
        old = self.find("html")
        button.click()
        self.wait(lambda: self._stale(old), what="the next page")
        self.wait(lambda: self.driver.execute_script(
            "return document.readyState") == "complete", what="page load")

    def _stale(self, element):
        from selenium.common.exceptions import StaleElementReferenceException
        try:
            element.tag_name
            return False
        except StaleElementReferenceException:
            return True

    def wait(self, cond, timeout=20, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("browser: timed out waiting for " + what)

    def alert(self):
        """The page's confirm() dialog, once it is there."""
        from selenium.common.exceptions import NoAlertPresentException

        def there():
            try:
                return self.driver.switch_to.alert
            except NoAlertPresentException:
                return None
        return self.wait(there, timeout=5, what="a confirmation dialog")

    def login(self, name, password):
        self.get("/login")
        self.type("input[name=name]", name)
        self.type("input[name=password]", password)
        self.submit(self.find("form.login button[type=submit]"))
        return self

    def allow(self, path, status):
        """A page the test means to get with an error status (a wrong
        password's 403, a refused save's 422): not a console error."""
        self.allowed.append("%s%s - Failed to load resource: the server responded "
                            "with a status of %d " % (self.base, path, status))

    def console_errors(self):
        """The page's console errors since the last call (a script error,
        a resource that did not load, a CSP violation), less the allowed."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"
                and not any(e["message"].startswith(a) for a in self.allowed)]

    # ---- screenshots ----------------------------------------------------

    def shot(self, path):
        """The viewport as a WIDTH x HEIGHT PNG at path."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        png = self.driver.get_screenshot_as_png()
        with open(path, "wb") as f:
            f.write(png)
        return path

    def quit(self):
        """Ends the browser; what network_outside() found in its net log."""
        try:
            self.driver.quit()
            return network_outside(self.netlog)
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def network_outside(netlog):
    """Chromium's net log (written at exit) -> the connections it tried to
    anything but loopback, and any UDP datagram it sent (QUIC or DNS of its
    own): both must be none.  A request for some Google or search-engine
    URL that Chromium makes anyway goes to the closed proxy port on
    127.0.0.1 and fails there, so it is not one.  A UDP connect() sends
    nothing (Chromium uses one to see whether IPv6 has a route)."""
    import json
    with open(netlog) as f:
        log = json.load(f)
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    found = []
    for e in log["events"]:
        kind = names.get(e["type"])
        addr = e.get("params", {}).get("address")
        if kind == "TCP_CONNECT_ATTEMPT" and addr is not None and \
                not addr.startswith("127.0.0.1:"):
            found.append((kind, addr))
        if kind == "UDP_BYTES_SENT":
            found.append((kind, addr))
    return found


def png_size(path):
    """(width, height) from a PNG's IHDR."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
