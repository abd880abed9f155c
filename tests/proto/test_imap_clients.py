"""IMAP against imapflow (npm, installed by scripts/deps.sh under
build/node), a client library webmails and bots use: IDLE, and a QRESYNC resynchronisation after being offline.  curl and
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


IMAPFLOW_QRESYNC = r"""
const { ImapFlow } = require('imapflow');
const fs = require('fs');
const [port, ca, uidv, modseq] = process.argv.slice(2);
(async () => {
  const client = new ImapFlow({ host: '127.0.0.1', port: +port, secure: true,
    tls: { ca: [fs.readFileSync(ca)], servername: 'localhost' }, qresync: true,
    auth: { user: 'alice@example.test', pass: 'secret-alice' }, logger: false });
  const vanished = [], flags = [];
  client.on('expunge', (d) => vanished.push({ uid: d.uid, vanished: d.vanished, earlier: !!d.earlier }));
  client.on('flags', (d) => flags.push({ uid: d.uid, modseq: String(d.modseq), flags: [...d.flags] }));
  await client.connect();
  const opts = uidv ? { uidValidity: BigInt(uidv), changedSince: BigInt(modseq) } : {};
  const mb = await client.mailboxOpen('INBOX', opts);
  const changed = [];
  if (uidv) {
    for await (const m of client.fetch('1:*', { flags: true }, { uid: true, changedSince: BigInt(modseq) }))
      changed.push({ uid: m.uid, modseq: String(m.modseq), flags: [...m.flags] });
  }
  console.log(JSON.stringify({ enabled: [...client.enabled], uidValidity: String(mb.uidValidity),
    highestModseq: String(mb.highestModseq), exists: mb.exists, vanished, flags, changed }));
  await client.logout();
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
"""


def run_node(script_text, tmp_path, *args):
    script = tmp_path / "script.js"
    script.write_text(script_text)
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    out = subprocess.run(["node", str(script), *map(str, args)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_imapflow_qresync_resync_after_offline(make_server, cert, tmp_path):
    """imapflow with qresync: true opens INBOX and keeps its UIDVALIDITY
    and HIGHESTMODSEQ; meanwhile another client flags one message and
    expunges another; imapflow reopening with those values is told the
    expunged UID (VANISHED (EARLIER)) and the flag change with its MODSEQ,
    and a UID FETCH CHANGEDSINCE returns just the changed message."""
    import imaplib
    import ssl
    if not os.path.isdir(os.path.join(NODE_MODULES, "imapflow")):
        pytest.fail("imapflow missing: scripts/deps.sh test installs it under build/node")
    s = make_server(extra=IMAP)
    for i in range(3):
        deliver(s, f"m{i}")
    first = run_node(IMAPFLOW_QRESYNC, tmp_path, s.ports["imaps"], cert[0])
    assert "QRESYNC" in first["enabled"] and "CONDSTORE" in first["enabled"], first
    assert first["exists"] == 3
    ctx = ssl.create_default_context(cafile=cert[0])
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", s.ports["imaps"], ssl_context=ctx)
    m.login(USER, PASSWORD)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged)")
    m.store("2", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    second = run_node(IMAPFLOW_QRESYNC, tmp_path, s.ports["imaps"], cert[0],
                      first["uidValidity"], first["highestModseq"])
    assert second["exists"] == 2
    assert {"uid": 2, "vanished": True, "earlier": True} in second["vanished"], second
    assert [f["uid"] for f in second["flags"]] == [1], second
    assert "\\Flagged" in second["flags"][0]["flags"]
    assert int(second["flags"][0]["modseq"]) > int(first["highestModseq"])
    assert [c["uid"] for c in second["changed"]] == [1], second
    assert int(second["highestModseq"]) > int(first["highestModseq"])
