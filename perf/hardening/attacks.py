#!/usr/bin/env python3
"""Runs the issue-11 attacks against a merklekv binary and prints figures.

Usage: perf/hardening/attacks.py <path-to-merklekv> [attack ...] [-- extra server args]

Each attack starts a fresh server (`--threads 2`, default configuration
otherwise), measures the server's RSS (VmRSS from /proc/<pid>/status)
before, at its peak during the attack (sampled every 50 ms) and after, the
attack's duration, and whether a fresh connection gets `+PONG` during and
after the attack (latency, or `no` after 2 s). Timing figures depend on the
machine; compare before/after on the same machine.
"""

import os
import socket
import subprocess
import sys
import threading
import time

BIN = None
EXTRA = []


class Server:
    def __init__(self, args=()):
        self.p = subprocess.Popen(
            [BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2", *EXTRA, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "warn"},
            cwd="/tmp",
        )
        while True:
            line = self.p.stdout.readline().decode()
            if not line:
                raise SystemExit("server exited: " + self.p.stderr.read().decode())
            if "listening on " in line:
                host, port = line.split("listening on ")[1].split()[0].rsplit(":", 1)
                self.addr = (host, int(port))
                break
        threading.Thread(target=self.p.stdout.read, daemon=True).start()
        self.err = []
        threading.Thread(target=self._drain_err, daemon=True).start()
        self.peak = 0
        self._sampling = False

    def _drain_err(self):
        for line in self.p.stderr:
            self.err.append(line.decode(errors="replace"))

    def rss_kb(self):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except FileNotFoundError:
            return 0
        return 0

    def sample(self):
        """Starts sampling the peak RSS until stop_sampling()."""
        self.peak = self.rss_kb()
        self._sampling = True

        def run():
            while self._sampling:
                self.peak = max(self.peak, self.rss_kb())
                time.sleep(0.05)

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def stop_sampling(self):
        self._sampling = False
        self._t.join()
        return self.peak

    def connect(self, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(self.addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def ping(self, timeout=2.0):
        """Latency of PING on a fresh connection in ms, or None."""
        t0 = time.monotonic()
        try:
            s = socket.create_connection(self.addr, timeout=timeout)
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                got += chunk
            s.close()
            if got == b"+PONG\r\n":
                return (time.monotonic() - t0) * 1000
        except OSError:
            pass
        return None

    def stop(self):
        self.p.kill()
        self.p.wait()


def req(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(s):
    """Reads one RESP reply (simple types, bulk, or flat array)."""
    f = s.makefile("rb")
    line = f.readline()
    if line[:1] == b"$":
        n = int(line[1:])
        if n >= 0:
            f.read(n + 2)
    elif line[:1] == b"*":
        for _ in range(max(0, int(line[1:]))):
            read_reply_f(f)
    return line


def read_reply_f(f):
    line = f.readline()
    if line[:1] == b"$":
        n = int(line[1:])
        if n >= 0:
            f.read(n + 2)
    return line


def fmt_ping(ms):
    return "no (2 s)" if ms is None else f"{ms:.0f} ms"


class Pinger:
    """PINGs on fresh connections in a loop; records the worst latency."""

    def __init__(self, srv):
        self.srv = srv
        self.worst = 0.0
        self.failed = 0
        self.n = 0
        self.run = True
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while self.run:
            ms = self.srv.ping()
            self.n += 1
            if ms is None:
                self.failed += 1
            else:
                self.worst = max(self.worst, ms)
            time.sleep(0.05)

    def stop(self):
        self.run = False
        self.t.join()
        if self.failed:
            return f"{self.failed}/{self.n} unanswered in 2 s"
        return f"all {self.n} answered, worst {self.worst:.0f} ms"


def report(name, srv, before, peak, after, elapsed, during, extra=""):
    print(
        f"{name}: RSS before {before // 1024} MiB, peak +{(peak - before) // 1024} MiB, "
        f"after +{(after - before) // 1024} MiB; time {elapsed:.2f} s; "
        f"PING during: {during}; PING after: {fmt_ping(srv.ping())}"
        + (f"; {extra}" if extra else ""),
        flush=True,
    )


# ---- attacks ----------------------------------------------------------------


def freeze():
    srv = Server()
    before = srv.rss_kb()
    s = srv.connect()
    s.settimeout(2)
    t0 = time.monotonic()
    s.sendall(req("MULTI") + req("FLUSHDB") + req("EXEC"))
    got = b""
    try:
        while got.count(b"\r\n") < 4:
            c = s.recv(4096)
            if not c:
                break
            got += c
        exec_reply = "EXEC answered"
    except socket.timeout:
        exec_reply = "EXEC unanswered after 2 s"
    elapsed = time.monotonic() - t0
    ping = fmt_ping(srv.ping())
    srv.p.terminate()
    try:
        srv.p.wait(3)
        term = "SIGTERM stops it"
    except subprocess.TimeoutExpired:
        term = "SIGTERM ignored (SIGKILL needed)"
    after = before
    print(f"freeze: {exec_reply}; time {elapsed:.2f} s; PING: {ping}; {term}", flush=True)
    srv.stop()


def amplification():
    srv = Server()
    c = srv.connect()
    # A 4 MiB value: a bulk string is at most 1 MiB, a value 8 MiB.
    mib = b"x" * (1 << 20)
    c.sendall(req("SET", "big", mib))
    read_reply(c)
    for _ in range(3):
        c.sendall(req("APPEND", "big", mib))
        read_reply(c)
    before = srv.rss_kb()
    srv.sample()
    pinger = Pinger(srv)
    a = srv.connect(rcvbuf=4096)
    t0 = time.monotonic()
    a.sendall(req("MGET", *(["big"] * 2000)))
    time.sleep(4)
    elapsed = time.monotonic() - t0
    during = pinger.stop()
    peak = srv.stop_sampling()
    # Did the server close the attacker? (read what is there, EOF or not)
    a.setblocking(False)
    closed = "attacker connection open"
    try:
        while True:
            d = a.recv(1 << 20)
            if not d:
                closed = "attacker connection closed by the server"
                break
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed = "attacker connection reset by the server"
    after = srv.rss_kb()
    report("amplification (MGET 2000 x 4 MiB, never read)", srv, before, peak, after, elapsed, during, closed)
    srv.stop()


def split_request(n, piece=16 << 10):
    args = [b"EXISTS"] + [b"a"] * n
    return req(*args)


def quadratic():
    srv = Server()
    before = srv.rss_kb()
    for n in (250_000, 1_000_000):
        buf = split_request(n)
        s = srv.connect()
        t0 = time.monotonic()
        for i in range(0, len(buf), 16 << 10):
            s.sendall(buf[i : i + (16 << 10)])
        line = read_reply(s)
        el = time.monotonic() - t0
        print(f"quadratic: EXISTS {n} args in 16 KiB pieces: {line.strip().decode()} in {el * 1000:.0f} ms", flush=True)
        s.close()
    # Sixty clients sending such requests piece by piece, round-robin.
    # 95% of each request: never completed, so the figure is the cost of
    # framing alone (a completed 1M-key EXISTS costs its execution too).
    buf = split_request(1_000_000)
    buf = buf[: len(buf) * 95 // 100]
    socks = [srv.connect() for _ in range(60)]
    srv.sample()
    pinger = Pinger(srv)
    t0 = time.monotonic()
    deadline = t0 + 6
    pos = 0
    while pos < len(buf) and time.monotonic() < deadline:
        for s in socks:
            s.sendall(buf[pos : pos + (16 << 10)])
        pos += 16 << 10
    elapsed = time.monotonic() - t0
    during = pinger.stop()
    peak = srv.stop_sampling()
    for s in socks:
        s.close()
    after = srv.rss_kb()
    report(
        f"quadratic (60 clients, 95% of a 1M-arg EXISTS in 16 KiB pieces, {min(pos, len(buf)) * 60 >> 20} MiB sent)",
        srv, before, peak, after, elapsed, during,
    )
    srv.stop()


def incomplete(conns=40):
    srv = Server()
    before = srv.rss_kb()
    srv.sample()
    pinger = Pinger(srv)
    t0 = time.monotonic()
    mib = b"v" * (1 << 20)
    head = b"*64\r\n$3\r\nSET\r\n"
    body = b"$1048576\r\n" + mib + b"\r\n"
    socks = []
    for _ in range(conns):
        s = srv.connect()
        s.settimeout(5)
        try:
            s.sendall(head)
            for _ in range(62):
                s.sendall(body)
        except OSError:
            pass
        socks.append(s)
    time.sleep(1)
    elapsed = time.monotonic() - t0
    during = pinger.stop()
    peak = srv.stop_sampling()
    evicted = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(4096).startswith(b"-ERR client evicted"):
                evicted += 1
        except OSError:
            pass
    after = srv.rss_kb()
    report(f"incomplete ({conns} x 62 MiB of a 64-arg SET)", srv, before, peak, after, elapsed, during, f"{evicted}/{conns} attackers evicted")
    for s in socks:
        s.close()
    srv.stop()


def shrink(conns=20):
    srv = Server()
    before = srv.rss_kb()
    srv.sample()
    t0 = time.monotonic()
    keys = [b"k" * (1 << 20)] * 60
    buf = req(b"EXISTS", *keys)
    socks = []
    for _ in range(conns):
        s = srv.connect()
        s.sendall(buf)
        read_reply(s)
        socks.append(s)
    elapsed = time.monotonic() - t0
    peak = srv.stop_sampling()
    time.sleep(0.5)
    after = srv.rss_kb()
    report(f"shrink ({conns} idle connections after one 60 MiB request each)", srv, before, peak, after, elapsed, "-")
    for s in socks:
        s.close()
    srv.stop()


def glob_in_multi(keys=20_000):
    """KEYS with a pattern that makes a backtracking matcher quadratic
    (`*aaa…ab` against 1000-byte keys of `a`s), inside MULTI/EXEC (every
    shard held), then a 1 MiB pattern."""
    srv = Server()
    c = srv.connect()
    batch = b"".join(req("SET", b"a" * 990 + b"%010d" % i, "v") for i in range(keys))
    c.sendall(batch)
    f = c.makefile("rb")
    for _ in range(keys):
        f.readline()
    before = srv.rss_kb()
    srv.sample()
    c.settimeout(30)
    for plen in (502, 1 << 20):
        pattern = b"*" + b"a" * (plen - 2) + b"b"
        pinger = Pinger(srv)
        t0 = time.monotonic()
        c.sendall(req("MULTI") + req("KEYS", pattern) + req("EXEC"))
        try:
            f.readline()  # +OK
            q = f.readline()  # +QUEUED or -ERR
            line = f.readline()  # *1 / -EXECABORT
            if line.startswith(b"*"):
                read_reply_f(f)
            outcome = f"queued {q.strip().decode()[:48]}, EXEC {line.strip().decode()[:48]}"
        except (socket.timeout, TimeoutError):
            outcome = "EXEC unanswered after 30 s"
        elapsed = time.monotonic() - t0
        during = pinger.stop()
        print(
            f"glob in MULTI ({keys} keys of 1000 bytes, {plen}-byte pattern): {outcome} "
            f"in {elapsed * 1000:.0f} ms; PING during: {during}",
            flush=True,
        )
        if outcome.startswith("EXEC unanswered"):
            break
        if b"not allowed" in q or b"too long" in q:
            # Refused inside MULTI: the same KEYS on its own.
            pinger = Pinger(srv)
            t0 = time.monotonic()
            c.sendall(req("KEYS", pattern))
            try:
                line = f.readline()
                if line.startswith(b"*"):
                    for _ in range(int(line[1:])):
                        read_reply_f(f)
                outcome = f"KEYS alone: {line.strip().decode()[:48]}"
            except (socket.timeout, TimeoutError):
                outcome = "KEYS alone unanswered after 30 s"
            elapsed = time.monotonic() - t0
            during = pinger.stop()
            print(
                f"glob ({keys} keys of 1000 bytes, {plen}-byte pattern): {outcome} "
                f"in {elapsed * 1000:.0f} ms; PING during: {during}",
                flush=True,
            )
    peak = srv.stop_sampling()
    after = srv.rss_kb()
    report("glob in MULTI", srv, before, peak, after, 0, "-")
    srv.stop()


def long_line(tries=20):
    srv = Server()
    before = srv.rss_kb()
    ok = 0
    reset = 0
    send_failed = 0
    line = b"SET k " + b"v" * (2 << 20)
    t0 = time.monotonic()
    for _ in range(tries):
        s = srv.connect()
        s.settimeout(3)
        try:
            s.sendall(line)
        except OSError:
            send_failed += 1
        # A client that reads a moment later (as most do after a send):
        # by then an RST, if any, has arrived and discarded the reply.
        time.sleep(0.1)
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            reset += 1
        except socket.timeout:
            pass
        if got.startswith(b"ERROR line too long"):
            ok += 1
        s.close()
    elapsed = time.monotonic() - t0
    after = srv.rss_kb()
    report("long line (2 MiB text line)", srv, before, after, after, elapsed, "-", f"error received {ok}/{tries}, send failed {send_failed}/{tries}, reset on read {reset}/{tries}")
    srv.stop()


def idle_flood(conns=5000):
    srv = Server()
    before = srv.rss_kb()
    srv.sample()
    pinger = Pinger(srv)
    t0 = time.monotonic()
    socks = []
    for _ in range(conns):
        try:
            socks.append(srv.connect())
        except OSError:
            break
    time.sleep(1)
    elapsed = time.monotonic() - t0
    during = pinger.stop()
    peak = srv.stop_sampling()
    after = srv.rss_kb()
    report(f"idle flood ({len(socks)} idle connections)", srv, before, peak, after, elapsed, during)
    for s in socks:
        s.close()
    srv.stop()


ATTACKS = {
    "freeze": freeze,
    "amplification": amplification,
    "quadratic": quadratic,
    "incomplete": incomplete,
    "shrink": shrink,
    "glob": glob_in_multi,
    "long_line": long_line,
    "idle": idle_flood,
}

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--" in argv:
        i = argv.index("--")
        argv, EXTRA = argv[:i], argv[i + 1 :]
    BIN = argv[0]
    names = argv[1:] or list(ATTACKS)
    for name in names:
        ATTACKS[name]()
