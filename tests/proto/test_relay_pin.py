"""Outbound delivery against the real daemon (issue 9 review, second
round): a backup-MX (pinned) recipient is judged again at every attempt
even when a relayhost or route carries it; delivery DNS has a deadline;
long MX and address answers are never judged by a part; the SIZE
parameter counts the octets actually sent (RFC 1870).  DNS comes from a
dnsmasq or a small scripted server on loopback, never the machine's."""
import socket
import smtplib
import struct
import threading
import time

import pytest

from conftest import Sink, wait_for
from test_relay_dns import BASE, Dns, rcpt, relay_check


class DnsMulti(Dns):
    """dnsmasq whose hosts file may give a name several addresses."""

    def write_hosts(self, hosts):
        import os
        with open(self.hosts_file + ".new", "w") as f:
            for name, ips in hosts.items():
                for ip in (ips if isinstance(ips, list) else [ips]):
                    f.write(f"{ip} {name}\n")
        os.rename(self.hosts_file + ".new", self.hosts_file)


class ScriptDns:
    """A DNS server on loopback answering MX and A from dicts (AAAA: no
    data).  A name in .silent is never answered (a black hole for that
    name only, so other domains still resolve); .mx and .a may change at
    any time."""

    def __init__(self, mx, a):
        self.mx, self.a, self.silent = dict(mx), dict(a), set()
        self.dropped = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def server(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    @staticmethod
    def encode(name):
        out = b""
        for label in name.rstrip(".").split("."):
            out += bytes([len(label)]) + label.encode()
        return out + b"\0"

    def answer(self, q):
        qid, _flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return None
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels)
        if name in self.silent:
            self.dropped += 1
            return None
        rrs = []
        if qtype == 15 and name in self.mx:
            for pref, host in self.mx[name]:
                rrs.append((15, struct.pack("!H", pref) + self.encode(host)))
        elif qtype == 1 and name in self.a:
            for ip in self.a[name]:
                rrs.append((1, socket.inet_aton(ip)))
        known = name in self.mx or name in self.a
        flags = 0x8180 | (0 if known else 3)  # NXDOMAIN when unknown
        out = struct.pack("!HHHHHH", qid, flags, 1, len(rrs), 0, 0) + question
        for rtype, rdata in rrs:
            out += struct.pack("!HHHIH", 0xC00C, rtype, 1, 0, len(rdata)) + rdata
        return out

    def run(self):
        while self.running:
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                r = self.answer(q)
            except (IndexError, struct.error, UnicodeDecodeError):
                r = None
            if r is not None:
                self.sock.sendto(r, peer)

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def status_lines(server, to):
    return [l for l in server.log().splitlines()
            if f"to=<{to}>" in l and "status=" in l]


# ---- the pin holds through a relayhost or a route --------------------------

def test_pin_rechecked_through_relayhost(make_server, sinks, sink_port):
    """Accepted while flip.example's MX was listed; DNS then moves the MX
    to an unlisted host.  With a relayhost (itself listed) the attempt
    must still judge the domain's MX again: deferred 4.4.4, nothing
    handed to the smarthost (which would deliver to the new MX).  Once
    the MX is listed again the mail goes out through the smarthost."""
    smart = sinks("127.0.0.71")
    d = DnsMulti([("flip.example", "mx.flip.example", 10)],
                 {"mx.flip.example": "127.0.0.72"})
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.71 127.0.0.72",
                             relayhost=f"[127.0.0.71]:{sink_port}",
                             dns_servers=d.server))
        c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30)
        c.ehlo("client.example")
        assert c.mail("x@remote.example")[0] == 250
        code, text = c.rcpt("victim@flip.example")
        assert code == 250, text
        d.set_hosts({"mx.flip.example": "127.0.0.199"})
        assert relay_check(s, "127.0.0.1", "victim@flip.example").startswith("REJECT")
        code, text = c.data(b"Subject: flip\r\n\r\nx\r\n")
        assert code == 250, text
        c.quit()
        wait_for(lambda: any("status=deferred" in l
                             for l in status_lines(s, "victim@flip.example")),
                 what="the pinned attempt deferred")
        time.sleep(2.5)  # retries (queue_retry_max 2s): still never sent
        lines = status_lines(s, "victim@flip.example")
        assert smart.messages == [], smart.messages
        assert not any("status=sent" in l for l in lines), lines
        assert all("dsn=4.4.4" in l for l in lines), lines
        assert "mx.flip.example[127.0.0.199] of flip.example is not in " \
               "relay_addresses" in lines[-1], lines[-1]
        # Listed again: the next attempt goes through the smarthost.
        d.set_hosts({"mx.flip.example": "127.0.0.72"})
        wait_for(lambda: smart.messages, what="delivery through the relayhost")
        assert smart.messages[0]["to"] == ["victim@flip.example"]
        assert "relay=127.0.0.71[127.0.0.71]" in status_lines(
            s, "victim@flip.example")[-1]
    finally:
        d.stop()


def test_pin_needs_a_listed_route_hop(make_server, sinks, sink_port):
    """The MX is listed, but the route for the domain points at an
    unlisted host: the hop connected to must be listed too."""
    hop = sinks("127.0.0.73")
    d = DnsMulti([("rt.example", "mx.rt.example", 10)],
                 {"mx.rt.example": "127.0.0.74"})
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.74",
                             routes=f"rt.example=[127.0.0.73]:{sink_port}",
                             dns_servers=d.server))
        assert rcpt(s, "u@rt.example")[0] == 250
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
            c.sendmail("x@remote.example", ["u@rt.example"], b"Subject: r\r\n\r\nx\r\n")
        wait_for(lambda: any("status=deferred" in l
                             for l in status_lines(s, "u@rt.example")),
                 what="the pinned attempt deferred")
        line = status_lines(s, "u@rt.example")[-1]
        assert "dsn=4.4.4" in line and "next hop" in line, line
        assert hop.messages == []
    finally:
        d.stop()


# ---- long answers are never judged in part ---------------------------------

def test_17_mx_records_most_preferred_unlisted(make_server, sinks):
    """16 listed MX hosts at 20 and one unlisted at 10: the policy must
    see the most preferred one (sorted before the cut) and refuse."""
    evil = sinks("127.0.0.51")
    mx = [("many.example", f"l{i}.many.example", 20) for i in range(16)]
    mx.append(("many.example", "evil.many.example", 10))
    hosts = {f"l{i}.many.example": "127.0.0.52" for i in range(16)}
    hosts["evil.many.example"] = "127.0.0.51"
    d = DnsMulti(mx, hosts)
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.52",
                             dns_servers=d.server))
        code, text = rcpt(s, "u@many.example")
        assert code in (550, 554) and "5.7.1" in text, (code, text)
        assert relay_check(s, "127.0.0.1", "u@many.example").startswith("REJECT")
        assert evil.messages == []
    finally:
        d.stop()


def test_17_listed_mx_records_are_refused(make_server):
    """17 MX hosts, every one listed: one is beyond what can be judged,
    so the answer is "not listed" (it could have been a delivery host)."""
    mx = [("all17.example", f"l{i}.all17.example", 10 + i) for i in range(17)]
    hosts = {f"l{i}.all17.example": "127.0.0.52" for i in range(17)}
    d = DnsMulti(mx, hosts)
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.52",
                             dns_servers=d.server))
        code, text = rcpt(s, "u@all17.example")
        assert code in (550, 554) and "5.7.1" in text, (code, text)
    finally:
        d.stop()


def test_host_with_9_addresses(make_server):
    """Eight listed addresses and a ninth outside the list: refused."""
    d = DnsMulti([("nine.example", "h.nine.example", 10)],
                 {"h.nine.example": [f"127.0.0.{64 + i}" for i in range(8)]
                  + ["127.0.0.99"]})
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.64/29",
                             dns_servers=d.server))
        code, text = rcpt(s, "u@nine.example")
        assert code in (550, 554) and "5.7.1" in text, (code, text)
        # The same eight alone are accepted: the refusal is the ninth.
        d.set_hosts({"h.nine.example": [f"127.0.0.{64 + i}" for i in range(8)]})
        assert rcpt(s, "u@nine.example")[0] == 250
    finally:
        d.stop()


# ---- delivery DNS has a deadline -------------------------------------------

def test_blackholed_pinned_dns_does_not_hold_delivery_slots(make_server, sinks):
    """Pinned mail for a domain whose MX hosts' DNS then never answers:
    each attempt gives up after smtp_delivery_dns_timeout (4.4.3) instead
    of 4 hosts x 3 s x 2 tries, so with every connection slot taken by
    it another domain's mail still goes out promptly."""
    good = sinks("127.0.0.2")
    names = [f"h{i}.pin.example" for i in range(4)]
    dns = ScriptDns({"pin.example": [(10, n) for n in names],
                     "good.example": [(10, "mx.good.example")]},
                    dict({n: ["127.0.0.47"] for n in names},
                         **{"mx.good.example": ["127.0.0.2"]}))
    try:
        s = make_server(dict(BASE, relay_addresses="127.0.0.31 127.0.0.47",
                             dns_servers=dns.server,
                             smtp_delivery_dns_timeout="2s",
                             smtp_max_connections="2",
                             smtp_max_connections_per_domain="2"))
        # Nothing listens on 127.0.0.47: the first attempts defer.
        for i in range(3):
            with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20) as c:
                c.sendmail("x@remote.example", [f"u{i}@pin.example"],
                           b"Subject: pinned\r\n\r\nx\r\n")
        wait_for(lambda: all(status_lines(s, f"u{i}@pin.example") for i in range(3)),
                 what="first attempts")
        dns.silent.update(names)
        wait_for(lambda: dns.dropped >= 2, what="blackholed lookups")
        t0 = time.time()
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20,
                          source_address=("127.0.0.31", 0)) as c:
            c.sendmail("x@remote.example", ["v@good.example"],
                       b"Subject: good\r\n\r\nx\r\n")
        wait_for(lambda: good.messages, timeout=30, what="the other domain's delivery")
        took = time.time() - t0
        # Without the deadline one attempt alone takes about 24 s.
        assert took < 15, took
        wait_for(lambda: any("timed out" in l for l in status_lines(s, "u0@pin.example")),
                 timeout=30, what="a pinned attempt that timed out")
        line = [l for l in status_lines(s, "u0@pin.example") if "timed out" in l][-1]
        assert "status=deferred" in line and "dsn=4.4.3" in line, line
        assert "status=sent" not in "\n".join(
            l for i in range(3) for l in status_lines(s, f"u{i}@pin.example"))
    finally:
        dns.stop()


# ---- SIZE= counts CRLF octets (RFC 1870) -----------------------------------

class SizedSink(Sink):
    """A capture sink advertising SIZE limit and recording MAIL params."""

    def __init__(self, ip, port, limit):
        from aiosmtpd.controller import Controller
        self.messages, self.mail_options = [], []
        self.data_delay, self.in_data = 0, False
        self.ehlos, self.active, self.max_active = 0, 0, 0
        self.mode, self.fail_first, self.attempts = "ok", 0, 0
        self.controller = Controller(self, hostname=ip, port=port,
                                     server_hostname=f"sink-{ip}",
                                     data_size_limit=limit)
        self.controller.start()

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mail_options.append(list(options))
        return await super().handle_MAIL(server, session, envelope, address, options)


BODY = (b"Subject: size\r\n\r\n" + b"x" * 40 + b"\r\n"
        + (b"y" * 38 + b"\r\n") * 1000)


def test_size_parameter_counts_crlf(make_server, sink_port):
    sink = SizedSink("127.0.0.2", sink_port, 32 * 1024 * 1024)
    try:
        s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1"})
        # Leading dots: stuffed on the wire, but not counted (RFC 1870).
        body = BODY + b"..dot line\r\n" * 10
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.sendmail("x@remote.example", ["bob@remote.example"], body)
        [m] = wait_for(lambda: sink.messages, what="delivery")
        sizes = [o for o in sink.mail_options[0] if o.upper().startswith("SIZE=")]
        assert sizes == [f"SIZE={len(m['data'])}"], (sizes, len(m["data"]))
    finally:
        sink.stop()


def test_peer_size_limit_compared_with_crlf_size(make_server, sink_port):
    """The peer's EHLO SIZE lies between the stored (LF) and the sent
    (CRLF) size: the message must not be offered (552 5.3.4, bounced)."""
    s = make_server({"relay": "addresses", "relay_addresses": "127.0.0.1",
                     "queue_retry_min": "1s"})
    # What the sink would receive: measure once with a roomy limit.
    sink = SizedSink("127.0.0.2", sink_port, 32 * 1024 * 1024)
    try:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.sendmail("x@remote.example", ["bob@remote.example"], BODY)
        [m] = wait_for(lambda: sink.messages, what="delivery")
        wire = len(m["data"])
    finally:
        sink.stop()
    # The Received line differs per message by a few octets at most;
    # 4000 LFs separate the two sizes by far more.
    sink = SizedSink("127.0.0.2", sink_port, wire - 100)
    try:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            c.sendmail("x@remote.example", ["carol@remote.example"], BODY)
        wait_for(lambda: status_lines(s, "carol@remote.example"), what="attempt")
        line = status_lines(s, "carol@remote.example")[-1]
        assert "status=bounced" in line and "exceeds the limit" in line, line
        # Only the bounce (to the sender, from <>) reached the sink.
        time.sleep(1)
        assert not [m for m in sink.messages if "carol@remote.example" in m["to"]]
        assert all(m["from"] == "<>" for m in sink.messages), sink.messages
    finally:
        sink.stop()
