"""posternctl relay-check reads its arguments exactly as the server reads
MAIL and RCPT (the same parser, the same command_line_limit) and the
client address as the server writes it (IPv4-mapped IPv6 as IPv4), so
the two never give different verdicts for the same input."""
import smtplib

from conftest import Raw

BASE = {"relay": "addresses", "relay_addresses": "127.0.0.1"}


def check(server, client, frm, to):
    r = server.ctl("relay-check", "--client", client, "--from", frm, "--to", to,
                   check=False)
    return r.returncode, r.stdout + r.stderr


def server_rcpt(server, to, frm="x@remote.example"):
    r = Raw(server.ports["smtp"])
    assert r.cmd("EHLO client.example").startswith("250")
    assert r.cmd(f"MAIL FROM:<{frm}>").startswith("250")
    rep = r.cmd(f"RCPT TO:<{to}>")
    r.cmd("QUIT")
    return rep


def test_long_source_route_same_verdict(make_server):
    s = make_server(BASE)
    # A route of about 400 octets: the line fits command_line_limit
    # (1024), so the server drops the route and accepts.
    route = ",".join("@r%02d.example" % i for i in range(34))
    to = f"{route}:alice@example.test"
    assert 264 < len(to) < 1000
    assert server_rcpt(s, to).startswith("250")
    rc, out = check(s, "127.0.0.9", "x@remote.example", to)
    assert rc == 0 and out.startswith("ACCEPT 250"), out
    assert "mailbox: alice@example.test" in out
    # The same route in front of a sender.
    rc, out = check(s, "127.0.0.9", f"{route}:x@remote.example", "alice@example.test")
    assert rc == 0 and out.startswith("ACCEPT 250"), out


def test_route_over_command_line_limit_same_verdict(make_server):
    s = make_server(BASE)
    route = ",".join("@r%d.example" % i for i in range(100))  # > 1024 octets
    to = f"{route}:alice@example.test"
    assert server_rcpt(s, to).startswith("500 5.5.2")
    rc, out = check(s, "127.0.0.9", "x@remote.example", to)
    assert rc == 1 and "500 5.5.2" in out and "too long" in out, out


def test_long_mailbox_same_verdict(make_server):
    s = make_server(BASE)
    to = "@r.example:" + "l" * 65 + "@example.test"
    assert server_rcpt(s, to).startswith("501 5.1.3")
    rc, out = check(s, "127.0.0.9", "x@remote.example", to)
    assert rc == 1 and "501 5.1.3" in out, out
    # Syntax errors keep the server's code too.
    rc, out = check(s, "127.0.0.9", "a..b@remote.example", "alice@example.test")
    assert rc == 1 and "501 5.1.7" in out, out


def test_ipv4_mapped_client_is_ipv4(make_server, tmp_path):
    """The server sees a client on an IPv4-mapped address as IPv4; so
    must relay-check: the accept list (exact IPs) matches it."""
    acc = tmp_path / "accept.txt"
    acc.write_text("127.0.0.5\n")
    s = make_server({"relay": "local-hosts", "accept_file": str(acc)})
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20,
                     source_address=("127.0.0.5", 0))
    c.ehlo("client.example")
    assert c.mail("x@remote.example")[0] == 250
    assert c.rcpt("far@remote.example")[0] == 250
    c.quit()
    for client in ("127.0.0.5", "::ffff:127.0.0.5", "::FFFF:127.0.0.5"):
        rc, out = check(s, client, "x@remote.example", "far@remote.example")
        assert rc == 0 and out.startswith("ACCEPT 250"), (client, out)
    rc, out = check(s, "::ffff:127.0.0.6", "x@remote.example", "far@remote.example")
    assert rc == 3 and out.startswith("REJECT 550"), out
