"""A raw, scriptable, hostile milter for the review tests (loopback only).

HostileMilter(script, protocol=0, actions=0x1ff): script is a function
(cmd: str, data: bytes, conn_state: dict) -> list of reply packets, each
a bytes object (the command byte and its data; framed here) or a raw
bytes wrapped in Raw() (sent as is).  Return None for "no reply" (the
milter negotiated NR_ for it).  Default: 'c' for every command that
wants a reply.
"""
import socket
import struct
import threading
import time

NOREPLY = {b"D", b"A", b"Q", b"K"}


class Raw(bytes):
    pass


def pkt(cmd, data=b""):
    if isinstance(cmd, str):
        cmd = cmd.encode()
    return struct.pack(">I", 1 + len(data)) + cmd + data


class HostileMilter:
    def __init__(self, script=None, protocol=0, actions=0x1FF):
        self.script = script or (lambda cmd, data, st: None)
        self.protocol, self.actions = protocol, actions
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.seen = []  # (cmd, data)
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def spec(self):
        return f"inet:127.0.0.1:{self.port}"

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def recv_exact(self, c, n):
        b = b""
        while len(b) < n:
            chunk = c.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def serve(self, c):
        st = {}
        try:
            while not self.stopped:
                n = struct.unpack(">I", self.recv_exact(c, 4))[0]
                body = self.recv_exact(c, n)
                cmd, data = body[:1], body[1:]
                self.seen.append((cmd.decode(), data))
                if cmd == b"O":
                    c.sendall(pkt("O", struct.pack(">III", 6, self.actions, self.protocol)))
                    continue
                out = self.script(cmd.decode(), data, st)
                if out is None:
                    if cmd in NOREPLY:
                        continue
                    out = [b"c"]
                for p in out:
                    if callable(p):
                        p(c)
                    elif isinstance(p, Raw):
                        c.sendall(p)
                    else:
                        c.sendall(pkt(p[:1], p[1:]))
                if cmd == b"Q":
                    break
        except (OSError, EOFError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def cmds(self):
        return [c for c, _ in self.seen]

    def close(self):
        self.stopped = True
        self.ls.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
