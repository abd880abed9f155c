"""IMAP against imapflow (npm, installed by scripts/deps.sh under
build/node), a client library webmails and bots use: IDLE.  curl and
mbsync are driven in test_imap.py."""
import json
import os
import smtplib
import subprocess

import pytest

from conftest import ROOT

USER = "alice@example.test"
PASSWORD = "secret-alice"
NODE_MODULES = os.path.join(ROOT, "build/node/node_modules")
IMAP = {"imap_listen": "127.0.0.1:0", "imaps_listen": "127.0.0.1:0"}


def deliver(server, subject, to=USER, body="hello"):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail("x@remote.example", [to],
                   f"Subject: {subject}\r\nMessage-ID: <{subject}@remote.example>\r\n"
                   f"\r\n{body}\r\n".encode())


IMAPFLOW_IDLE = r"""
const { ImapFlow } = require('imapflow');
const fs = require('fs');
const [port, ca] = process.argv.slice(2);
(async () => {
  const client = new ImapFlow({ host: '127.0.0.1', port: +port, secure: true,
    tls: { ca: [fs.readFileSync(ca)], servername: 'localhost' },
    auth: { user: 'alice@example.test', pass: 'secret-alice' }, logger: false });
  await client.connect();
  await client.mailboxOpen('INBOX');
  const before = client.mailbox.exists;
  const got = new Promise((resolve) => client.on('exists', (d) => resolve(d)));
  const idling = client.idle();  // IDLE now, not after autoIdleDelay
  console.log(JSON.stringify({ ready: true, exists: before }));
  const d = await Promise.race([got, new Promise((r) => setTimeout(() => r(null), 20000))]);
  console.log(JSON.stringify({ event: d }));
  await client.logout();
  await idling.catch(() => {});
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
"""


def test_imapflow_idle_sees_smtp_delivery(make_server, cert, tmp_path):
    if not os.path.isdir(os.path.join(NODE_MODULES, "imapflow")):
        pytest.fail("imapflow missing: scripts/deps.sh test installs it under build/node")
    s = make_server(extra=IMAP)
    deliver(s, "before")
    script = tmp_path / "idle.js"
    script.write_text(IMAPFLOW_IDLE)
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    p = subprocess.Popen(["node", str(script), str(s.ports["imaps"]), cert[0]],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(p.stdout.readline())
        assert first == {"ready": True, "exists": 1}, first
        deliver(s, "during idle")
        second = json.loads(p.stdout.readline())
        assert second["event"] is not None, "no EXISTS reached the idling client"
        assert second["event"]["count"] == 2, second
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
