#!/usr/bin/python3
"""Cost of mail authentication: DKIM signing and a milter round trip.

The relay load of smtp_bench.py (smtp-source, 20 sessions -> server ->
queue -> smtp-sink on loopback, until the queue is empty) with:

  postern             no signing, no milter (the baseline)
  postern+rsa         built-in DKIM, rsa-sha256 (2048 bits)
  postern+ed25519     built-in DKIM, ed25519-sha256
  postern+opendkim    no built-in signing; OpenDKIM as a milter, signing
  postfix             no milter
  postfix+opendkim    the same OpenDKIM milter (smtpd_milters)

Every variant runs ROUNDS times per load, interleaved, and the medians
are printed with each variant's cost against its own baseline and the
postern/postfix ratio.  OpenDKIM signs with the same 2048-bit RSA key for
both servers.  Bounded like smtp_bench.py: message counts, timeouts,
127.0.0.1 only, DNS off in every server.  Run as root (Postfix and
smtp-sink need it).
"""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtp_bench  # noqa: E402
from smtp_bench import POSTERNCTL, sh, wait_port  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
# (message size, messages); AUTH_LOADS="1024:300 102400:100" for a quick look;
# AUTH_LOADS="" for none.  AUTH_LATENCY: messages of the one-session run
# (0: none).
LOADS = [tuple(map(int, x.split(":"))) for x in
         os.environ.get("AUTH_LOADS", "1024:3000 102400:1000").split()]
SINK, MILTER = 2727, 2728
SENDER = "bench@example.test"  # the From: domain, the signing domain


def opendkim_start(base):
    """OpenDKIM in signing mode on 127.0.0.1:MILTER, key s1 for example.test."""
    # OpenDKIM refuses a key under a directory others may write (/var/tmp):
    # its own directory under /run (root's, 0755).
    d = tempfile.mkdtemp(prefix="postern-bench-opendkim-", dir="/run")
    os.chmod(d, 0o755)
    key = os.path.join(d, "s1.private")
    if not os.path.exists(key):
        sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
           "-out", key)
        shutil.chown(key, "opendkim", "opendkim")
        os.chmod(key, 0o600)
    conf = os.path.join(d, "opendkim.conf")
    with open(conf, "w") as f:
        f.write(f"Mode s\nDomain example.test\nSelector s1\nKeyFile {key}\n"
                f"Socket inet:{MILTER}@127.0.0.1\nBackground no\nUserID opendkim\n"
                "Canonicalization relaxed/relaxed\nSyslog no\n"
                f"PidFile {d}/pid\nInternalHosts 127.0.0.0/8\n")
    proc = subprocess.Popen(["opendkim", "-f", "-x", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(MILTER)
    return proc, d


class Postern(smtp_bench.Postern):
    def __init__(self, base, name, dkim_type=None, milter=False):
        super().__init__(base)
        self.name, self.dkim_type, self.milter = name, dkim_type, milter
        self.extra_conf = ""
        if milter:
            self.extra_conf = (f"milters = inet:127.0.0.1:{MILTER}\n"
                               "milter_default_action = tempfail\n")
        if not dkim_type:
            self.extra_conf += "dkim_sign = no\n" if has_dkim() else ""

    def ready(self):
        if self.dkim_type:
            sh(POSTERNCTL, "-c", self.conf, "dkim", "keygen", "example.test",
               "--selector", "s1", "--type", self.dkim_type)


class Postfix(smtp_bench.Postfix):
    def __init__(self, base, name, milter=False):
        super().__init__(base)
        self.name, self.milter = name, milter

    def start(self, run):
        os.environ["POSTFIX_EXTRA"] = (
            f"smtpd_milters = inet:127.0.0.1:{MILTER}\nmilter_default_action = tempfail\n"
            "milter_protocol = 6\n" if self.milter else "")
        try:
            super().start(run)
        finally:
            del os.environ["POSTFIX_EXTRA"]


def has_dkim():
    r = subprocess.run([POSTERNCTL, "dkim", "--help"], capture_output=True, text=True)
    return "keygen" in (r.stdout + r.stderr)


def relay_run(server, size, count):
    port = smtp_bench.F_PORT if server.name.startswith("postfix") else smtp_bench.P_PORT
    return smtp_bench.relay_load(server, port, SINK, size, count, sender=SENDER)


def latency(servers, base_names, count):
    """One session, count 1 KiB messages one after the other: the time
    from MAIL to the 250 after DATA per message, as the client sees it,
    with and without the OpenDKIM milter; the difference is what the
    milter's round trips add to each message (connect, HELO, MAIL, RCPT,
    DATA, each header, the body, the end: about 15 exchanges here)."""
    by = {s.name: s for s in servers}
    ms = {n: [] for n in base_names}
    for _ in range(ROUNDS):
        for n in base_names:
            took = []
            port = smtp_bench.F_PORT if n.startswith("postfix") else smtp_bench.P_PORT
            smtp_bench.relay_load(by[n], port, SINK, 1024, count, sender=SENDER,
                                  sessions=1, accepted=took)
            ms[n].append(1000 * took[0] / count)
            time.sleep(0.5)
    print(f"## one session, 1024 bytes x {count}: ms per message, median ({ROUNDS} rounds)")
    med = {n: statistics.median(v) for n, v in ms.items()}
    for n in base_names:
        print(f"{n:>18} {med[n]:>7.2f} ms  ({' '.join(f'{v:.2f}' for v in ms[n])})")
    for srv in ("postern", "postfix"):
        print(f"{srv + ' milter':>18} +{med[srv + '+opendkim'] - med[srv]:.2f} ms per message",
              flush=True)


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (Postfix needs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = tempfile.mkdtemp(prefix="postern-auth-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(base, 0o755)
    servers = [Postern(base, "postern")]
    if has_dkim():
        servers += [Postern(base, "postern+rsa", "rsa"),
                    Postern(base, "postern+ed25519", "ed25519")]
    servers += [Postern(base, "postern+opendkim", milter=True),
                Postfix(base, "postfix"), Postfix(base, "postfix+opendkim", milter=True)]
    milter, milter_dir = opendkim_start(base)
    if os.environ.get("AUTH_LATENCY", "300") != "0":
        try:
            latency(servers, ["postern", "postern+opendkim", "postfix", "postfix+opendkim"],
                    int(os.environ.get("AUTH_LATENCY", "300")))
        except BaseException:
            milter.terminate()
            shutil.rmtree(milter_dir, ignore_errors=True)
            raise
    print(f"# relay load, 20 sessions, {ROUNDS} rounds interleaved; msg/s median "
          "(cost = drop against the same server without it)")
    try:
        for size, count in LOADS:
            rates = {s.name: [] for s in servers}
            for _ in range(ROUNDS):
                for s in servers:
                    rates[s.name].append(relay_run(s, size, count))
                    time.sleep(0.5)
            med = {n: statistics.median(r) for n, r in rates.items()}
            print(f"## {size} bytes x {count} messages")
            for n, m in med.items():
                bl = med["postfix" if n.startswith("postfix") else "postern"]
                each = " ".join(f"{r:.0f}" for r in rates[n])
                print(f"{n:>18} {m:>7.0f} msg/s  cost {100 * (1 - m / bl):>5.1f}%  ({each})",
                      flush=True)
            print(f"{'ratio':>18} plain {med['postern'] / med['postfix']:.2f}, with the "
                  f"opendkim milter {med['postern+opendkim'] / med['postfix+opendkim']:.2f}"
                  " (postern / postfix)", flush=True)
    finally:
        milter.terminate()
        milter.wait()
        shutil.rmtree(milter_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
