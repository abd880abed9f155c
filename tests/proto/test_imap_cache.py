"""The folder's parsed-message cache (postern-cache, docs/architecture.md
"Mailbox store") seen from IMAP: FETCH of ENVELOPE, BODYSTRUCTURE and BODY
gives the same bytes when parsed (no cache yet), from the cache in the same
and a new session, and after a daemon restart; a damaged cache file
(garbage in the middle, a torn tail, another header) is survived with the
same answers; a message file replaced under the same name is parsed again,
never answered from its stale record."""
import os
import re
import struct
import zlib

from imapdiff import login, ok

USER, PASSWORD = "alice@example.test", "secret-alice"
IMAP = {"imap_listen": "127.0.0.1:0", "imap_allow_plaintext": "yes"}
MIME_DIR = os.path.join(os.path.dirname(__file__), "..", "mime")
FETCHES = ["FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE)",
           "FETCH 1:* (BODY)",
           "UID FETCH 1:* (ENVELOPE RFC822.SIZE INTERNALDATE)"]




def corpus():
    out = []
    for name in sorted(os.listdir(MIME_DIR)):
        if name.endswith(".eml"):
            with open(os.path.join(MIME_DIR, name), "rb") as f:
                out.append(f.read())
    for i in range(40):
        out.append(f"From: S {i} <s{i}@remote.example>\r\nSubject: plain {i}\r\n"
                   f"Message-ID: <{i}@cache>\r\n\r\nbody {i}\r\n".encode())
    return out


def fill(s, msgs):
    c = login(s)
    for data in msgs:
        ok(c.command(b"APPEND INBOX {%d+}\r\n" % len(data) + data))
    c.close()


def fetch_all(s):
    """The responses of every FETCHES command, in a fresh session (the
    tagged line's timing text dropped)."""
    c = login(s)
    ok(c.command("EXAMINE INBOX"))
    out = []
    for cmd in FETCHES:
        r = ok(c.command(cmd))
        out.append(r[:-1])
    c.command("LOGOUT")
    c.close()
    return out


def cache_path(s):
    return os.path.join(s.maildir("alice"), "postern-cache")


def restart(s):
    s.stop()
    s.start()


def test_cache_same_answers(make_server):
    s = make_server(IMAP)
    msgs = corpus()
    fill(s, msgs)
    assert not os.path.exists(cache_path(s))
    parsed = fetch_all(s)
    assert len(parsed[0]) == len(msgs)
    assert os.path.getsize(cache_path(s)) > 1000
    assert fetch_all(s) == parsed          # from the cache
    # the same session, twice
    c = login(s)
    ok(c.command("EXAMINE INBOX"))
    a = ok(c.command(FETCHES[0]))[:-1]
    b = ok(c.command(FETCHES[0]))[:-1]
    c.close()
    assert a == b == parsed[0]
    restart(s)
    assert fetch_all(s) == parsed          # the file read back
    size = os.path.getsize(cache_path(s))
    # garbage in the middle of the file
    with open(cache_path(s), "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * 64)
    restart(s)
    assert fetch_all(s) == parsed
    assert fetch_all(s) == parsed
    # a torn tail
    with open(cache_path(s), "r+b") as f:
        f.truncate(os.path.getsize(cache_path(s)) - 7)
    restart(s)
    assert fetch_all(s) == parsed
    # another header (UIDVALIDITY, magic): discarded
    with open(cache_path(s), "r+b") as f:
        f.write(b"NOTACACHE")
    restart(s)
    assert fetch_all(s) == parsed
    assert fetch_all(s) == parsed
    s.stop()
    s.start()
    assert "result=disabled" not in s.log()


def subject_of(line):
    m = re.search(rb'ENVELOPE \((?:NIL|"[^"]*") "([^"]*)"', line)
    return m.group(1).decode() if m else None


def test_cache_replaced_file(make_server):
    s = make_server(IMAP)
    fill(s, [b"Subject: first\r\n\r\nbody one\r\n",
             b"Subject: second\r\n\r\nbody two\r\n",
             b"Subject: third\r\n\r\nbody three\r\n"])
    before = fetch_all(s)
    assert fetch_all(s) == before           # cached now
    assert subject_of(before[0][0]) == "first"
    cur = os.path.join(s.maildir("alice"), "cur")
    names = sorted(os.listdir(cur))
    assert len(names) == 3
    # the same base name with other content: other size, and the same
    # size (only the mtime and bytes differ)
    with open(os.path.join(cur, names[0]), "r+b") as f:
        f.truncate(0)
        f.write(b"Subject: replaced, longer\r\n\r\nbody one\r\n")
    with open(os.path.join(cur, names[1]), "r+b") as f:
        f.write(b"Subject: SECOND")
    st = os.stat(os.path.join(cur, names[1]))
    os.utime(os.path.join(cur, names[1]), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = fetch_all(s)
    assert subject_of(after[0][0]) == "replaced, longer"
    assert subject_of(after[0][1]) == "SECOND"
    assert after[0][2] == before[0][2]
    restart(s)
    again = fetch_all(s)
    assert [subject_of(ln) for ln in again[0]] == ["replaced, longer", "SECOND", "third"]


def test_cache_symlink_not_followed(make_server):
    s = make_server(IMAP)
    fill(s, [b"Subject: one\r\n\r\nbody\r\n"])
    outside = os.path.join(s.base, "outside")
    with open(outside, "wb") as f:
        f.write(b"precious\n")
    os.symlink(outside, cache_path(s))
    first = fetch_all(s)
    assert fetch_all(s) == first
    with open(outside, "rb") as f:
        assert f.read() == b"precious\n"
    assert os.path.islink(cache_path(s))
    assert "event=store_cache result=disabled" in s.log()


def cache_records(path):
    """The cache file's header and its records, as (uid, fields) with
    fields [base, envelope, bodystructure, body]."""
    with open(path, "rb") as f:
        d = f.read()
    out, at = [], 32
    while at + 48 <= len(d):
        rlen, uid = struct.unpack_from("<II", d, at)
        lens = struct.unpack_from("<IIII", d, at + 32)
        fields, p = [], at + 48
        for n in lens:
            fields.append(d[p:p + n])
            p += n
        out.append((uid, d[at + 8:at + 32], fields))
        at += rlen
    return d[:32], out


def write_cache(path, hdr, records):
    """Writes records back, each with its lengths and a good CRC."""
    data = bytearray(hdr)
    for uid, key, fields in records:
        body = struct.pack("<II", 48 + sum(map(len, fields)) + 4, uid) + key
        body += struct.pack("<IIII", *map(len, fields)) + b"".join(fields)
        data += body + struct.pack("<I", zlib.crc32(body))
    with open(path, "wb") as f:
        f.write(data)


def test_cache_record_cannot_inject(make_server):
    """A record rewritten by hand with a good CRC whose ENVELOPE closes its
    list and goes on with response lines is not served: the client gets
    the parsed ENVELOPE, the record is replaced, one line is logged."""
    s = make_server(IMAP)
    fill(s, [b"Subject: first\r\n\r\nbody one\r\n",
             b"Subject: second\r\n\r\nbody two\r\n"])
    parsed = fetch_all(s)
    assert fetch_all(s) == parsed           # cached now
    s.stop()
    hdr, recs = cache_records(cache_path(s))
    recs = list({r[0]: r for r in recs}.values())   # a later one wins
    assert sorted(r[0] for r in recs) == [1, 2] and all(r[2][3] for r in recs)
    evil = (b'(NIL "x" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n'
            b'* 1 FETCH (FLAGS (\\Deleted))\r\nt3 OK fake\r\n'
            b'* 1 FETCH (ENVELOPE (NIL))')
    recs = [(uid, key, [f[0], evil if uid == 1 else f[1], f[2],
                        b'("a"\r\n* 2 FETCH (FLAGS (\\Deleted)))' if uid == 2 else f[3]])
            for uid, key, f in recs]
    write_cache(cache_path(s), hdr, recs)
    s.start()
    c = login(s)
    ok(c.command("EXAMINE INBOX"))
    r = ok(c.command("FETCH 1:2 (ENVELOPE)"))
    assert len(r) == 3, r
    assert not any(b"fake" in ln or b"\\Deleted" in ln for ln in r), r
    assert subject_of(r[0]) == "first" and subject_of(r[1]) == "second"
    r = ok(c.command("FETCH 2 (BODY)"))
    assert len(r) == 2 and b"\\Deleted" not in r[0], r
    c.close()
    assert fetch_all(s) == parsed
    assert s.log().count("event=store_cache result=bad_record") == 1
    # the parse's records replaced the bad ones
    s.stop()
    _, recs = cache_records(cache_path(s))
    last = {uid: f for uid, _, f in recs}
    assert b"fake" not in last[1][1] and b"Deleted" not in last[2][3]
