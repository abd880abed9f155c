"""posternctl as an admin meets it: the help printed from the command
table (every command, each with its own --help), exit codes 0/1/2, the
queue listing in human units and local time (--json: raw numbers), and the
queue commands saying what they did.  docs/admin.md must list every
command of the table."""
import json
import os
import pty
import re
import smtplib
import subprocess
import time

from conftest import POSTERNCTL, ROOT, wait_for

FAST = {"relay": "addresses", "relay_addresses": "127.0.0.1",
        "queue_retry_min": "1h", "queue_retry_max": "1h"}


def run(*args, env=None):
    return subprocess.run([POSTERNCTL, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def help_commands(text):
    """(name, args) of each command in a help listing, in order."""
    body = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in body.splitlines():
        if not line.startswith("  ") or line.startswith("   "):
            continue  # a description on its own line
        synopsis = re.split(r"\s{2,}", line.strip())[0]
        words = synopsis.split(" ")
        n = next((i for i, w in enumerate(words) if not re.fullmatch(r"[a-z][a-z-]*", w)),
                 len(words))
        out.append((" ".join(words[:n]), " ".join(words[n:])))
    return out


def table_names():
    """The names in posternctl.c's dispatch table, read from the source."""
    src = open(os.path.join(ROOT, "src/cmd/posternctl.c")).read()
    table = src.split("ctl_cmds[] = {", 1)[1].split("\n};", 1)[0]
    return re.findall(r'^\s*\{"([a-z][a-z -]*)",', table, re.M)


def test_help_lists_every_command_of_the_table():
    r = run("--help")
    assert r.returncode == 0 and r.stderr == ""
    cmds = help_commands(r.stdout)
    names = [n for n, _ in cmds]
    assert names == table_names() and len(names) >= 28
    for n in ("check", "reload", "relay-check", "queue list", "queue flush",
              "domain alias add", "list member-del"):
        assert n in names
    assert "Exit status: 0 ok, 1 error, 2 usage error" in r.stdout
    assert max(len(l) for l in r.stdout.splitlines()) <= 80
    assert run("-h").stdout == r.stdout


def test_admin_md_lists_every_command():
    doc = open(os.path.join(ROOT, "docs/admin.md")).read()
    # A "|" inside a table cell is written "\\|".
    rows = {r.replace("\\|", "|") for r in re.findall(r"^\| `([^`]+)` \|", doc, re.M)}
    for name, args in help_commands(run("--help").stdout):
        synopsis = f"{name} {args}".strip()
        assert synopsis in rows, f"docs/admin.md has no row | `{synopsis}` |"
    assert "0 ok, 1 error, 2 usage error" in doc


def test_every_command_has_help():
    for name, args in help_commands(run("--help").stdout):
        r = run(*name.split(), "--help")
        assert r.returncode == 0, (name, r.stderr)
        first = r.stdout.splitlines()[0]
        assert first == f"usage: posternctl -c FILE {name} {args}".rstrip(), first
        assert "Exit status:" in r.stdout and r.stderr == ""
    # --help anywhere after the command, and with -c.
    assert run("user", "add", "x@y.example", "--help").returncode == 0
    assert run("-c", "/nonexistent", "queue", "list", "-h").returncode == 0


def test_group_help():
    for group, want in [("queue", 6), ("domain alias", 3), ("user", 8), ("domain", 6),
                        ("admin", 7)]:
        r = run(*group.split(), "--help")
        assert r.returncode == 0, (group, r.stderr)
        names = [n for n, _ in help_commands(r.stdout)]
        assert len(names) == want and all(n.startswith(group + " ") for n in names), names
        assert r.stdout.startswith(f"usage: posternctl -c FILE {group} COMMAND")


def test_usage_errors_exit_2():
    full = run("--help").stdout
    r = run()
    assert r.returncode == 2 and r.stdout == "" and help_commands(r.stderr) == help_commands(full)
    for args, text in [
        (("bogus",), "posternctl: unknown command: bogus\n"),
        (("queue", "bogus"), "posternctl: unknown command: queue bogus\n"),
        (("domain", "alias", "bogus", "x"), "unknown command: domain alias bogus\n"),
        (("queue",), "usage: posternctl -c FILE queue COMMAND"),
        (("-x", "domain", "list"), "usage: posternctl -c FILE COMMAND"),
        (("user", "add"), "usage: posternctl -c FILE user add ADDRESS\n"),
        (("-c", "/nonexistent", "domain", "list", "extra"), "usage: posternctl -c FILE domain list\n"),
        (("domain", "list"), "-c FILE is required"),
    ]:
        r = run(*args)
        assert r.returncode == 2 and r.stdout == "", (args, r.returncode, r.stdout)
        assert text in r.stderr, (args, r.stderr)
    r = run("-c", "/nonexistent", "domain", "list")
    assert r.returncode == 1 and r.stderr.startswith("posternctl: ")


def send(server, to):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as c:
        c.sendmail("alice@example.test", [to], b"Subject: q\r\n\r\nhello\r\n")


def rewrite_env(server, qid, arrival=None, next_attempt=None):
    """Changes a queue entry's state file in place (owner and mode stay)."""
    path = os.path.join(server.data, "queue", "entries", qid + ".env")
    with open(path, "r+") as f:
        text = f.read()
        if arrival is not None:
            text = re.sub(r"^arrival\t\d+$", f"arrival\t{arrival}", text, flags=re.M)
        if next_attempt is not None:
            text = re.sub(r"^(rcpt\tpending\t\d+\t)\d+", rf"\g<1>{next_attempt}", text, flags=re.M)
        f.seek(0)
        f.truncate()
        f.write(text)


def entries(text):
    return [l.split("\t") for l in text.splitlines() if l and not l.startswith("\t")]


def test_queue_list_human_units_and_json(make_server):
    s = make_server(FAST)
    send(s, "u@down.example")
    send(s, "v@down.example")
    wait_for(lambda: s.log().count("status=deferred") == 2, what="two deferrals")
    js = json.loads(s.ctl("queue", "list", "--json").stdout)
    assert len(js) == 2
    first = next(e for e in js if e["recipients"][0]["address"] == "u@down.example")
    other = next(e for e in js if e is not first)
    qid, qid2 = first["id"], other["id"]
    for e in (first, other):
        wait_for(lambda: os.path.exists(os.path.join(s.data, "queue", "entries", e["id"] + ".env")),
                 what="state file")
    # Raw numbers: the retry is an hour away, the age a few seconds.
    assert 0 <= first["age"] < 120 and isinstance(first["arrival"], int)
    assert 3000 < first["next_attempt"] - time.time() <= 3600
    assert first["recipients"][0]["next_attempt"] == first["next_attempt"]

    arrival = int(time.time()) - 7500
    future = int(time.time()) + 3 * 86400 + 120
    rewrite_env(s, qid, arrival=arrival, next_attempt=future)
    rewrite_env(s, qid2, arrival=int(time.time()) - 97300, next_attempt=0)
    env = dict(os.environ, TZ="UTC-2")  # POSIX: two hours east of UTC
    r = run("-c", s.conf, "queue", "list", env=env)
    assert r.returncode == 0, r.stderr
    rows = {e[0]: e for e in entries(r.stdout)}
    _, size, age, sender, nxt, state = rows[qid]
    assert int(size) > 0 and sender == "<alice@example.test>" and state == "active"
    assert age in ("2h5m", "2h6m"), age
    assert nxt == time.strftime("%Y-%m-%d %H:%M", time.gmtime(future + 7200)), nxt
    assert rows[qid2][2] == "1d3h" and rows[qid2][4] == "now"
    assert "\t<u@down.example>\tpending\t1\t" in r.stdout
    js = json.loads(run("-c", s.conf, "queue", "list", "--json", env=env).stdout)
    raw = next(e for e in js if e["id"] == qid)
    assert raw["arrival"] == arrival and raw["next_attempt"] == future
    assert 7500 <= raw["age"] < 7700
    # queue show: the same line, then the headers.
    show = s.ctl("queue", "show", qid).stdout
    assert show.split("\n")[0].split("\t")[2] in ("2h5m", "2h6m")
    assert "Subject: q" in show

    # A terminal gets a header line; a pipe does not.
    assert not r.stdout.startswith("ID")
    master, slave = pty.openpty()
    p = subprocess.run([POSTERNCTL, "-c", s.conf, "queue", "list"], stdout=slave,
                       stderr=subprocess.PIPE, timeout=60, env=env)
    os.close(slave)
    out = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    os.close(master)
    assert p.returncode == 0
    assert out.decode().startswith("ID\tSIZE\tAGE\tSENDER\tNEXT\tSTATE\r\n"), out

    s.ctl("queue", "hold", qid)
    row = {e[0]: e for e in entries(s.ctl("queue", "list").stdout)}[qid]
    assert row[4] == "held" and row[5] == "held"
    r = s.ctl("queue", "list", "--yaml", check=False)
    assert r.returncode == 2 and "usage: posternctl -c FILE queue list [--json]" in r.stderr


def test_queue_commands_say_what_they_did(make_server):
    s = make_server(FAST)
    send(s, "u@down.example")
    send(s, "v@down.example")
    wait_for(lambda: s.log().count("status=deferred") == 2, what="two deferrals")
    qid, qid2 = sorted(e[0] for e in entries(s.ctl("queue", "list").stdout))

    def ok(*args):
        r = s.ctl("queue", *args, check=False)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        return r.stdout

    assert ok("flush") == "2 messages scheduled\n"
    assert ok("flush", qid) == f"message {qid} scheduled\n"
    assert ok("hold", qid) == f"message {qid} held\n"
    assert ok("flush") == "1 message scheduled; 1 held message left alone\n"
    assert ok("flush", qid).startswith(f"message {qid} is held: not scheduled")
    assert ok("release", qid) == f"message {qid} released\n"
    assert ok("hold", "all") == "2 messages held\n"
    assert ok("release", "all") == "2 messages released\n"
    assert ok("delete", qid2) == f"message {qid2} deleted\n"
    for args, rc, text in [
        (("delete", "ABCDEF"), 1, "posternctl: no such message: ABCDEF\n"),
        (("flush", "0000"), 1, "posternctl: no such message: 0000\n"),
        (("hold", qid2), 1, f"posternctl: no such message: {qid2}\n"),
        (("release", "../x"), 1, "posternctl: bad queue id: ../x\n"),
        (("show", "0000"), 1, "posternctl: no such message: 0000\n"),
        (("delete",), 2, "usage: posternctl -c FILE queue delete ID|all\n"),
        (("hold", qid, qid2), 2, "usage: posternctl -c FILE queue hold ID|all\n"),
    ]:
        r = s.ctl("queue", *args, check=False)
        assert (r.returncode, r.stdout) == (rc, ""), (args, r.returncode, r.stdout)
        assert r.stderr.startswith(text), (args, r.stderr)
    assert ok("delete", "all") == "1 message deleted\n"
    wait_for(lambda: entries(s.ctl("queue", "list").stdout) == [], what="empty queue")
    assert ok("flush") == "0 messages scheduled\n"
    assert s.ctl("reload").stdout == f"posternd reloaded {s.conf}\n"
    s.stop()
    r = s.ctl("queue", "flush", check=False)
    assert r.returncode == 1 and "posternd is not running" in r.stderr
