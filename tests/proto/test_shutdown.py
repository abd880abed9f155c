"""SIGTERM: no delivery attempt starts after the signal (the queue stops
first; a message a session finishes meanwhile waits on disk for the next
start), and a POP3 download in progress obeys the same rule as SMTP's
DATA (docs/configuration.md, shutdown_timeout)."""
import poplib
import signal
import smtplib
import time

from conftest import Raw, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1", "queue_retry_min": "1s",
        "queue_retry_max": "2s"}


def test_no_attempt_starts_after_sigterm(make_server, sinks):
    mx = sinks("127.0.0.2")
    s = make_server(FAST)
    c = Raw(s.ports["smtp"])
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<alice@example.test>").startswith("250")
    assert c.cmd("RCPT TO:<u@remote.example>").startswith("250")
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "event=shutdown service=smtp" in s.log(), what="shutdown")
    # The transaction may finish; its message is queued but not sent.
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: late\r\n\r\nx\r\n.").startswith("250")
    c.send(b"QUIT\r\n")
    assert s.proc.wait(30) == 0
    s.logf.close()
    assert mx.messages == [], "a delivery attempt started after SIGTERM"
    # It is delivered at the next start.
    s.start()
    [m] = wait_for(lambda: mx.messages, timeout=30, what="delivery after restart")
    assert b"Subject: late" in m["data"]
