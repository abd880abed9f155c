"""Files the run user planted (or damage) in a Maildir, against the real
daemon: far-future dates and mtimes, a CRC-valid index with absurd
records, a FIFO in place of a message.  None may crash posternd (UBSan
aborts it), make it serve nonsense, or hold a storage worker."""
import glob
import os
import poplib
import re
import struct
import threading
import time
import zlib

from imapdiff import login, ok
from test_imap import deliver

IMAP = {"imap_listen": "127.0.0.1:0", "imap_allow_plaintext": "yes",
        "pop3_allow_plaintext": "yes"}
Y2300 = 10413792000


def internaldates(lines):
    return [m.group(1).decode() for ln in lines
            for m in [re.search(rb'INTERNALDATE "([^"]*)"', ln)] if m]


def test_far_future_dates_and_mtimes(make_server):
    """APPEND dates up to 9999 (and a zone past it, or year 0000, clamped
    to 1970..9999), then FETCH ENVELOPE BODYSTRUCTURE (the cache keys
    mtimes in nanoseconds) and the folder's directories touched to 2300
    (the quick-sync stamps): no overflow, sane INTERNALDATEs."""
    s = make_server(extra=IMAP)
    c = login(s)
    for date in (b"01-Jan-9999 23:59:59 +1400", b"31-Dec-9999 23:59:59 -2359",
                 b"01-Jan-0000 00:00:00 +0000"):
        ok(c.command(b'APPEND INBOX "%s" {3+}\r\nabc' % date))
    ok(c.command("SELECT INBOX"))
    for _ in range(2):  # a miss, then a hit
        r = ok(c.command("FETCH 1:* (INTERNALDATE ENVELOPE BODYSTRUCTURE)"))
        assert internaldates(r) == ["01-Jan-9999 09:59:59 +0000",
                                    "31-Dec-9999 23:59:59 +0000",
                                    "01-Jan-1970 00:00:00 +0000"], r
    c.command("LOGOUT")
    c.close()
    d = s.maildir("alice")
    for sub in ("cur", "new"):
        os.utime(os.path.join(d, sub), (Y2300, Y2300))
    deliver(s)
    c = login(s)
    r = ok(c.command("SELECT INBOX"))
    assert b"* 4 EXISTS" in r, r
    ok(c.command("FETCH 1:* (INTERNALDATE ENVELOPE BODYSTRUCTURE)"))
    ok(c.command("SEARCH YOUNGER 100 OLDER 1"))
    ok(c.command("NOOP"))
    c.close()
    s.check_sanitizers()


def plant_index(path, values):
    """Rewrites the snapshot's records with (internaldate, size) from
    values, CRC fixed: what a planted file can say."""
    with open(path, "rb") as f:
        d = bytearray(f.read())
    n = struct.unpack_from("<I", d, 40)[0]
    at = 80
    for i in range(n):
        idate, size = values[i % len(values)]
        struct.pack_into("<q", d, at + 28, idate)
        struct.pack_into("<Q", d, at + 20, size)
        at += 36 + d[at + 5]
    struct.pack_into("<I", d, len(d) - 4, zlib.crc32(bytes(d[80:len(d) - 4])))
    with open(path, "wb") as f:
        f.write(bytes(d))
    return n


def test_planted_index_records_are_refused(make_server):
    """A CRC-valid postern-index whose records say INTERNALDATE INT64_MIN
    or INT64_MAX and RFC822.SIZE 2^64-1: corrupt, the folder rebuilt from
    its files (a new UIDVALIDITY), and FETCH, STATUS and SEARCH answer
    from the files.  (The folder must close when the session leaves, so
    that the next open reads the planted file: imap_folder_linger 0.)"""
    s = make_server(extra=dict(IMAP, imap_folder_linger="0"))
    deliver(s, n=4)
    c = login(s)
    r = ok(c.command("SELECT INBOX"))
    uv = re.search(rb"UIDVALIDITY (\d+)", b"\n".join(r)).group(1)
    sizes = [int(x) for x in re.findall(
        rb"RFC822.SIZE (\d+)", b"\n".join(ok(c.command("FETCH 1:* RFC822.SIZE"))))]
    c.command("LOGOUT")
    c.close()
    time.sleep(0.5)  # the folder closed with the last session
    n = plant_index(os.path.join(s.maildir("alice"), "postern-index"),
                    [(-2**63, 5), (2**63 - 1, 2**64 - 1), (0, 2**64 - 1)])
    assert n == 4
    c = login(s)
    r = ok(c.command("SELECT INBOX"))
    assert re.search(rb"UIDVALIDITY (\d+)", b"\n".join(r)).group(1) != uv, r
    r = ok(c.command("FETCH 1:* (INTERNALDATE RFC822.SIZE)"))
    assert [int(x) for x in re.findall(rb"RFC822.SIZE (\d+)", b"\n".join(r))] == sizes
    year = time.gmtime().tm_year
    assert all(str(year) in d or str(year - 1) in d for d in internaldates(r)), r
    r = ok(c.command("STATUS INBOX (SIZE)"))
    assert b"SIZE %d" % sum(sizes) in r[0], r
    r = ok(c.command("SEARCH YOUNGER 100000"))
    assert r[0] == b"* SEARCH 1 2 3 4", r
    c.close()
    assert "result=rebuilt" in s.log()
    s.check_sanitizers()


def fifo_for(s, user):
    """The user's one message file, replaced by a FIFO (no writer)."""
    d = s.maildir(user)
    files = glob.glob(d + "/cur/*") + glob.glob(d + "/new/*")
    assert len(files) == 1, files
    os.unlink(files[0])
    os.mkfifo(files[0])
    return files[0]


def test_fifo_in_place_of_a_message(make_server):
    """A FIFO under a message's name: FETCH of it answers at once (the
    message treated as gone), POP3 RETR answers -ERR, and more such
    sessions than there are storage workers leave other users' IMAP and
    SMTP delivery working."""
    s = make_server(extra=IMAP)
    deliver(s, to="bob@example.test")
    c = login(s, "bob@example.test", "secret-bob")
    ok(c.command("SELECT INBOX"))
    ok(c.command("FETCH 1 UID"))
    fifo_for(s, "bob")
    t = time.time()
    r = c.command("FETCH 1 BODY.PEEK[]")
    assert time.time() - t < 5
    assert b"BODY[]" not in b"\n".join(r), r
    # More at once than the storage pool has workers.
    conns, replies = [], []
    for _ in range(6):
        k = login(s, "bob@example.test", "secret-bob")
        ok(k.command("SELECT INBOX"))
        conns.append(k)

    def fetch(k):
        replies.append(k.command("FETCH 1:* (BODY.PEEK[] ENVELOPE)"))
    threads = [threading.Thread(target=fetch, args=(k,)) for k in conns]
    for th in threads:
        th.start()
    for th in threads:
        th.join(15)
    assert len(replies) == 6, "a FETCH of a FIFO did not answer"
    t = time.time()
    deliver(s)
    a = login(s)
    r = ok(a.command("SELECT INBOX"))
    assert b"* 1 EXISTS" in r, r
    assert time.time() - t < 10
    a.close()
    for k in conns + [c]:
        k.close()
    p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=10)
    p.user("bob@example.test")
    p.pass_("secret-bob")
    try:
        p.retr(1)
        raise AssertionError("RETR of a FIFO answered +OK")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR"), e
    p.quit()
    s.check_sanitizers()
