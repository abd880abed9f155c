"""DNS blocklists at connect (issue 15 part 3) against the real daemon:
a private dnsmasq on loopback serves the blocklist zones (A and TXT
records for 127.0.0.N clients, whose query names are N.0.0.127.ZONE) and
logs every query, so a test can tell which lookups were made.  Each test
connects from its own loopback address, so the listings (and the server's
cache) of one test never meet another's."""
import os
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BlackHole, Raw, free_port, tls_context, wait_for

ZEN = "zen.example.org"
BL = "bl.example.net"
HOLE = "hole.example.com"  # dnsmasq forwards it to a black hole
LONG_TXT = "x" * 240

# name -> (A, TXT or None)
RECORDS = {
    f"2.0.0.127.{ZEN}": ("127.0.0.2", "Listed by ZEN see https://zen.example.org/q?2"),
    f"3.0.0.127.{ZEN}": ("127.0.0.4", LONG_TXT),
    f"4.0.0.127.{BL}": ("127.0.0.3", None),     # not the expected answer
    f"5.0.0.127.{BL}": ("127.0.0.2", "BL says no"),
    f"7.0.0.127.{ZEN}": ("127.0.0.2", "relay client"),
    f"8.0.0.127.{ZEN}": ("127.0.0.2", "log only"),
    f"9.0.0.127.{ZEN}": ("127.0.0.2", None),     # listed, no TXT
    f"10.0.0.127.{ZEN}": ("127.0.0.2", "cached"),
    f"11.0.0.127.{ZEN}": ("127.255.255.254", None),  # Spamhaus: refused
    f"12.0.0.127.{ZEN}": ("10.1.2.3", None),     # outside 127/8: ignored
    f"13.0.0.127.{ZEN}": ("127.0.0.2", "submission"),
    f"14.0.0.127.{ZEN}": ("127.0.0.2", "allowed"),
    f"15.0.0.127.{BL}": ("127.0.0.2", "with the hole"),
    f"25.0.0.127.{ZEN}": ("127.0.0.2", "burst"),
    f"26.0.0.127.{ZEN}": ("127.0.0.2", "implicit tls"),
    f"19.0.0.127.{ZEN}": ("127.0.0.2", "queued"),
}
V6_NAME = ".".join("1" + "0" * 31) + "." + ZEN  # ::1 reversed (RFC 5782 2.4)
RECORDS[V6_NAME] = ("127.0.0.2", "v6 listed")


class Zones:
    """dnsmasq serving RECORDS, logging its queries to a file."""

    def __init__(self, hole_port):
        self.dir = tempfile.mkdtemp(prefix="postern-dnsbl-")
        self.logpath = os.path.join(self.dir, "queries.log")
        err = ""
        for _ in range(5):
            self.port = free_port(kind=socket.SOCK_DGRAM)
            args = ["dnsmasq", "-k", "-p", str(self.port), "--listen-address=127.0.0.1",
                    "--bind-interfaces", "--no-resolv", "--no-hosts",
                    f"--local=/{ZEN}/", f"--local=/{BL}/",
                    f"--server=/{HOLE}/127.0.0.1#{hole_port}",
                    "--log-queries", "--log-facility=" + self.logpath]
            if os.geteuid() == 0:
                args.append("--user=root")
            for name, (a, txt) in RECORDS.items():
                args.append(f"--host-record={name},{a}")
                if txt is not None:
                    args.append(f'--txt-record={name},{txt}')
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            time.sleep(0.3)
            if self.proc.poll() is None:
                return
            err = self.proc.stderr.read().decode()
            if "Address already in use" not in err:
                break
        raise AssertionError("dnsmasq did not start: " + err)

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def queries(self, name, qtype="A"):
        """How many times name was asked (of qtype)."""
        try:
            with open(self.logpath) as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        return text.count(f"query[{qtype}] {name} ")

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def hole():
    b = BlackHole()
    yield b
    b.close()


@pytest.fixture(scope="module")
def zones(hole):
    z = Zones(hole.port)
    yield z
    z.close()


def server_for(make_server, zones, **extra):
    conf = {"dnsbl": f"{ZEN}, {BL}=127.0.0.2", "dns_servers": zones.server,
            "auth_require_tls": "no"}
    conf.update(extra)
    return make_server(conf)


def connect(server, source, kind="smtp", timeout=20):
    """A Raw session from source (a loopback address); its greeting read."""
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", server.ports[kind]),
                                      timeout=timeout, source_address=(source, 0))
    r.buf = b""
    r.greeting = r.reply()
    return r


def test_listed_gets_554_with_reason_then_only_quit(make_server, zones):
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.2")
    assert r.greeting == ("554 5.7.1 Service unavailable; client [127.0.0.2] blocked "
                          f"using {ZEN}; Listed by ZEN see https://zen.example.org/q?2")
    # RFC 5321 3.1: after a 554 greeting only QUIT is served.
    assert r.cmd("EHLO c.example").startswith("503 5.7.1 Service unavailable")
    assert r.cmd("MAIL FROM:<a@remote.example>").startswith("503 ")
    assert r.cmd("QUIT").startswith("221")
    assert r.closed()
    log = s.log()
    assert (f"event=dnsbl result=listed list={ZEN} ip=127.0.0.2 answer=127.0.0.2 "
            "action=reject cached=no") in log
    assert zones.queries(f"2.0.0.127.{ZEN}", "TXT") >= 1
    # Postfix's line, so pflogsumm counts the rejection as an RBL one.
    assert (f"NOQUEUE: reject: CONNECT from unknown[127.0.0.2]: 554 5.7.1 Service "
            f"unavailable; client [127.0.0.2] blocked using {ZEN}; ") in log
    pflogsumm = shutil.which("pflogsumm")
    if pflogsumm is not None:
        out = subprocess.run([pflogsumm, "--syslog-name=posternd", s.logpath],
                             capture_output=True, text=True, timeout=60).stdout
        assert f"blocked using {ZEN}" in out, out


def test_blocked_client_is_closed_after_a_few_commands(make_server, zones):
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.9")
    # No TXT record: the reply names the list only.
    assert r.greeting == ("554 5.7.1 Service unavailable; client [127.0.0.9] blocked "
                          f"using {ZEN}")
    assert r.cmd("EHLO c.example").startswith("503 ")
    assert r.cmd("NOOP").startswith("503 ")
    assert r.cmd("NOOP").startswith("421 4.7.1")
    assert r.closed()


def test_long_txt_reason_is_cut(make_server, zones):
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.3")
    assert r.greeting.startswith("554 5.7.1 Service unavailable; client [127.0.0.3] "
                                 f"blocked using {ZEN}; xxxx")
    reason = r.greeting.split("; ")[-1]
    assert reason == "x" * 200, len(reason)
    r.close()


def test_clear_client_is_greeted(make_server, zones):
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.1")
    assert r.greeting.startswith("220 ")
    assert r.cmd("EHLO c.example").startswith("250")
    r.cmd("QUIT")
    assert zones.queries(f"1.0.0.127.{ZEN}") >= 1
    assert zones.queries(f"1.0.0.127.{BL}") >= 1
    assert "event=dnsbl result=clear" in s.log()


def test_expected_answer_and_two_lists(make_server, zones):
    s = server_for(make_server, zones)
    # bl.example.net=127.0.0.2 answers 127.0.0.3 for .4: not listed.
    r = connect(s, "127.0.0.4")
    assert r.greeting.startswith("220 "), r.greeting
    r.close()
    # .5 is in bl (the expected answer) and not in zen: the second list.
    r = connect(s, "127.0.0.5")
    assert r.greeting == ("554 5.7.1 Service unavailable; client [127.0.0.5] blocked "
                          f"using {BL}; BL says no")
    r.close()


def test_refused_and_outside_127_are_not_listings(make_server, zones):
    s = server_for(make_server, zones)
    for ip in ("127.0.0.11", "127.0.0.12"):
        r = connect(s, ip)
        assert r.greeting.startswith("220 "), (ip, r.greeting)
        r.close()
    assert f"event=dnsbl result=refused list={ZEN} ip=127.0.0.11" in s.log()


def test_list_that_never_answers_delays_greeting_at_most_timeout(make_server, zones, hole):
    s = server_for(make_server, zones, dnsbl=f"{HOLE}, {BL}=127.0.0.2",
                   dnsbl_timeout="1s")
    t = time.time()
    r = connect(s, "127.0.0.15")
    took = time.time() - t
    # The list that answers still blocks, the other fails open.
    assert r.greeting.startswith("554 5.7.1 Service unavailable; client [127.0.0.15] "
                                 f"blocked using {BL}; with the hole"), r.greeting
    assert took < 6, took
    r.close()
    t = time.time()
    r = connect(s, "127.0.0.16")
    took = time.time() - t
    assert r.greeting.startswith("220 "), r.greeting
    assert 0.5 < took < 6, took
    r.close()
    assert f"event=dnsbl result=error list={HOLE} ip=127.0.0.16" in s.log()
    assert hole.queries > 0


def test_allow_and_relay_addresses_are_never_checked(make_server, zones):
    s = server_for(make_server, zones, dnsbl_allow="127.0.0.14/32",
                   relay_addresses="127.0.0.7")
    for ip, why in (("127.0.0.14", "dnsbl_allow"), ("127.0.0.7", "relay_addresses")):
        r = connect(s, ip)
        assert r.greeting.startswith("220 "), (ip, r.greeting)
        r.close()
        assert f"event=dnsbl result=skip ip={ip} reason={why}" in s.log()
        n = ip.split(".")[-1]
        assert zones.queries(f"{n}.0.0.127.{ZEN}") == 0


def test_action_log_only_logs(make_server, zones):
    s = server_for(make_server, zones, dnsbl_action="log")
    with smtplib.SMTP(timeout=20, source_address=("127.0.0.8", 0)) as c:
        c.connect("127.0.0.1", s.ports["smtp"])
        c.ehlo("c.example")
        c.sendmail("a@remote.example", ["alice@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    wait_for(lambda: s.messages("alice"), what="delivered")
    lines = [l for l in s.log().splitlines() if "event=dnsbl" in l]
    assert any(f"event=dnsbl result=listed list={ZEN} ip=127.0.0.8 answer=127.0.0.2 "
               'action=log cached=no reason="log only"' in l for l in lines), lines


def test_answers_are_cached(make_server, zones):
    s = server_for(make_server, zones)
    for _ in range(3):
        r = connect(s, "127.0.0.10")
        assert r.greeting.endswith(f"blocked using {ZEN}; cached"), r.greeting
        r.close()
        r = connect(s, "127.0.0.17")  # clear: NXDOMAIN is kept too
        assert r.greeting.startswith("220 ")
        r.close()
    assert zones.queries(f"10.0.0.127.{ZEN}") == 1
    assert zones.queries(f"10.0.0.127.{ZEN}", "TXT") == 1
    assert zones.queries(f"17.0.0.127.{ZEN}") == 1
    assert zones.queries(f"17.0.0.127.{BL}") == 1
    assert "cached=yes" in s.log()


def test_submission_listed_client_may_authenticate(make_server, zones):
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.13", kind="submission")
    assert r.greeting.startswith("220 "), r.greeting
    assert r.cmd("EHLO c.example").startswith("250")
    assert r.cmd("MAIL FROM:<alice@example.test>") == (
        "554 5.7.1 Service unavailable; client [127.0.0.13] blocked using "
        f"{ZEN}; submission")
    r.close()
    with smtplib.SMTP(timeout=20, source_address=("127.0.0.13", 0)) as c:
        c.connect("127.0.0.1", s.ports["submission"])
        c.ehlo("c.example")
        c.login("alice@example.test", "secret-alice")
        c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: s\r\n\r\nhi\r\n")
    wait_for(lambda: s.messages("bob"), what="delivered")


def test_ipv6_client_nibble_name(make_server, zones):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    s = server_for(make_server, zones, smtp_listen="[::1]:0")
    port = int(re.search(r"event=listen kind=smtp addr=\[::1\]:(\d+)", s.log()).group(1))
    sock = socket.create_connection(("::1", port), timeout=20)
    r = Raw.__new__(Raw)
    r.sock, r.buf = sock, b""
    assert r.reply() == ("554 5.7.1 Service unavailable; client [::1] blocked using "
                         f"{ZEN}; v6 listed")
    r.close()
    assert zones.queries(V6_NAME) == 1


def hold_the_slot(s, source="127.0.0.18"):
    """A session whose lookup (the hole) holds the one DNS slot."""
    first = Raw.__new__(Raw)
    first.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                          source_address=(source, 0))
    first.buf = b""
    wait_for(lambda: f"event=connect client={source}" in s.log(), what="first session")
    time.sleep(0.3)
    return first


def test_lookups_in_flight_are_bounded_a_client_waits(make_server, zones, hole):
    """smtp_dns_lookups in flight in total: beyond, a client waits for a
    slot (at most its dnsbl_timeout), then is checked like any other, with
    a dnsbl_timeout of its own -- filling the DNS threads is no way past
    the lists, and the greeting waits at most twice the bound."""
    s = server_for(make_server, zones, dnsbl=f"{HOLE}, {ZEN}", dnsbl_timeout="4s",
                   smtp_dns_lookups="1")
    first = hold_the_slot(s)
    t = time.time()
    r = connect(s, "127.0.0.19")
    took = time.time() - t
    assert r.greeting == ("554 5.7.1 Service unavailable; client [127.0.0.19] blocked "
                          f"using {ZEN}; queued"), r.greeting
    assert took < 8.5, f"greeted after {took:.1f}s, dnsbl_timeout 4s"
    assert "event=dnsbl result=queued ip=127.0.0.19" in s.log()
    assert "not checked" not in s.log()
    r.close()
    assert first.reply().startswith("220 ")
    first.close()


class SlowDNS:
    """A loopback resolver that answers *.slow.example (A 127.0.0.2 and a
    TXT) after 0.3 s and never answers anything else."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.server = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            threading.Thread(target=self.answer, args=(q, peer), daemon=True).start()

    def answer(self, q, peer):
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        if not ".".join(labels).endswith("slow.example"):
            return
        time.sleep(0.3)
        if qtype == 1:
            rr = struct.pack(">HHHIH", 0xc00c, 1, 1, 60, 4) + bytes([127, 0, 0, 2])
        else:
            txt = b"slow list"
            rr = struct.pack(">HHHIH", 0xc00c, 16, 1, 60, len(txt) + 1) + bytes([len(txt)]) + txt
        hdr = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
        try:
            self.sock.sendto(hdr + q[12:i + 5] + rr, peer)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def test_after_a_wait_the_lists_get_the_whole_bound(make_server):
    """A check that waited for a DNS slot gets a dnsbl_timeout of its own:
    with only what was left of its wait, a list that answers in 0.3 s
    timed out, listed nobody, and the listed client was greeted (review)."""
    d = SlowDNS()
    try:
        s = make_server({"dnsbl": "slow.example, hole.example", "dns_servers": d.server,
                         "dnsbl_timeout": "1s", "smtp_dns_lookups": "1"})
        holder = Raw.__new__(Raw)
        holder.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                               source_address=("127.0.0.42", 0))
        holder.buf = b""
        wait_for(lambda: "event=connect client=127.0.0.42" in s.log(), what="holder")
        # The holder's job ends at its 1 s; the waiter, queued just after
        # it came, would have had about 0.2 s left (A queries: 3/4 of it).
        time.sleep(0.05)
        r = connect(s, "127.0.0.43")
        assert r.greeting.startswith("554 5.7.1 Service unavailable; client [127.0.0.43] "
                                     "blocked using slow.example"), r.greeting
        assert "event=dnsbl result=queued ip=127.0.0.43" in s.log()
        r.close()
        holder.close()
    finally:
        d.close()


def test_no_slot_within_timeout_is_421_on_port_25(make_server, zones, hole):
    """No DNS slot comes within dnsbl_timeout: port 25 says 421 4.3.2 (a
    real MTA comes back; a listed one does not get in unchecked), the
    submission port greets (its listed clients may log in anyway), and
    the session holding the slot is not disturbed."""
    s = server_for(make_server, zones, dnsbl=HOLE, dnsbl_timeout="6s",
                   smtp_dns_lookups="1")
    first = hold_the_slot(s)
    # New sessions wait 1 s at most; the first keeps its 6 s job.
    s.extra["dnsbl_timeout"] = "1s"
    s.write_conf()
    s.ctl("reload")
    t = time.time()
    r = connect(s, "127.0.0.19")
    assert r.greeting.startswith("421 4.3.2 "), r.greeting
    assert r.closed()
    assert 0.8 < time.time() - t < 3
    sub = connect(s, "127.0.0.27", kind="submission")
    assert sub.greeting.startswith("220 "), sub.greeting
    sub.close()
    log = s.log()
    assert "ip=127.0.0.19 error=\"too many DNS lookups in progress, not checked\" action=tempfail" in log
    assert "ip=127.0.0.27 error=\"too many DNS lookups in progress, not checked\"" in log
    assert first.reply().startswith("220 ")
    first.close()


def test_shutdown_during_lookup(make_server, zones, hole):
    s = server_for(make_server, zones, dnsbl=HOLE, dnsbl_timeout="3s")
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                      source_address=("127.0.0.20", 0))
    r.buf = b""
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    # The lookup ends (fail open at dnsbl_timeout), then the 421 is the
    # greeting: no 220 for a server going away.
    assert r.reply().startswith("421 4.3.2")
    assert r.closed()
    assert s.proc.wait(20) == 0


def test_list_errors_fail_open(make_server, zones):
    """A list the resolver refuses (a zone it does not serve: REFUSED)
    lists nobody; the other list still counts."""
    s = server_for(make_server, zones, dnsbl=f"nowhere.example.com, {ZEN}")
    r = connect(s, "127.0.0.21")
    assert r.greeting.startswith("220 "), r.greeting
    r.close()
    assert "event=dnsbl result=error list=nowhere.example.com ip=127.0.0.21" in s.log()
    r = connect(s, "127.0.0.2")
    assert r.greeting.startswith("554 5.7.1 Service unavailable; client [127.0.0.2] "
                                 f"blocked using {ZEN}"), r.greeting
    r.close()


def test_reload_turns_lists_on_for_new_sessions(make_server, zones):
    s = make_server({"dns_servers": zones.server})
    old = connect(s, "127.0.0.2")
    assert old.greeting.startswith("220 ")
    assert "event=dnsbl" not in s.log()  # no lists: no lookup
    s.extra.update({"dnsbl": ZEN})
    s.write_conf()
    s.ctl("reload")
    wait_for(lambda: "event=reload result=ok" in s.log(), what="reload")
    r = connect(s, "127.0.0.2")
    assert r.greeting.startswith("554 5.7.1 "), r.greeting
    r.close()
    # The session from before goes on under its config.
    assert old.cmd("EHLO c.example").startswith("250")
    old.cmd("QUIT")
    old.close()


@pytest.mark.parametrize("servers,warned", [
    ("8.8.8.8", True), ("1.1.1.1:53", True), ("[2606:4700:4700::1111]:53", True),
    ("127.0.0.1:53", False)])
def test_check_warns_spamhaus_through_public_resolver(make_server, servers, warned):
    """posternctl check (no DNS of its own): Spamhaus refuses public
    resolvers, so its zone through one lists nobody."""
    s = make_server({"dnsbl": "zen.spamhaus.org", "dns_servers": servers}, start=False)
    r = s.ctl("check", check=False)
    assert ("dnsbl: zen.spamhaus.org refuses queries through the public resolver"
            in r.stdout) == warned, r.stdout


class HostileDns:
    """A UDP DNS responder on loopback with answers no list should give:
    for any A query 127.0.0.2 (with decoys outside 127/8 first), for a
    TXT a reason with CR LF, quotes, '=', NUL, an escape sequence,
    8-bit bytes and over 255 bytes in two strings; for names with a
    "garbage" label a reply that does not parse."""

    TXT = [b'bad\r\n250 2.0.0 ok "x" result=accept\x00\x1b[31m\xff\xfe' + b"A" * 200,
           b"B" * 200]

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def server(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def answer(self, pkt):
        qid = pkt[:2]
        i = 12
        labels = []
        while pkt[i]:
            labels.append(pkt[i + 1:i + 1 + pkt[i]])
            i += 1 + pkt[i]
        question = pkt[12:i + 5]
        qtype = int.from_bytes(pkt[i + 1:i + 3], "big")
        if b"garbage" in labels:
            return qid + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + b"\xc0"
        if qtype == 1:
            rrs = [b"\x0a\x00\x00\x01", b"\xc0\x00\x02\x01", b"\x7f\x00\x00\x02"]
            body = b"".join(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + a
                            for a in rrs)
        else:
            rd = b"".join(bytes([len(t)]) + t for t in self.TXT)
            rrs = [rd]
            body = (b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x01\x2c" +
                    len(rd).to_bytes(2, "big") + rd)
        return (qid + b"\x81\x80\x00\x01" + len(rrs).to_bytes(2, "big") +
                b"\x00\x00\x00\x00" + question + body)

    def run(self):
        while self.running:
            try:
                pkt, peer = self.sock.recvfrom(4096)
                self.sock.sendto(self.answer(pkt), peer)
            except socket.timeout:
                pass
            except OSError:
                return

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_hostile_answers_are_cleaned(make_server):
    evil = HostileDns()
    try:
        s = make_server({"dnsbl": "evil.example, garbage.example",
                         "dns_servers": evil.server})
        r = connect(s, "127.0.0.22")
        # CR LF, NUL, ESC and 8-bit bytes cannot reach the reply line;
        # the two strings are one reason, cut at 200 bytes.
        reason = ('bad 250 2.0.0 ok "x" result=accept??[31m??' + "A" * 200)[:200]
        assert r.greeting == ("554 5.7.1 Service unavailable; client [127.0.0.22] "
                              "blocked using evil.example; " + reason), r.greeting
        assert r.cmd("QUIT").startswith("221")
        r.close()
        log = s.log()
        # The decoys outside 127/8 came first: the listing is 127.0.0.2.
        line = [l for l in log.splitlines() if "result=listed list=evil.example" in l][0]
        assert "answer=127.0.0.2" in line and "\\x22x\\x22" in line and "\\x3daccept" in line
        assert "\r" not in line and "\x1b" not in line
        # A reply that does not parse lists nobody.
        assert ("event=dnsbl result=error list=garbage.example ip=127.0.0.22" in log)
    finally:
        evil.close()


def test_greet_pause_and_lookups_overlap(make_server, zones, hole):
    """With greet_pause the lookups start at connect: the greeting waits
    for the longer of the two, not their sum; a listed client still gets
    the 554 only after the pause, and one that talks first is still
    caught as pregreet."""
    s = server_for(make_server, zones, dnsbl=f"{HOLE}, {ZEN}", dnsbl_timeout="2s",
                   greet_pause="2s")
    t = time.time()
    r = connect(s, "127.0.0.23")
    took = time.time() - t
    assert r.greeting.startswith("220 "), r.greeting
    assert 1.5 < took < 3.5, took  # 2 s + 2 s would be 4 s
    r.close()
    t = time.time()
    r = connect(s, "127.0.0.2")
    took = time.time() - t
    assert r.greeting.startswith(f"554 5.7.1 Service unavailable; client [127.0.0.2] "
                                 f"blocked using {ZEN}"), r.greeting
    assert 1.5 < took < 3.5, took
    r.close()
    # A client that talks first, its lookup (the hole) still running.
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                      source_address=("127.0.0.2", 0))
    r.buf = b""
    r.send("EHLO early.example\r\n")
    assert r.reply().startswith("554 5.5.1"), "pregreet"
    assert r.closed()
    assert "event=pregreet client=127.0.0.2" in s.log()


def test_greet_pause_cached_listed(make_server, zones):
    s = server_for(make_server, zones, greet_pause="500ms")
    for _ in range(2):
        r = connect(s, "127.0.0.24")
        assert r.greeting.startswith("220 "), r.greeting
        r.close()
        r = connect(s, "127.0.0.10")
        assert r.greeting.endswith(f"blocked using {ZEN}; cached"), r.greeting
        r.close()


def test_burst_from_one_client_shares_one_lookup(make_server, zones):
    """Connections from one address while its lookup runs wait for that
    lookup (asking nothing, taking no smtp_dns_lookups slot): with one
    slot in all, every one of them is still checked."""
    s = server_for(make_server, zones, dnsbl=f"{HOLE}, {ZEN}", dnsbl_timeout="1s",
                   smtp_dns_lookups="1")
    out = []

    def one():
        r = connect(s, "127.0.0.25")
        out.append(r.greeting)
        r.close()

    def gone():  # leaves while it waits: freed when the lookup ends
        socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                 source_address=("127.0.0.25", 0)).close()

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    gone()
    for t in threads:
        t.join(30)
    assert len(out) == 6
    for g in out:
        assert g == ("554 5.7.1 Service unavailable; client [127.0.0.25] blocked "
                     f"using {ZEN}; burst"), g
    assert zones.queries(f"25.0.0.127.{ZEN}") == 1
    assert "not checked" not in s.log()
    # Each session judged and logged the shared answers.
    assert s.log().count(f"result=listed list={ZEN} ip=127.0.0.25") >= 6


def test_submissions_listed_client_may_authenticate(make_server, zones, cert):
    """Port 465 (implicit TLS) as port 587: greeted, MAIL before AUTH
    gets the 554, a login sends as usual."""
    s = server_for(make_server, zones)
    # (smtplib's constructor raises unless the greeting is a 220)
    with smtplib.SMTP_SSL("127.0.0.1", s.ports["submissions"], timeout=20,
                          context=tls_context(cert),
                          source_address=("127.0.0.26", 0)) as c:
        c.ehlo("c.example")
        code, text = c.mail("alice@example.test")
        assert code == 554 and text.decode().endswith(f"blocked using {ZEN}; implicit tls")
        c.login("alice@example.test", "secret-alice")
        c.sendmail("alice@example.test", ["carol@example.test"], b"Subject: t\r\n\r\nhi\r\n")
    wait_for(lambda: s.messages("carol"), what="delivered")


def test_shutdown_with_lookups_and_waiters(make_server, zones, hole):
    """SIGTERM while sessions wait for their lookups, some parked on
    another's: every one gets the 421, none a 220, and posternd exits
    clean (ASan checks the teardown)."""
    s = server_for(make_server, zones, dnsbl=HOLE, dnsbl_timeout="2s")
    rs = []
    for i in range(10):
        r = Raw.__new__(Raw)
        r.sock = socket.create_connection(("127.0.0.1", s.ports["smtp"]), timeout=20,
                                          source_address=(f"127.0.0.{30 + i % 4}", 0))
        r.buf = b""
        rs.append(r)
    wait_for(lambda: s.log().count("event=connect client=127.0.0.3") >= 10,
             what="all connected")
    s.proc.send_signal(signal.SIGTERM)
    for r in rs:
        assert r.reply().startswith("421 4.3.2")
        assert r.closed()
    assert s.proc.wait(20) == 0


class ManyA(HostileDns):
    """Answers every A query with five records, the expected code last:
    Spamhaus ZEN returns several codes at once, in any order."""

    def answer(self, pkt):
        qid = pkt[:2]
        i = 12
        while pkt[i]:
            i += 1 + pkt[i]
        question = pkt[12:i + 5]
        qtype = int.from_bytes(pkt[i + 1:i + 3], "big")
        if qtype != 1:  # no TXT: NXDOMAIN
            return qid + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + question
        rrs = [b"\x7f\x00\x00\x0a", b"\x7f\x00\x00\x04", b"\x7f\x00\x00\x03",
               b"\x7f\x00\x00\x0b", b"\x7f\x00\x00\x02"]
        body = b"".join(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + a
                        for a in rrs)
        return (qid + b"\x81\x80\x00\x01" + len(rrs).to_bytes(2, "big") +
                b"\x00\x00\x00\x00" + question + body)


def test_expected_answer_in_the_fifth_record(make_server):
    """zen=127.0.0.2 matches when 127.0.0.2 is the fifth of five codes
    (up to 16 are judged); 127.0.0.9, in none of them, does not."""
    evil = ManyA()
    try:
        s = make_server({"dnsbl": "zen.example.org=127.0.0.2", "dns_servers": evil.server})
        r = connect(s, "127.0.0.23")
        assert r.greeting.startswith("554 5.7.1 Service unavailable; client [127.0.0.23] "
                                     "blocked using zen.example.org"), r.greeting
        r.close()
        s.stop()
        s2 = make_server({"dnsbl": "zen.example.org=127.0.0.9", "dns_servers": evil.server})
        r = connect(s2, "127.0.0.23")
        assert r.greeting.startswith("220 "), r.greeting
        r.close()
    finally:
        evil.close()


def test_listed_submission_pipelined_auth_mail(make_server, zones):
    """A listed client on 587 pipelines a failing AUTH with MAIL, RCPT and
    DATA: the MAIL after the 535 gets the 554, nothing is accepted."""
    import base64
    s = server_for(make_server, zones)
    r = connect(s, "127.0.0.13", kind="submission")
    assert r.cmd("EHLO c.example").startswith("250")
    bad = base64.b64encode(b"\0alice@example.test\0wrong").decode()
    r.sock.sendall(f"AUTH PLAIN {bad}\r\nMAIL FROM:<alice@example.test>\r\n"
                   "RCPT TO:<bob@example.test>\r\nDATA\r\n".encode())
    got = [r.reply() for _ in range(4)]
    assert got[0].startswith("535") and got[1].startswith("554"), got
    assert not got[2].startswith("250") and not got[3].startswith("354"), got
    r.close()
