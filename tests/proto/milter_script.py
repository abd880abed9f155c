"""A scripted test milter (python3-milter, on libmilter) for test_milter.py.

Usage: milter_script.py SOCKET SCRIPT.json LOG.jsonl

SCRIPT maps a stage (connect helo mail rcpt data header eoh body eom) to
what the milter answers there: "continue", "accept", "reject",
"tempfail", "discard", "hang" (answers only after 8 s), or
["reply", "550", "5.7.1", "text"].  "mods" is a
list of modifications made at end of message:
  ["addheader", NAME, VALUE], ["insheader", INDEX, NAME, VALUE],
  ["chgheader", NAME, INDEX, VALUE], ["chgfrom", ADDR],
  ["addrcpt", ADDR], ["delrcpt", ADDR], ["replacebody", TEXT],
  ["quarantine", REASON]
"rcpt_reject" lists recipients refused at RCPT (the others continue).
Each stage appends a JSON line to LOG: the stage, its arguments and the
macros it saw.
"""
import json
import sys
import time

import Milter

SOCK, SCRIPT, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
with open(SCRIPT) as f:
    PLAN = json.load(f)

MACROS = ["j", "{daemon_name}", "v", "_", "{client_addr}", "{client_name}",
          "{client_port}", "i", "{auth_type}", "{auth_authen}", "{mail_addr}",
          "{mail_host}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}",
          "{tls_version}", "{cipher}"]


class Scripted(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()

    def note(self, stage, **kw):
        seen = {}
        for m in MACROS:
            v = self.getsymval(m)
            if v is not None:
                seen[m] = v
        rec = {"stage": stage, "macros": seen}
        rec.update(kw)
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def answer(self, stage):
        a = PLAN.get(stage, "continue")
        if a == "hang":  # past postern's timeout; then carry on
            time.sleep(8)
            return Milter.CONTINUE
        if isinstance(a, list) and a[0] == "reply":
            self.setreply(a[1], a[2], a[3])
            return Milter.REJECT if a[1][0] == "5" else Milter.TEMPFAIL
        return {"continue": Milter.CONTINUE, "accept": Milter.ACCEPT,
                "reject": Milter.REJECT, "tempfail": Milter.TEMPFAIL,
                "discard": Milter.DISCARD}[a]

    def connect(self, hostname, family, hostaddr):
        self.note("connect", hostname=hostname, addr=str(hostaddr))
        return self.answer("connect")

    def hello(self, name):
        self.note("helo", name=name)
        return self.answer("helo")

    def envfrom(self, f, *args):
        self.note("mail", addr=f)
        return self.answer("mail")

    def envrcpt(self, to, *args):
        self.note("rcpt", addr=to)
        if to.strip("<>") in PLAN.get("rcpt_reject", []):
            return Milter.REJECT
        return self.answer("rcpt")

    def data(self):
        self.note("data")
        return self.answer("data")

    def header(self, name, value):
        self.note("header", name=name, value=value)
        return self.answer("header")

    def eoh(self):
        self.note("eoh")
        return self.answer("eoh")

    def body(self, chunk):
        self.note("body", text=chunk.decode("utf-8", "replace"))
        return self.answer("body")

    def eom(self):
        self.note("eom")
        for m in PLAN.get("mods", []):
            op = m[0]
            if op == "addheader":
                self.addheader(m[1], m[2])
            elif op == "insheader":
                self.addheader(m[2], m[3], m[1])
            elif op == "chgheader":
                self.chgheader(m[1], m[2], m[3])
            elif op == "chgfrom":
                self.chgfrom(m[1])
            elif op == "addrcpt":
                self.addrcpt(m[1])
            elif op == "delrcpt":
                self.delrcpt(m[1])
            elif op == "replacebody":
                self.replacebody(m[1].encode())
            elif op == "quarantine":
                self.quarantine(m[1])
        return self.answer("eom")

    def abort(self):
        self.note("abort")
        return Milter.CONTINUE

    def close(self):
        return Milter.CONTINUE


Milter.factory = Scripted
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY |
                 Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM |
                 Milter.QUARANTINE)
Milter.runmilter("postern-test", "unix:" + SOCK, timeout=60)
