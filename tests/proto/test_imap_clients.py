"""IMAP against real clients: imapflow (npm, installed by scripts/deps.sh
under build/node), a client library webmails and bots use: IDLE, a
QRESYNC resynchronisation after being offline and CONDSTORE alone
(CHANGEDSINCE, UNCHANGEDSINCE); offlineimap3 (Debian package) syncing
both ways with a local Maildir; neomutt (Debian package) in a
pseudo-terminal flagging, deleting, copying and moving.  curl and mbsync
are driven in test_imap.py."""
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


def imaps_login(server, cert):
    import imaplib
    import ssl
    ctx = ssl.create_default_context(cafile=cert[0])
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx)
    m.login(USER, PASSWORD)
    return m


def server_folder(server, cert, folder):
    """{subject: flags} and the message count of one folder (server)."""
    import re
    m = imaps_login(server, cert)
    typ, data = m.select(folder)
    n, got = int(data[0]), {}
    if n:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for part in (p for p in data if isinstance(p, tuple)):
            flags = re.search(rb"FLAGS \(([^)]*)\)", part[0]).group(1).decode().split()
            # \Recent belongs to whichever session saw it first
            got[part[1].decode().split(":", 1)[1].strip()] = set(flags) - {"\\Recent"}
    m.logout()
    return n, got


def local_inbox(inbox):
    """{subject: maildir info flags} of a local Maildir folder, and its
    number of messages."""
    got, n = {}, 0
    for sub in ("new", "cur"):
        for name in os.listdir(inbox / sub):
            n += 1
            head = (inbox / sub / name).read_bytes().split(b"\r\n\r\n")[0]
            head = head.replace(b"\r\n", b"\n")
            subj = [l for l in head.split(b"\n") if l.lower().startswith(b"subject:")]
            info = name.split(":2,")[1] if ":2," in name else ""
            got[subj[0].split(b":", 1)[1].strip().decode()] = info
    return n, got


def test_offlineimap_two_way(make_server, cert, tmp_path):
    """offlineimap3 syncs INBOX to a local Maildir over implicit TLS;
    then flags set and a message deleted on either side, a message
    written locally and one delivered by SMTP all reach the other side
    on the next run, and a third run changes nothing (no duplicates)."""
    s = make_server(extra=IMAP)
    for i in range(4):
        deliver(s, f"m{i}", body=f"body {i}")
    mail, meta = tmp_path / "mail", tmp_path / "meta"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""[general]
accounts = postern
metadata = {meta}

[Account postern]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {mail}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {s.ports['imaps']}
remoteuser = {USER}
remotepass = {PASSWORD}
ssl = yes
sslcacertfile = {cert[0]}
folderfilter = lambda f: f in ('INBOX', 'Sent')
""")

    def run():
        r = subprocess.run(["offlineimap", "-c", str(rc), "-o", "-1", "-u", "basic"],
                           capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "ERROR" not in out, out
        return out

    run()
    inbox = mail / "INBOX"
    n, local = local_inbox(inbox)
    assert n == 4 and set(local) == {"m0", "m1", "m2", "m3"}, local
    assert (mail / "Sent").is_dir()
    raw = [(inbox / d / f).read_bytes() for d in ("new", "cur") for f in os.listdir(inbox / d)]
    assert any(b.endswith(b"\r\n\r\nbody 2\r\n") or b.endswith(b"\n\nbody 2\n") for b in raw)

    # Locally: m0 read and flagged, m1 deleted, a new message written.
    for sub in ("new", "cur"):
        for name in os.listdir(inbox / sub):
            text = (inbox / sub / name).read_bytes()
            if b"Subject: m0" in text:
                os.rename(inbox / sub / name, inbox / "cur" / (name.split(":2,")[0] + ":2,FS"))
            elif b"Subject: m1" in text:
                os.unlink(inbox / sub / name)
    (inbox / "new" / "1700000000.local1.host").write_bytes(
        b"Subject: written locally\r\nMessage-ID: <local1@example.test>\r\n\r\nlocal\r\n")
    # On the server: m2 answered, m3 expunged, m4 delivered.
    m = imaps_login(s, cert)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", "m2")
    m.store(data[0].decode(), "+FLAGS", "(\\Answered)")
    typ, data = m.search(None, "SUBJECT", "m3")
    m.store(data[0].decode(), "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    deliver(s, "m4")

    run()
    want = {"m0": {"\\Seen", "\\Flagged"}, "m2": {"\\Answered"}, "m4": set(),
            "written locally": set()}
    n, remote = server_folder(s, cert, "INBOX")
    assert n == 4 and remote == want, remote
    n, local = local_inbox(inbox)
    assert n == 4 and local == {"m0": "FS", "m2": "R", "m4": "", "written locally": ""}, local

    run()
    assert server_folder(s, cert, "INBOX") == (4, want)
    assert local_inbox(inbox) == (4, local)


IMAPFLOW_CONDSTORE = r"""
const { ImapFlow } = require('imapflow');
const fs = require('fs');
const [port, ca, modseq] = process.argv.slice(2);
(async () => {
  const client = new ImapFlow({ host: '127.0.0.1', port: +port, secure: true,
    tls: { ca: [fs.readFileSync(ca)], servername: 'localhost' }, qresync: false,
    auth: { user: 'alice@example.test', pass: 'secret-alice' }, logger: false });
  await client.connect();
  const mb = await client.mailboxOpen('INBOX');
  const res = { enabled: [...client.enabled], highestModseq: String(mb.highestModseq),
    exists: mb.exists, changed: [], stored: null, after: [] };
  const row = (m) => ({ uid: m.uid, modseq: String(m.modseq), flags: [...m.flags].sort() });
  if (modseq) {
    for await (const m of client.fetch('1:*', { flags: true }, { uid: true, changedSince: BigInt(modseq) }))
      res.changed.push(row(m));
    // UNCHANGEDSINCE: only the messages not changed since modseq get \Seen
    res.stored = await client.messageFlagsAdd('1:*', ['\\Seen'], { uid: true, unchangedSince: BigInt(modseq) });
    for await (const m of client.fetch('1:*', { flags: true }, { uid: true }))
      res.after.push(row(m));
  }
  console.log(JSON.stringify(res));
  await client.logout();
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
"""


def test_imapflow_condstore_changedsince(make_server, cert, tmp_path):
    """imapflow with CONDSTORE alone (qresync: false) keeps INBOX's
    HIGHESTMODSEQ; another client flags one message and expunges another;
    imapflow's FETCH CHANGEDSINCE then returns just the flagged message,
    with a MODSEQ above the old HIGHESTMODSEQ, and a STORE UNCHANGEDSINCE
    the old value leaves that message alone and sets \\Seen on the rest."""
    if not os.path.isdir(os.path.join(NODE_MODULES, "imapflow")):
        pytest.fail("imapflow missing: scripts/deps.sh test installs it under build/node")
    s = make_server(extra=IMAP)
    for i in range(4):
        deliver(s, f"c{i}")
    first = run_node(IMAPFLOW_CONDSTORE, tmp_path, s.ports["imaps"], cert[0])
    assert "CONDSTORE" in first["enabled"] and "QRESYNC" not in first["enabled"], first
    assert first["exists"] == 4 and int(first["highestModseq"]) > 0, first
    old = int(first["highestModseq"])
    m = imaps_login(s, cert)
    m.select("INBOX")
    m.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    m.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    second = run_node(IMAPFLOW_CONDSTORE, tmp_path, s.ports["imaps"], cert[0], old)
    assert second["exists"] == 3 and int(second["highestModseq"]) > old, second
    assert [c["uid"] for c in second["changed"]] == [2], second
    assert second["changed"][0]["flags"] == ["\\Flagged"], second
    assert old < int(second["changed"][0]["modseq"]) <= int(second["highestModseq"])
    assert second["stored"] is True, second
    after = {a["uid"]: a for a in second["after"]}
    assert sorted(after) == [1, 2, 3], second
    assert after[1]["flags"] == ["\\Seen"] and after[3]["flags"] == ["\\Seen"], second
    assert after[2]["flags"] == ["\\Flagged"], second
    assert after[2]["modseq"] == second["changed"][0]["modseq"], second
    assert int(after[1]["modseq"]) > int(second["highestModseq"]), second


def neomutt(server, cert, tmp_path, keys):
    """Runs neomutt on INBOX over implicit TLS in a pseudo-terminal (it
    needs one to read a folder), typing keys (a push string); neomutt
    quits at the end of them."""
    rc = tmp_path / "neomuttrc"
    rc.write_text(f"""set folder = "imaps://alice%40example.test@localhost:{server.ports['imaps']}/"
set imap_pass = "{PASSWORD}"
set spoolfile = "+INBOX"
set ssl_ca_certificates_file = "{cert[0]}"
set header_cache = ""
set message_cachedir = ""
set imap_check_subscribed = no
set confirmappend = no
set delete = yes
set quit = yes
set mark_old = no
set sort = subject
""")
    env = dict(os.environ, TERM="xterm", HOME=str(tmp_path))
    cmd = f"neomutt -n -F {rc} -e 'push \"{keys}<quit>\"'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       timeout=60, env=env)
    screen = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, screen
    assert "rror" not in screen and "failed" not in screen.lower(), screen
    return screen


def test_neomutt_flags_delete_copy_move(make_server, cert, tmp_path):
    """neomutt (a terminal client, driven through a pseudo-terminal)
    deletes m1, flags m0, copies m2 to Trash and marks it read, and
    expunges; then, after another client answered m0 and m3 arrived by
    SMTP, it moves m3 to Trash and toggles the flag of the answered
    message (m0, so it finds \\Answered set by the other client).  The
    server's INBOX and Trash hold exactly what that should leave."""
    s = make_server(extra=IMAP)
    for i in range(3):
        deliver(s, f"m{i}")
    tag = "<untag-pattern>~A<enter><tag-pattern>{}<enter><tag-prefix>"
    screen = neomutt(s, cert, tmp_path,
                     tag.format("~s m1") + "<delete-message>" +
                     tag.format("~s m0") + "<flag-message>" +
                     tag.format("~s m2") + "<copy-message>=Trash<enter>" +
                     tag.format("~s m2") + "<clear-flag>N" +
                     "<untag-pattern>~A<enter><sync-mailbox>")
    # it read three headers, and its last screen shows two messages
    assert "Fetching message headers... 0/3" in screen, screen
    assert "Msgs:2 New:1 Flag:1" in screen, screen
    assert server_folder(s, cert, "INBOX") == (2, {"m0": {"\\Flagged"}, "m2": {"\\Seen"}})
    assert server_folder(s, cert, "Trash") == (1, {"m2": set()})
    m = imaps_login(s, cert)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", "m0")
    m.store(data[0].decode(), "+FLAGS", "(\\Answered)")
    m.logout()
    deliver(s, "m3")
    neomutt(s, cert, tmp_path,
            tag.format("~s m3") + "<save-message>=Trash<enter>" +
            tag.format("~Q") + "<flag-message>" +
            "<untag-pattern>~A<enter><sync-mailbox>")
    assert server_folder(s, cert, "INBOX") == (2, {"m0": {"\\Answered"}, "m2": {"\\Seen"}})
    n, trash = server_folder(s, cert, "Trash")
    assert n == 2 and sorted(trash) == ["m2", "m3"], trash
