"""DNS in the relay policy against the real daemon (issue 9, items 3 and
4): the backup-MX rule relays only when every host delivery would use is
in relay_addresses, pins that delivery and checks it again when DNS has
changed; the policy's DNS lookups run on their own bounded pool, so
blackholed lookups from unauthenticated clients never hold up local
recipients, logins or other clients, and one client IP gets only a few in
flight.  Each test runs its own dnsmasq (or a black hole) on loopback."""
import os
import poplib
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BlackHole, Raw, free_port, tls_context, wait_for

BASE = {"queue_retry_min": "1s", "queue_retry_max": "2s", "relay": "addresses"}


class Dns:
    """A private dnsmasq on a loopback port.  Addresses come from a hosts
    file, so set_hosts() changes them with a SIGHUP (dnsmasq rereads the
    file and drops its cache) without giving up the port."""

    def __init__(self, mx, hosts):
        self.dir = tempfile.mkdtemp(prefix="postern-dns-")
        self.hosts_file = os.path.join(self.dir, "hosts")
        self.write_hosts(hosts)
        # free_port() checks UDP only and dnsmasq binds TCP on the same
        # port too, which another test's socket may hold: a few tries.
        for _ in range(5):
            self.port = free_port(kind=socket.SOCK_DGRAM)
            args = ["dnsmasq", "-k", "-p", str(self.port), "--listen-address=127.0.0.1",
                    "--bind-interfaces", "--no-resolv", "--no-hosts",
                    "--addn-hosts=" + self.hosts_file,
                    "--local=/example/", "--local=/test/", "--log-facility=-"]
            if os.geteuid() == 0:
                args.append("--user=root")
            for name, host, pref in mx:
                args.append(f"--mx-host={name},{host},{pref}")
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            time.sleep(0.3)
            if self.proc.poll() is None:
                return
            err = self.proc.stderr.read().decode()
            if "Address already in use" not in err:
                break
        raise AssertionError("dnsmasq did not start: " + err)

    def write_hosts(self, hosts):
        with open(self.hosts_file + ".new", "w") as f:
            for name, ip in hosts.items():
                f.write(f"{ip} {name}\n")
        os.rename(self.hosts_file + ".new", self.hosts_file)

    def set_hosts(self, hosts):
        self.write_hosts(hosts)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def private_dns():
    made = []

    def factory(mx, hosts):
        d = Dns(mx, hosts)
        made.append(d)
        return d

    yield factory
    for d in made:
        d.stop()


def rcpt(server, to, source="127.0.0.1", frm="x@remote.example"):
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30,
                     source_address=(source, 0))
    c.ehlo("client.example")
    assert c.mail(frm)[0] == 250
    code, text = c.rcpt(to)
    c.quit()
    return code, text.decode()


def relay_check(server, client, to):
    r = server.ctl("relay-check", "--client", client, "--from", "x@remote.example",
                   "--to", to, check=False)
    return r.stdout


def rcpt_log(server, to):
    return [l for l in server.log().splitlines()
            if "event=rcpt" in l and f"to=<{to}>" in l]


# ---- item 3: the backup-MX rule ------------------------------------------

def test_attacker_layout_is_refused(make_server, sinks, private_dns):
    """MX 10 is the attacker's host, MX 20 is a listed address: relaying
    would hand the mail to the attacker (and aim SMTP at any host)."""
    evil = sinks("127.0.0.41")
    dns = private_dns([("attack.example", "mx.attack.example", 10),
                       ("attack.example", "bait.attack.example", 20)],
                      {"mx.attack.example": "127.0.0.41",
                       "bait.attack.example": "127.0.0.42"})
    s = make_server(dict(BASE, relay_addresses="127.0.0.42",
                         dns_servers=dns.server))
    code, text = rcpt(s, "victim@attack.example")
    assert code in (550, 554) and "5.7.1" in text and "relay" in text.lower(), text
    line = rcpt_log(s, "victim@attack.example")[0]
    assert "result=reject" in line and "rule=default-deny" in line
    # relay-check gives the same verdict and rule.
    out = relay_check(s, "127.0.0.1", "victim@attack.example")
    assert out.startswith("REJECT 550 5.7.1") and "rule: default-deny" in out
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("x@remote.example", ["victim@attack.example"],
                       b"Subject: relay?\r\n\r\nx\r\n")
    time.sleep(1.5)
    assert evil.messages == [] and "status=sent" not in s.log()


def test_gateway_layout_is_relayed_to_the_listed_address(make_server, sinks,
                                                         private_dns):
    """Every MX is in relay_addresses: accepted, pinned, delivered there."""
    gw = sinks("127.0.0.43")
    dns = private_dns([("gw.example", "mx1.gw.example", 10),
                       ("gw.example", "mx2.gw.example", 20)],
                      {"mx1.gw.example": "127.0.0.43",
                       "mx2.gw.example": "127.0.0.44"})
    s = make_server(dict(BASE, relay_addresses="127.0.0.43 127.0.0.44",
                         dns_servers=dns.server))
    code, text = rcpt(s, "user@gw.example")
    assert code == 250, text
    assert "rule=backup-mx" in rcpt_log(s, "user@gw.example")[0]
    out = relay_check(s, "127.0.0.1", "user@gw.example")
    assert out.startswith("ACCEPT 250") and "rule: backup-mx" in out
    assert "pinned:" in out
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["user@gw.example"],
                   b"Subject: via gateway\r\n\r\nx\r\n")
    wait_for(lambda: gw.messages, what="delivery to the listed gateway")
    assert gw.messages[0]["to"] == ["user@gw.example"]
    assert "relay=mx1.gw.example[127.0.0.43]" in s.log()


def test_backup_layout_we_are_mx20(make_server, sinks, private_dns):
    """We are MX 20 (our hostname), the primary MX 10 is listed; MX 30
    (unlisted) comes after us and is never used."""
    primary = sinks("127.0.0.45")
    other = sinks("127.0.0.46")
    dns = private_dns([("bk.example", "mx1.bk.example", 10),
                       ("bk.example", "mx.example.test", 20),
                       ("bk.example", "mx3.bk.example", 30)],
                      {"mx1.bk.example": "127.0.0.45",
                       "mx.example.test": "127.0.0.1",
                       "mx3.bk.example": "127.0.0.46"})
    s = make_server(dict(BASE, relay_addresses="127.0.0.45",
                         dns_servers=dns.server))
    code, text = rcpt(s, "user@bk.example")
    assert code == 250, text
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["user@bk.example"],
                   b"Subject: backup\r\n\r\nx\r\n")
    wait_for(lambda: primary.messages, what="delivery to the primary MX")
    assert other.messages == []


def test_pinned_entry_defers_when_dns_moves_off_the_list(make_server, sinks,
                                                        private_dns):
    """Accepted while mx1.pin.example was listed (and refusing, so the
    first attempt defers); then DNS moves it to an unlisted host: the
    retry must defer (4.4.4) and never send there."""
    moved = sinks("127.0.0.48")
    mx = [("pin.example", "mx1.pin.example", 10)]
    dns = private_dns(mx, {"mx1.pin.example": "127.0.0.47"})  # nothing listens
    s = make_server(dict(BASE, relay_addresses="127.0.0.47",
                         dns_servers=dns.server))
    with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
        c.sendmail("x@remote.example", ["user@pin.example"],
                   b"Subject: pinned\r\n\r\nx\r\n")
    wait_for(lambda: "to=<user@pin.example>, relay=" in s.log() and
             "status=deferred" in s.log(), what="first attempt deferred")
    import json
    entries = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert entries[0]["recipients"][0]["address"] == "user@pin.example"
    assert entries[0]["recipients"][0]["pinned"] is True
    dns.set_hosts({"mx1.pin.example": "127.0.0.48"})
    reason = "mx1.pin.example[127.0.0.48] of pin.example is not in relay_addresses"
    wait_for(lambda: reason in s.log(), what="pinned retry deferred")
    time.sleep(2.5)  # more retries (queue_retry_max 2s): still never sent
    line = [l for l in s.log().splitlines() if reason in l][-1]
    assert "status=deferred" in line and "dsn=4.4.4" in line
    assert moved.messages == [] and "status=sent" not in s.log()
    assert any("user@pin.example" in l for l in s.ctl("queue", "list").stdout.splitlines())


# ---- item 4: DNS from unauthenticated clients is bounded ------------------

@pytest.fixture
def blackhole():
    b = BlackHole()
    yield b
    b.close()


def start_remote_rcpt(server, source, domain):
    """A session from source that has sent RCPT to a remote domain and
    not read the reply: its lookup is in flight."""
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]),
                                      timeout=60, source_address=(source, 0))
    r.buf = b""
    r.reply()  # greeting
    r.send(f"EHLO c.example\r\nMAIL FROM:<x@{domain}>\r\nRCPT TO:<y@{domain}>\r\n")
    return r


def test_dnsbl_check_counts_in_the_clients_dns_share(make_server, blackhole):
    """A DNSBL check takes one of smtp_dns_lookups_per_ip: a client whose
    share a backup-MX lookup holds waits for it at connect, within
    dnsbl_timeout, then port 25 says 421 4.3.2 (it is not greeted
    unchecked); another client is checked (the list fails open here: the
    black hole never answers) and greeted."""
    s = make_server(dict(BASE, relay_addresses="127.0.0.99",
                         dns_servers=blackhole.server, smtp_dns_timeout="8s",
                         smtp_dns_lookups_per_ip="1", smtp_dns_lookups="10",
                         dnsbl="zen.example.org", dnsbl_timeout="1s"))
    held = start_remote_rcpt(s, "127.0.0.34", "d1.example")  # greeted after 1 s
    wait_for(lambda: "event=mail" in s.log(), what="the lookup started")
    time.sleep(0.5)
    t0 = time.time()
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                      source_address=("127.0.0.34", 0))
    r.buf = b""
    greeting = r.reply()
    assert greeting.startswith("421 4.3.2 "), greeting
    assert 0.8 < time.time() - t0 < 4
    r.close()
    assert "ip=127.0.0.34 error=\"too many DNS lookups in progress, not checked\"" in s.log()
    other = Raw.__new__(Raw)
    other.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                          source_address=("127.0.0.35", 0))
    other.buf = b""
    assert other.reply().startswith("220 ")
    other.close()
    assert "ip=127.0.0.35 error=\"too many" not in s.log()
    held.close()


def test_blackholed_dns_does_not_stall_local_rcpt_or_logins(make_server, blackhole, cert):
    s = make_server(dict(BASE, relay_addresses="127.0.0.99",
                         dns_servers=blackhole.server, smtp_dns_timeout="6s",
                         pop3_allow_plaintext="no"))
    # Eight sessions from four addresses, each waiting on a lookup that
    # never answers (two per address, the per-IP default): more than
    # the four shared workers.
    attackers = [start_remote_rcpt(s, f"127.0.0.{21 + i % 4}", f"slow{i}.example")
                 for i in range(8)]
    wait_for(lambda: blackhole.queries >= 4, what="lookups in flight")
    t0 = time.time()
    code, text = rcpt(s, "alice@example.test", source="127.0.0.30")
    local = time.time() - t0
    assert code == 250 and local < 2.0, (code, text, local)
    # SMTP AUTH (over STARTTLS on submission) and a POP3 login still work.
    t0 = time.time()
    c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30)
    c.starttls(context=tls_context(cert))
    c.login("alice@example.test", "secret-alice")
    c.quit()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=30)
    p.stls(context=tls_context(cert))
    p.user("bob@example.test")
    p.pass_("secret-bob")
    p.quit()
    logins = time.time() - t0
    assert logins < 4.0, logins
    # Each blackholed lookup ends as a temporary failure within a bound
    # (smtp_dns_timeout 6s; generous margin), never an accept.
    t0 = time.time()
    for r in attackers:
        assert r.reply().startswith("250")  # EHLO
        assert r.reply().startswith("250")  # MAIL
        rep = r.reply()
        assert rep.startswith("451 4.4.3"), rep
    assert time.time() - t0 < 20
    for r in attackers:
        r.close()


def test_dns_lookups_per_ip_and_total(make_server, blackhole):
    s = make_server(dict(BASE, relay_addresses="127.0.0.99",
                         dns_servers=blackhole.server, smtp_dns_timeout="6s",
                         smtp_dns_lookups_per_ip="2", smtp_dns_lookups="3"))
    held = [start_remote_rcpt(s, "127.0.0.31", f"a{i}.example") for i in range(2)]
    wait_for(lambda: len([l for l in s.log().splitlines() if "event=mail" in l]) >= 2,
             what="two lookups started")
    time.sleep(0.5)
    # A third lookup from the same address: refused at once.
    t0 = time.time()
    code, text = rcpt(s, "y@a3.example", source="127.0.0.31")
    assert code == 451 and "4.4.3" in text and "your address" in text, text
    assert time.time() - t0 < 2.0
    # Another address takes the last of the three slots in total...
    held.append(start_remote_rcpt(s, "127.0.0.32", "b1.example"))
    wait_for(lambda: len([l for l in s.log().splitlines() if "event=mail" in l]) >= 4,
             what="third lookup started")
    time.sleep(0.5)
    # ...and a fourth address finds none left.
    code, text = rcpt(s, "y@c1.example", source="127.0.0.33")
    assert code == 451 and "4.4.3" in text and "your address" not in text, text
    assert "rule=dns-limit-ip" in s.log() and "rule=dns-limit " in s.log()
    # Local recipients never need DNS and are never refused for it.
    assert rcpt(s, "alice@example.test", source="127.0.0.31")[0] == 250
    for r in held:
        for _ in range(2):
            r.reply()
        assert r.reply().startswith("451 4.4.3")
        r.close()
    # Once they are over, the same address may look up again.
    code, text = rcpt(s, "y@a4.example", source="127.0.0.31")
    assert code == 451 and "your address" not in text, text
