"""POP3 RETR throughput: postern against Dovecot on the same Maildir copy.

A Maildir of MESSAGES messages (about 2 KiB each, as postern stores them)
is built once; each round gives each server its own fresh copy, then one
client logs in and retrieves every message with pipelined RETR commands
(RFC 2449 PIPELINING; Dovecot accepts pipelining too), checking each
message's length.  Messages per second, medians over ROUNDS, and the ratio.
Everything is on 127.0.0.1; run as root (Dovecot needs it): make bench.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtp_bench import wait_port  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTERND = os.path.join(TOP, "bin/posternd")
POSTERNCTL = os.path.join(TOP, "bin/posternctl")
MESSAGES = int(os.environ.get("POP3_MESSAGES", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
P_PORT, D_PORT = 2810, 2811


def make_maildir(path):
    """MESSAGES files in cur/, named and written as postern delivers."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    body = "".join(f"line {i} of a message body, some text to fill it up\n" for i in range(32))
    for i in range(MESSAGES):
        text = (f"Return-Path: <bench@remote.example>\nReceived: by bench\n"
                f"Subject: message {i}\nMessage-ID: <{i}@bench>\n\n{body}").encode()
        w = len(text) + text.count(b"\n")
        name = f"{1700000000 + i}.M{i:06d}P1Q{i}.bench,S={len(text)},W={w}:2,"
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(text)


def fetch_all(port, user, password):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")

    def line():
        return f.readline()
    assert line().startswith(b"+OK")
    s.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
    assert line().startswith(b"+OK")
    r = line()
    assert r.startswith(b"+OK"), r
    s.sendall(b"STAT\r\n")
    n = int(line().split()[1])
    assert n == MESSAGES, n
    t0 = time.monotonic()
    got = 0
    batch = 100
    for start in range(1, n + 1, batch):
        end = min(n, start + batch - 1)
        s.sendall(b"".join(b"RETR %d\r\n" % i for i in range(start, end + 1)))
        for _ in range(start, end + 1):
            assert line().startswith(b"+OK")
            while True:
                l = line()
                if l == b".\r\n":
                    break
                if not l:
                    raise SystemExit("connection lost")
            got += 1
    t = time.monotonic() - t0
    s.sendall(b"QUIT\r\n")
    line()
    s.close()
    return got / t


def start_postern(base, master):
    d = os.path.join(base, f"p{time.time_ns()}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    conf = os.path.join(d, "postern.conf")
    with open(conf, "w") as f:
        f.write(f"hostname = bench.example\ndata_dir = {d}/data\nuser = nobody\n"
                f"smtp_listen = 127.0.0.1:{P_PORT + 10}\nsubmission_listen =\n"
                f"pop3_listen = 127.0.0.1:{P_PORT}\npop3_allow_plaintext = yes\n"
                "log_level = warn\ndns_servers = 127.0.0.1:9\n")
    subprocess.run([POSTERNCTL, "-c", conf, "domain", "add", "example.test"], check=True,
                   capture_output=True)
    subprocess.run([POSTERNCTL, "-c", conf, "user", "add", "alice@example.test"],
                   input=b"pw\n", check=True, capture_output=True)
    md = os.path.join(d, "data/mail/example.test/alice/Maildir")
    os.makedirs(os.path.dirname(md))
    shutil.copytree(master, md)
    subprocess.run(["chown", "-R", "nobody", os.path.join(d, "data")], check=True)
    p = subprocess.Popen([POSTERND, "-f", "-c", conf], stderr=open(os.path.join(d, "log"), "w"))
    wait_port(P_PORT)
    return p


def start_dovecot(base, master):
    d = os.path.join(base, f"d{time.time_ns()}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    md = os.path.join(d, "Maildir")
    shutil.copytree(master, md)
    subprocess.run(["chown", "-R", "nobody:nogroup", d], check=True)
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write(f"alice@example.test:{{PLAIN}}pw:65534:65534::{d}::userdb_mail=maildir:{md}\n")
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{md}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {D_PORT}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
pop3_uidl_format = %f
""")
    subprocess.run(["dovecot", "-c", conf], check=True)
    wait_port(D_PORT)
    return conf


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (Dovecot needs it)")
    base = tempfile.mkdtemp(prefix="postern-pop3-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    master = os.path.join(base, "master")
    make_maildir(master)
    pr, dr = [], []
    for _ in range(ROUNDS):
        os.sync()
        time.sleep(1)
        p = start_postern(base, master)
        pr.append(fetch_all(P_PORT, "alice@example.test", "pw"))
        p.terminate()
        p.wait(60)
        os.sync()
        time.sleep(1)
        conf = start_dovecot(base, master)
        dr.append(fetch_all(D_PORT, "alice@example.test", "pw"))
        subprocess.run(["doveadm", "-c", conf, "stop"], capture_output=True)
        time.sleep(1)
    pm, dm = statistics.median(pr), statistics.median(dr)
    print(f"# POP3 RETR of a {MESSAGES}-message Maildir (~2 KiB each), pipelined, "
          f"{ROUNDS} rounds, median messages/s")
    print(f"postern {pm:.0f}  dovecot {dm:.0f}  ratio {pm / dm:.2f}")
    subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
