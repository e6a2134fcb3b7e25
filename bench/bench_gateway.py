#!/usr/bin/python3
"""Gateway benchmark: `postern serve` side by side with Dovecot on the same messages, in one run.
Prints figures; asserts nothing about timing.

usage: sudo bench/bench_gateway.py [--messages N] [--idle K] [--window W] [--no-mbsync] [--keep]
       (defaults: 10,000 messages, 1,000 IDLE connections per server; smoke run:
        sudo bench/bench_gateway.py --messages 200 --idle 50)

Needs root (INN sites, the gateway's privilege drop to nobody/daemon, Dovecot), a Release build
in build-rel/ (cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2;
POSTERN_BIN overrides), and installs dovecot-imapd/dovecot-pop3d with apt-get if missing. The
system Dovecot service and its configuration are never touched: Dovecot runs as a private
instance (own config file via -c, own base_dir, in the foreground) in the temp directory.

What it does
  1. One INN site (scripts/inn-site) on a free 127.0.0.x address, a postern.conf with a CHEAP
     KDF (Argon2id 1 pass, 8 MiB -- the bench measures the gateway, not the password hash; the
     default is 2 passes / 64 MiB), one user, and N messages (70 % 2-10 KB text, 25 % 20-80 KB
     with a base64 attachment, 5 % 200 KB-1 MB), delivered through `postern lmtp` on a unix
     socket (4 LMTP connections) and written, byte for byte the same, into a Maildir for
     Dovecot (new/, with ,S= and ,W= in the file names as Dovecot's own delivery writes them).
  2. `postern serve` (IMAPS + POP3S, user nobody / vault_user daemon) and a private Dovecot
     (IMAPS + POP3S, the same self-signed P-256 certificate, passwd-file with one user,
     high-performance login mode: service_count = 0) on free ports of the same address.
  3. For each operation postern first, then Dovecot: wall time, CPU seconds of the server's
     processes, and their memory (VmRSS from /proc, summed over Dovecot's process tree; PSS too
     for the IDLE test):
       login + SELECT INBOX (first after start, then again); logins per second (LOGIN +
       LOGOUT, 4 clients, the user logged in meanwhile; then, postern only, users made with
       the default Argon2id parameters logging in for the first time); UID FETCH 1:* (FLAGS);
       Thunderbird's header fetch, cold then warm; full pulls with UID FETCH n (BODY.PEEK[])
       pipelined W deep as mbsync sends them (new session, then the same session again) and
       one at a time (new session, with latency percentiles); real mbsync into an empty
       Maildir; POP3 LIST + UIDL + RETR of every message; IDLE: K connections logged in with
       INBOX selected and idling, one message delivered, time until every one saw `* n EXISTS`;
       memory per idle connection from the first connection on (the first opens the account:
       postern then holds the user's state for every message, once per account; it is
       printed apart).
     New sessions matter: postern keeps decrypted messages per account while the user has a
     session, so a pull in a new session starts cold.
The gateway's stderr (--verbose) is kept with a timestamp per line and phase markers in
WORK/serve.log; warnings and errors from it are printed at the end (--keep keeps WORK).
"""
import argparse
import asyncio
import base64
import collections
import fcntl
import os
import pwd
import random
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTERN = os.environ.get("POSTERN_BIN", os.path.join(ROOT, "build-rel", "cli", "postern"))
INN_SITE = os.path.join(ROOT, "scripts", "inn-site")
USER = "bench@example.org"
PASSWORD = "bench gateway password 1"
GROUP = "postern.org.example.bench"
LOCK_DIR = "/tmp/postern-test-locks"  # the integration tests' slot locks: never collide with them
SLOT_RANGE = range(20, 240)
LMTP_CONNS = 4
RESYNC_CHANGED = 100  # flags changed between two syncs in the resync measurement
MODSEQ_MARGIN = 0     # [gateway] modseq_margin for the bench (see Postern)
LOGIN_CLIENTS = 4     # clients logging in at once in the login measurements
KDF_POOL = 256 << 20  # [gateway] kdf_pool_memory: the default, so cold logins run as shipped
HEADER_FETCH = ("UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
                "(From To Cc Subject Date Message-ID)])")

T0 = time.monotonic()


def say(*a):
    print("[%6.1fs]" % (time.monotonic() - T0), *a, flush=True)


def sh(*args, **kw):
    kw.setdefault("check", True)
    return subprocess.run([str(x) for x in args], **kw)


# ---------------------------------------------------------------- cleanup (also on Ctrl-C)

CLEANUP = []


def on_signal(sig, frame):
    raise KeyboardInterrupt("signal %d" % sig)


def run_cleanup():
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except BaseException as e:  # keep cleaning up whatever happens
            print("cleanup: %s: %s" % (getattr(fn, "__name__", fn), e), file=sys.stderr)


def stop_proc(p, sig=signal.SIGTERM, timeout=30):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- addresses, certificate

def reserve_slot():
    """A free (127.0.0.i, 11900+i) for the INN site, held by a flock as the tests do it."""
    os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
    start = random.SystemRandom().randrange(len(SLOT_RANGE))
    for k in range(len(SLOT_RANGE)):
        i = SLOT_RANGE[(start + k) % len(SLOT_RANGE)]
        addr, port = "127.0.0.%d" % i, 11900 + i
        fd = os.open(os.path.join(LOCK_DIR, "slot-%d" % i), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            return addr, port, fd
        except OSError:
            os.close(fd)
        finally:
            s.close()
    sys.exit("bench_gateway: no free loopback address/port in 127.0.0.20-239")


def free_port(addr):
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(addr, port, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %d" % (what, proc.returncode))
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("%s does not listen on %s:%d" % (what, addr, port))
            time.sleep(0.05)


def make_cert(d, addr):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "cert.key")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s" % addr,
       "-addext", "subjectAltName=DNS:localhost,DNS:%s,IP:%s" % (addr, addr), capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------- messages

class Messages:
    """Deterministic messages: message(i) is the same bytes (LF line ends) every time."""

    def __init__(self, seed):
        rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(3000)]
        lines, size = [], 0
        while size < 1 << 20:
            line, n = [], 0
            while n < 66:
                w = rng.choice(words)
                line.append(w)
                n += len(w) + 1
            lines.append(" ".join(line).capitalize() + ".")
            size += len(lines[-1]) + 1
        self.corpus = ("\n".join(lines) + "\n").encode()
        self.words = words
        self.seed = seed

    def text(self, rng, n):
        start = self.corpus.find(b"\n", rng.randrange(len(self.corpus) - n - 200)) + 1
        end = self.corpus.find(b"\n", start + max(n, 1))
        return self.corpus[start:end + 1]

    def message(self, i, n_total):
        rng = random.Random(self.seed * 1000003 + i)
        r = rng.random()
        if r < 0.70:
            kind, size = "text", rng.randint(2000, 10000)
        elif r < 0.95:
            kind, size = "attach", rng.randint(20000, 80000)
        else:
            kind, size = "big", rng.randint(200000, 1000000)
        when = time.gmtime(1_700_000_000 - (n_total - i) * 300)
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", when)
        sender = "%s.%s@%s.example.net" % (rng.choice(self.words), rng.choice(self.words), rng.choice(self.words))
        subject = " ".join(rng.choice(self.words) for _ in range(rng.randint(3, 9))).capitalize()
        qid = "%010X" % rng.getrandbits(40)
        dkim = base64.b64encode(rng.randbytes(256)).decode()
        h = [
            "Return-Path: <%s>" % sender,
            "Delivered-To: %s" % USER,
            "Received: from mx1.example.org (mx1.example.org [192.0.2.10])\n\tby mail.example.org (Postfix) "
            "with ESMTPS id %s\n\tfor <%s>; %s" % (qid, USER, date),
            "Received: from out.example.net (out.example.net [198.51.100.%d])\n\tby mx1.example.org (Postfix) "
            "with ESMTPS id %s; %s" % (rng.randint(1, 254), qid[::-1], date),
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1;\n\tt=1700000000; "
            "h=from:to:subject:date:message-id;\n\tbh=%s;\n\tb=%s\n\t %s" % (
                base64.b64encode(rng.randbytes(32)).decode(), dkim[:150], dkim[150:]),
            "Authentication-Results: mail.example.org; dkim=pass header.d=example.net; spf=pass",
            "From: %s <%s>" % (rng.choice(self.words).capitalize(), sender),
            "To: Bench User <%s>" % USER,
        ]
        if rng.random() < 0.3:
            h.append("Cc: %s@example.org, %s@example.com" % (rng.choice(self.words), rng.choice(self.words)))
        h += ["Subject: %s" % subject, "Date: %s" % date,
              "Message-ID: <%d.%s@bench.example.net>" % (i, qid), "MIME-Version: 1.0"]
        if kind == "text":
            h.append("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit")
            head = ("\n".join(h) + "\n\n").encode()
            return head + self.text(rng, max(size - len(head), 100))
        boundary = "=-bench-%016x" % rng.getrandbits(64)
        h.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        head = ("\n".join(h) + "\n\nThis is a multi-part message in MIME format.\n\n").encode()
        part1 = (b"--" + boundary.encode() + b"\nContent-Type: text/plain; charset=utf-8\n\n"
                 + self.text(rng, rng.randint(500, 3000)) + b"\n")
        ctype, name = (("application/pdf", "report-%d.pdf") if kind == "attach"
                       else ("image/jpeg", "photo-%d.jpg"))
        ahead = ('--%s\nContent-Type: %s; name="%s"\nContent-Disposition: attachment; filename="%s"\n'
                 "Content-Transfer-Encoding: base64\n\n" % (boundary, ctype, name % i, name % i)).encode()
        tail = ("\n--%s--\n" % boundary).encode()
        left = max(size - len(head) - len(part1) - len(ahead) - len(tail), 1000)
        att = base64.encodebytes(rng.randbytes(left * 57 // 77))
        return head + part1 + ahead + att + tail


def crlf(m):
    return m.replace(b"\n", b"\r\n")


# ---------------------------------------------------------------- memory from /proc

def children_of(pid):
    kids = collections.defaultdict(list)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            kids[ppid].append(int(d))
        except (OSError, ValueError):
            pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def mem(pid):
    """(VmRSS kB, VmHWM kB, Pss kB) of one process, or None when it is gone."""
    try:
        rss = hwm = pss = 0
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        return rss, hwm, pss
    except (OSError, ValueError):
        return None


def mem_total(pids):
    rss = pss = n = 0
    for p in pids:
        m = mem(p)
        if m:
            rss += m[0]
            pss += m[2]
            n += 1
    return rss, pss, n


def cpu_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        v = st[st.rindex(")") + 2:].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_seconds(root):
    """CPU time (user + system) of a server: every live process of its tree plus the children
    the root has reaped (Dovecot's imap processes come and go; all are the master's children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in children_of(root):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            v = st[st.rindex(")") + 2:].split()
            total += int(v[11]) + int(v[12]) + (int(v[13]) + int(v[14]) if p == root else 0)
        except (OSError, ValueError, IndexError):
            pass
    return total / tick


class Clock:
    """Wall time of an operation; reset() after its setup (a login) leaves that out."""

    def __init__(self):
        self.t0 = time.monotonic()

    def reset(self):
        self.t0 = time.monotonic()


class Sampler:
    """Peak summed RSS of a set of processes while an operation runs (every 0.25 s)."""

    def __init__(self, pids_fn):
        self.pids_fn, self.peak, self._stop = pids_fn, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, mem_total(self.pids_fn())[0])
            self._stop.wait(0.25)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self.t.join()
        self.peak = max(self.peak, mem_total(self.pids_fn())[0])


# ---------------------------------------------------------------- minimal fast clients

class Conn:
    """A TLS connection with its own read buffer (reads in 256 KiB chunks; literals and POP3
    bodies are counted, not copied line by line)."""

    def __init__(self, addr, port, ctx, timeout=900):
        raw = socket.create_connection((addr, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf, self.pos = bytearray(), 0
        self.rx = 0  # bytes the server sent (after TLS)

    def _fill(self):
        data = self.s.recv(1 << 18)
        if not data:
            raise EOFError("server closed the connection")
        self.rx += len(data)
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def readline(self):
        rel = 0  # offsets relative to pos survive the compaction in _fill
        while True:
            i = self.buf.find(b"\n", self.pos + rel)
            if i >= 0:
                line = bytes(self.buf[self.pos:i + 1])
                self.pos = i + 1
                return line
            rel = len(self.buf) - self.pos
            self._fill()

    def skip(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        self.pos += n

    def until(self, term):
        """Skips to just after term; returns the number of octets before it."""
        rel = 0
        while True:
            i = self.buf.find(term, self.pos + rel)
            if i >= 0:
                n = i - self.pos
                self.pos = i + len(term)
                return n
            rel = max(0, len(self.buf) - self.pos - len(term) + 1)
            self._fill()

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Imap(Conn):
    LIT = re.compile(rb"\{(\d+)\}\r\n$")

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.n = 0
        g = self.readline()
        if not g.startswith(b"* OK"):
            raise RuntimeError("IMAP greeting: %r" % g)

    def send_cmd(self, text):
        self.n += 1
        tag = b"b%d" % self.n
        self.send(tag + b" " + text.encode() + b"\r\n")
        return tag

    def read_tagged(self, st):
        """Reads responses up to the next tagged one; untagged ones are counted in st
        (responses, literal octets, UIDs, EXISTS). Returns (tag, rest of the tagged line)."""
        while True:
            line = self.readline()
            parts = [line]
            lit = 0
            while True:
                m = self.LIT.search(line)
                if not m:
                    break
                n = int(m.group(1))
                self.skip(n)
                lit += n
                line = self.readline()
                parts.append(line)
            first = parts[0]
            if first.startswith(b"* "):
                if st.get("lines") is not None and b" FETCH " not in first[:24]:
                    st["lines"].append(first)
                st["lit"] += lit
                if b" FETCH " in first[:24]:
                    st["fetch"] += 1
                    if st.get("uids") is not None:
                        m = re.search(rb"UID (\d+)", b"".join(parts))
                        if m:
                            st["uids"].append(int(m.group(1)))
                else:
                    m = re.match(rb"\* (\d+) EXISTS", first)
                    if m:
                        st["exists"] = int(m.group(1))
                continue
            if first.startswith(b"+"):
                return b"+", first
            tag, _, rest = first.partition(b" ")
            return tag, rest

    def cmd(self, text, st=None):
        st = st if st is not None else stats()
        tag = self.send_cmd(text)
        t, rest = self.read_tagged(st)
        if t != tag or not rest.startswith(b"OK"):
            raise RuntimeError("IMAP %s: %r %r" % (text.split()[0], t, rest[:200]))
        return st

    def append(self, folder, flags, msg):
        """APPEND with a LITERAL+ literal (both servers advertise it): one round trip."""
        tag = self.send_cmd("APPEND %s (%s) {%d+}" % (folder, flags, len(msg)))
        self.send(msg + b"\r\n")
        t, rest = self.read_tagged(stats())
        if t != tag or not rest.startswith(b"OK"):
            raise RuntimeError("IMAP APPEND: %r %r" % (t, rest[:200]))

    def login_select(self):
        st = stats()
        self.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD), st)
        self.cmd("SELECT INBOX", st)
        return st["exists"]


def logout(c):
    """LOGOUT and wait until the server closed the connection (its session has ended)."""
    try:
        c.send(b"z LOGOUT\r\n")
        while True:
            c._fill()
    except (EOFError, OSError):
        pass
    c.close()


def stats():
    return {"lit": 0, "fetch": 0, "exists": None, "uids": None}


def imap_pipelined_pull(c, uids, window):
    """UID FETCH u (BODY.PEEK[]) for every UID, at most `window` commands in flight, sent in
    half-window batches (mbsync keeps its pipeline full the same way)."""
    st = stats()
    inflight, i = set(), 0
    half = max(window // 2, 1)
    while i < len(uids) or inflight:
        if i < len(uids) and len(inflight) <= window - half:
            batch = []
            for u in uids[i:i + half]:
                c.n += 1
                tag = b"b%d" % c.n
                batch.append(tag + b" UID FETCH %d (BODY.PEEK[])\r\n" % u)
                inflight.add(tag)
            i += len(batch)
            c.send(b"".join(batch))
        tag, rest = c.read_tagged(st)
        if tag not in inflight or not rest.startswith(b"OK"):
            raise RuntimeError("pull: %r %r" % (tag, rest[:200]))
        inflight.discard(tag)
    return st


def imap_sequential_pull(c, uids):
    """One UID FETCH u (BODY.PEEK[]) at a time: the gateway's latency per message."""
    st, lat = stats(), []
    for u in uids:
        t0 = time.monotonic()
        c.cmd("UID FETCH %d (BODY.PEEK[])" % u, st)
        lat.append(time.monotonic() - t0)
    return st, lat


def percentiles(lat):
    if not lat:
        return "-"
    s = sorted(lat)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000
    return "p50 %.2f  p90 %.2f  p99 %.2f  max %.1f ms" % (pick(0.5), pick(0.9), pick(0.99), s[-1] * 1000)


class Pop(Conn):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ok(self.readline())

    @staticmethod
    def ok(line):
        if not line.startswith(b"+OK"):
            raise RuntimeError("POP3: %r" % line[:200])
        return line

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.ok(self.readline())

    def multi(self, text):
        self.send(text.encode() + b"\r\n")
        self.ok(self.readline())
        # an empty body is just ".\r\n"; step back over the status line's CRLF
        self.pos -= 2
        return self.until(b"\r\n.\r\n")

    def multi_lines(self, text):
        self.send(text.encode() + b"\r\n")
        self.ok(self.readline())
        out = []
        while True:
            line = self.readline()
            if line == b".\r\n":
                return out
            out.append(line)


# ---------------------------------------------------------------- servers

class Postern:
    def __init__(self, work, site_dir, addr, cert, key, idle):
        self.work, self.addr = work, addr
        self.conf = os.path.join(work, "postern.conf")
        self.state = os.path.join(work, "state")
        os.mkdir(self.state, 0o700)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.state, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(work, "delivery.secret"), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(os.path.join(work, "delivery.secret"), 0o600)
        self.imaps, self.pop3s = free_port(addr), free_port(addr)
        with open(self.conf, "w") as f:
            f.write("[postern]\nprefix = postern\nauthority_public = %s/authority.pub\n"
                    "authority_secret = %s/authority.key\ndelivery_secret = %s/delivery.secret\n"
                    "writer_key = %s/writer.key\n"
                    "state_dir = %s\n"
                    "; CHEAP Argon2id for the benchmark (1 pass, 8 MiB); the default is 2 passes, 64 MiB\n"
                    "kdf_opslimit = 1\nkdf_memlimit = 8388608\n\n[deliver]\nmin_copies = 1\n\n"
                    % (work, work, work, work, self.state))
            f.write(open(os.path.join(site_dir, "postern-site.conf")).read())
            f.write("\n[gateway]\nimaps = %s:%d\npop3s = %s:%d\ntls_cert = %s\ntls_key = %s\n"
                    "user = nobody\nvault_user = daemon\nkdf_pool_memory = %d\n"
                    "max_connections = %d\n"
                    # every benchmark connection comes from one address: no per-address cap
                    "max_connections_per_ip = 0\n"
                    # CONDSTORE resync: the bench's mail is all from the last minutes, and the
                    # default margin (a day) would report every message as changed
                    "modseq_margin = %d\n" % (addr, self.imaps, addr, self.pop3s, cert, key,
                                              KDF_POOL, max(10000, idle + 100), MODSEQ_MARGIN))
        os.chmod(self.conf, 0o600)
        self.lmtp_sock = os.path.join(work, "lmtp.sock")
        self.lmtp = self.serve = None
        self.log_path = os.path.join(work, "serve.log")
        self.log_lock = threading.Lock()
        self.log = None

    def run(self, *args, **kw):
        return sh(POSTERN, "-c", self.conf, *args, **kw)

    def init(self):
        self.run("authority", "init", stdout=subprocess.DEVNULL)
        self.run("user", "add", USER, "--password-stdin", input=(PASSWORD + "\n").encode(),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_lmtp(self):
        self.lmtp = subprocess.Popen([POSTERN, "-c", self.conf, "lmtp", "--listen", "unix:" + self.lmtp_sock])
        CLEANUP.append(lambda: stop_proc(self.lmtp))
        deadline = time.monotonic() + 20
        while not os.path.exists(self.lmtp_sock):
            if self.lmtp.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("postern lmtp did not start")
            time.sleep(0.02)

    def mark(self, text):
        if self.log:
            with self.log_lock:
                self.log.write("[%8.3f] ===== bench: %s\n" % (time.monotonic() - T0, text))
                self.log.flush()

    def _pump(self, pipe):
        for line in iter(pipe.readline, b""):
            with self.log_lock:
                self.log.write("[%8.3f] %s" % (time.monotonic() - T0, line.decode(errors="replace")))
        with self.log_lock:
            self.log.flush()

    def start_serve(self):
        self.log = open(self.log_path, "a")
        self.serve = subprocess.Popen([POSTERN, "-c", self.conf, "serve", "--verbose"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pump = threading.Thread(target=self._pump, args=(self.serve.stdout,), daemon=True)
        self.pump.start()

        def stop():
            stop_proc(self.serve)
            self.pump.join(timeout=10)
            self.log.close()
        CLEANUP.append(stop)
        for p in (self.imaps, self.pop3s):
            wait_port(self.addr, p, self.serve, "postern serve")
        deadline = time.monotonic() + 10
        while len(self.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pids = [self.serve.pid] + self.children()

    def children(self):
        r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.serve.pid)], capture_output=True, text=True)
        return [int(x) for x in r.stdout.split()]

    def cpu(self):
        """{role: CPU seconds} of parent, vault and network."""
        return {role: cpu_of(pid) for role, pid in self.roles().items()}

    def roles(self):
        nobody = pwd.getpwnam("nobody").pw_uid
        out = {}
        for p in self.pids:
            if p == self.serve.pid:
                out["parent"] = p
                continue
            try:
                out["network" if os.stat("/proc/%d" % p).st_uid == nobody else "vault"] = p
            except OSError:
                pass
        return out

    def procs(self):
        """{role: (rss, hwm, pss)} for parent, vault and network (the network process is the
        child running as nobody)."""
        out = {}
        nobody = pwd.getpwnam("nobody").pw_uid
        for p in self.pids:
            m = mem(p)
            if not m:
                continue
            if p == self.serve.pid:
                role = "parent"
            else:
                try:
                    uid = os.stat("/proc/%d" % p).st_uid
                except OSError:
                    continue
                role = "network" if uid == nobody else "vault"
            out[role] = m
        return out

    def deliver_one(self, msg):
        with smtplib.LMTP(self.lmtp_sock, timeout=120) as lm:
            lm.ehlo("bench")
            lm.sendmail("sender@example.net", [USER], crlf(msg))


class Dovecot:
    def __init__(self, work, addr, cert, key, idle):
        self.d = os.path.join(work, "dovecot")
        os.makedirs(self.d, mode=0o755)
        self.addr = addr
        self.imaps, self.pop3s = free_port(addr), free_port(addr)
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        home = os.path.join(self.d, "home", USER)
        self.maildir = os.path.join(home, "Maildir")
        for sub in ("", "cur", "new", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub), mode=0o700, exist_ok=True)
        for p in (os.path.join(self.d, "home"), home, self.maildir, *(os.path.join(self.maildir, s) for s in ("cur", "new", "tmp"))):
            os.chown(p, self.uid, self.gid)
        with open(os.path.join(self.d, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s\n" % (USER, PASSWORD))
        os.chmod(os.path.join(self.d, "passwd"), 0o644)
        limit = idle + 100
        self.conf = os.path.join(self.d, "dovecot.conf")
        dh = "/usr/share/dovecot/dh.pem"
        with open(self.conf, "w") as f:
            f.write("""# private Dovecot instance of bench/bench_gateway.py
instance_name = postern-bench-%(port)d
base_dir = %(d)s/run
state_dir = %(d)s/state
protocols = imap pop3
listen = %(addr)s
log_path = %(d)s/dovecot.log
ssl = required
ssl_cert = <%(cert)s
ssl_key = <%(key)s
%(dh)s
auth_mechanisms = plain
mail_location = maildir:~/Maildir
default_process_limit = %(limit)d
default_client_limit = %(climit)d
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(d)s/passwd
}
userdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=%(d)s/home/%%u
}
protocol imap {
  mail_max_userip_connections = %(limit)d
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = %(addr)s
    port = %(port)d
    ssl = yes
  }
  # high-performance mode: a few long-lived login processes proxy every TLS connection
  service_count = 0
  process_min_avail = 2
  client_limit = %(limit)d
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    address = %(addr)s
    port = %(pport)d
    ssl = yes
  }
}
service imap {
  process_limit = %(limit)d
}
service anvil {
  client_limit = %(climit)d
}
""" % dict(d=self.d, addr=addr, cert=cert, key=key, limit=limit, climit=limit * 4, uid=self.uid, gid=self.gid,
           port=self.imaps, pport=self.pop3s, dh=("ssl_dh = <%s" % dh) if os.path.exists(dh) else ""))
        self.proc = None
        self.n = 0

    def write(self, i, msg, when):
        """Maildir file as Dovecot's delivery names it: S= stored size, W= size with CRLF."""
        name = "%d.M%dP%d.bench,S=%d,W=%d" % (when, i, os.getpid(), len(msg), len(msg) + msg.count(b"\n"))
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(msg)
        os.chown(tmp, self.uid, self.gid)
        os.utime(tmp, (when, when))
        os.rename(tmp, os.path.join(self.maildir, "new", name))

    def start(self):
        r = sh("doveconf", "-c", self.conf, "-n", capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError("doveconf: %s" % r.stderr)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.d, "stderr.log"), "w"))
        CLEANUP.append(lambda: stop_proc(self.proc))
        for p in (self.imaps, self.pop3s):
            wait_port(self.addr, p, self.proc, "dovecot")

    def pids(self):
        return children_of(self.proc.pid)


# ---------------------------------------------------------------- IDLE with K connections

async def idle_test(addr, port, ctx, k, deliver, timeout):
    sem = asyncio.Semaphore(64)

    async def until(r, pred):
        while True:
            line = await r.readline()
            if not line:
                raise EOFError("closed")
            if pred(line):
                return line

    async def open_one():
        async with sem:
            r, w = await asyncio.open_connection(addr, port, ssl=ctx, server_hostname="localhost", limit=1 << 20)
            await r.readline()
            w.write(('a LOGIN "%s" "%s"\r\n' % (USER, PASSWORD)).encode())
            line = await until(r, lambda l: l.startswith(b"a "))
            if not line.startswith(b"a OK"):
                raise RuntimeError("LOGIN: %r" % line)
            w.write(b"b SELECT INBOX\r\n")
            exists = [0]

            def sel(l):
                m = re.match(rb"\* (\d+) EXISTS", l)
                if m:
                    exists[0] = int(m.group(1))
                return l.startswith(b"b ")
            line = await until(r, sel)
            if not line.startswith(b"b OK"):
                raise RuntimeError("SELECT: %r" % line)
            w.write(b"c IDLE\r\n")
            await until(r, lambda l: l.startswith(b"+"))
            return r, w, exists[0]

    loop = asyncio.get_running_loop()
    out = {"mem_before": await loop.run_in_executor(None, deliver.mem)}
    t0 = time.monotonic()
    # One connection first: it opens the account (postern: the user's state and the
    # replicated state of every message, once per account, not per connection), so the
    # memory per connection is taken from there on.
    res = await asyncio.gather(*[open_one() for _ in range(min(k, 1))], return_exceptions=True)
    out["mem_open"] = await loop.run_in_executor(None, deliver.mem)
    res += await asyncio.gather(*[open_one() for _ in range(k - 1)], return_exceptions=True)
    setup = time.monotonic() - t0
    conns = [x for x in res if not isinstance(x, BaseException)]
    errors = [x for x in res if isinstance(x, BaseException)]
    out.update({"setup": setup, "open": len(conns), "errors": len(errors),
                "first_error": repr(errors[0]) if errors else ""})
    out["mem_idle"] = await asyncio.get_running_loop().run_in_executor(None, deliver.mem)

    async def wait_exists(r, n):
        def more(l):
            m = re.match(rb"\* (\d+) EXISTS", l)
            return m and int(m.group(1)) > n
        await until(r, more)
        return time.monotonic()

    tasks = [asyncio.create_task(wait_exists(r, n)) for r, w, n in conns]
    t_start = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, deliver.deliver)
    out["deliver"] = time.monotonic() - t_start
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    times = sorted(t.result() - t_start for t in done if not t.exception())
    out["seen"] = len(times)
    out["first"] = times[0] if times else None
    out["median"] = statistics.median(times) if times else None
    out["all"] = times[-1] if times and len(times) == len(conns) else None
    out["last"] = times[-1] if times else None
    out["mem_after"] = await asyncio.get_running_loop().run_in_executor(None, deliver.mem)
    for r, w, n in conns:
        try:
            w.write(b"DONE\r\nd LOGOUT\r\n")
        except Exception:
            pass
    await asyncio.sleep(0.5)
    for r, w, n in conns:
        w.close()
    await asyncio.gather(*[w.wait_closed() for r, w, n in conns], return_exceptions=True)
    return out


class IdleHooks:
    def __init__(self, deliver, mem):
        self.deliver, self.mem = deliver, mem


# ---------------------------------------------------------------- main

def fmt_s(x):
    return "-" if x is None else ("%.3f" % x if x < 10 else "%.1f" % x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--idle", type=int, default=1000, help="IDLE connections per server")
    ap.add_argument("--appends", type=int, default=500, help="messages APPENDed in the APPEND measurement (0: none)")
    ap.add_argument("--logins", type=int, default=400, help="logins in the login-rate measurement (0: none)")
    ap.add_argument("--cold-logins", type=int, default=8,
                    help="users made with the default Argon2id parameters, each logged in once (postern only; 0: none)")
    ap.add_argument("--idle-dovecot", type=int, default=None,
                    help="IDLE connections to Dovecot, if fewer (one process each: 10,000 take minutes and GBs)")
    ap.add_argument("--window", type=int, default=32, help="commands in flight in the pipelined pull")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-mbsync", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = ap.parse_args()
    if a.idle_dovecot is None:
        a.idle_dovecot = a.idle
    if os.geteuid() != 0:
        sys.exit("bench_gateway: run as root (INN site, privilege drop, Dovecot)")
    if not os.access(POSTERN, os.X_OK):
        sys.exit("bench_gateway: %s missing; build: cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && "
                 "cmake --build build-rel -j2" % POSTERN)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # K idle connections per server; children inherit the limit
    want = max(65536, 8 * a.idle + 4096)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not (shutil.which("dovecot") and os.path.exists("/usr/lib/dovecot/imap") and os.path.exists("/usr/lib/dovecot/pop3")):
        say("installing dovecot-imapd dovecot-pop3d (the system service is not configured or started by this bench)")
        sh("apt-get", "install", "-y", "dovecot-imapd", "dovecot-pop3d", stdout=subprocess.DEVNULL,
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    mbsync = None if a.no_mbsync else shutil.which("mbsync")
    # Dovecot's IDLE watches the Maildir with inotify, one instance per imap process (briefly
    # two while it re-arms the watch after new mail), all of them user nobody: the default of
    # 128 instances per user would leave most connections polling every 30 s. Raised for the
    # run (as a Dovecot host would be configured), restored afterwards.
    ino = "/proc/sys/fs/inotify/max_user_instances"
    want_ino = 4 * a.idle + 256
    try:
        old = int(open(ino).read())
        if old < want_ino:
            with open(ino, "w") as f:
                f.write(str(want_ino))

            def restore():
                with open(ino, "w") as f:
                    f.write(str(old))
            CLEANUP.append(restore)
            say("fs.inotify.max_user_instances %d -> %d for Dovecot's IDLE (restored at the end)" % (old, want_ino))
    except OSError as e:
        say("cannot raise fs.inotify.max_user_instances (%s): Dovecot's IDLE may poll every 30 s" % e)

    work = tempfile.mkdtemp(prefix="postern-bench-gw-", dir="/tmp")
    os.chmod(work, 0o755)  # news, nobody and Dovecot's users must reach their directories
    CLEANUP.append(lambda: None if a.keep else shutil.rmtree(work, ignore_errors=True))
    if a.keep:
        print("work directory (kept):", work)
    try:
        run(a, work, mbsync)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run_cleanup()


def run(a, work, mbsync):
    addr, port, lock_fd = reserve_slot()
    CLEANUP.append(lambda: os.close(lock_fd))
    site = os.path.join(work, "site")
    say("INN site on %s:%d, %d messages, %d IDLE connections per server" % (addr, port, a.messages, a.idle))
    sh(INN_SITE, "setup", site, "--addr", addr, "--port", port, "--name", "benchgw", stdout=subprocess.DEVNULL)
    CLEANUP.append(lambda: sh(INN_SITE, "stop", site, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    sh(INN_SITE, "start", site, stdout=subprocess.DEVNULL)
    cert, key = make_cert(work, addr)
    pst = Postern(work, site, addr, cert, key, a.idle)
    pst.init()
    dov = Dovecot(work, addr, cert, key, a.idle)
    msgs = Messages(a.seed)

    # ---- deliver: LMTP to postern and the same bytes into Dovecot's Maildir
    pst.start_lmtp()
    lock = threading.Lock()
    prog = {"next": 0, "done": 0, "bytes": 0, "err": None}

    def worker():
        try:
            lm = smtplib.LMTP(pst.lmtp_sock, timeout=300)
            lm.ehlo("bench")
            env = ("MAIL FROM:<sender@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % USER).encode()
            while True:
                with lock:
                    i = prog["next"]
                    if i >= a.messages or prog["err"]:
                        break
                    prog["next"] += 1
                m = msgs.message(i, a.messages)
                dov.write(i, m, 1_700_000_000 - (a.messages - i) * 300)
                wire = re.sub(rb"(?m)^\.", b"..", crlf(m)) + b".\r\n"
                lm.send(env)  # MAIL, RCPT and DATA pipelined as Postfix's LMTP client does
                for want in (250, 250, 354):
                    code, text = lm.getreply()
                    if code != want:
                        raise RuntimeError("LMTP %d %s" % (code, text))
                lm.send(wire)
                code, text = lm.getreply()
                if code != 250:
                    raise RuntimeError("LMTP DATA %d %s" % (code, text))
                with lock:
                    prog["done"] += 1
                    prog["bytes"] += len(m)
            lm.quit()
        except BaseException as e:
            with lock:
                prog["err"] = prog["err"] or e

    say("delivering %d messages (postern lmtp, %d connections; the same files into Dovecot's Maildir)"
        % (a.messages, LMTP_CONNS))
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(LMTP_CONNS)]
    for t in threads:
        t.start()
    last = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if time.monotonic() - last >= 5 or not any(t.is_alive() for t in threads):
            last = time.monotonic()
            el = last - t0
            say("  delivered %6d / %d  (%.0f msg/s, %.1f MB/s)" % (prog["done"], a.messages,
                prog["done"] / el, prog["bytes"] / el / 1e6))
    if prog["err"]:
        raise prog["err"]
    t_deliver = time.monotonic() - t0
    total_mb = prog["bytes"] / 1e6
    say("delivered %d messages, %.1f MB, in %.1f s" % (a.messages, total_mb, t_deliver))

    # ---- servers
    pst.start_serve()
    dov.start()
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    say("postern serve: IMAPS %d, POP3S %d; dovecot: IMAPS %d, POP3S %d" % (pst.imaps, pst.pop3s, dov.imaps, dov.pop3s))

    def pst_pids():
        return pst.pids

    servers = [("postern", pst, pst.imaps, pst.pop3s, pst_pids), ("dovecot", dov, dov.imaps, dov.pop3s, dov.pids)]
    rows = []       # (operation, {server: seconds}, note)
    memrows = []    # (operation, {server: (rss after, peak rss)})
    extra = {}      # throughput lines
    netmem = []     # postern network process after each operation

    roots = {"postern": lambda: pst.serve.pid, "dovecot": lambda: dov.proc.pid}

    def measure(op, fn, note=""):
        res, mm, cpu = {}, {}, {}
        for name, srv, imaps, pop3s, pids in servers:
            if name == "postern":
                pst.mark(op)
            clock = Clock()
            c0 = cpu_seconds(roots[name]())
            roles0 = pst.cpu() if name == "postern" else None
            with Sampler(pids) as smp:
                clock.reset()
                out = fn(name, clock, imaps, pop3s)
                res[name] = time.monotonic() - clock.t0
            cpu[name] = cpu_seconds(roots[name]()) - c0
            mm[name] = (mem_total(pids())[0], smp.peak)
            extra.setdefault(op, {})[name] = out
            if name == "postern":
                roles1 = pst.cpu()
                netmem.append((op, pst.procs(), {r: roles1[r] - roles0.get(r, 0) for r in roles1}))
            say("  %-50s %-8s %8.3f s  (server CPU %.2f s)" % (op, name, res[name], cpu[name]))
        rows.append((op, res, cpu))
        memrows.append((op, mm))
        return res

    load0 = open("/proc/loadavg").read().split()[:3]
    say("measuring (postern first, then Dovecot, per operation); load average %s" % " ".join(load0))
    conns = {}

    def login_select_cold(name, clock, imaps, pop3s):
        c = Imap(addr, imaps, ctx)
        n = c.login_select()
        conns[name] = c
        return n
    measure("login + SELECT INBOX (first after start)", login_select_cold)

    def login_select_warm(name, clock, imaps, pop3s):
        c = Imap(addr, imaps, ctx)
        n = c.login_select()
        logout(c)
        return n
    measure("login + SELECT INBOX (again)", login_select_warm)

    # Logins per second (issue 17 item 3) of a user who already has a session (conns[name]
    # stays logged in: postern's vault holds the key, the key record is cached): LOGIN +
    # LOGOUT over TLS, LOGIN_CLIENTS clients at once, a new connection each.
    def login_rate(name, clock, imaps, pop3s):
        per = max(1, a.logins // LOGIN_CLIENTS)
        errors = []

        def client():
            try:
                for _ in range(per):
                    c = Imap(addr, imaps, ctx)
                    c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
                    logout(c)
            except Exception as e:  # counted, reported: the rate is then not a rate
                errors.append(repr(e))
        ts = [threading.Thread(target=client) for _ in range(LOGIN_CLIENTS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            say("  %s: %d login clients failed: %s" % (name, len(errors), errors[0]))
        return per * LOGIN_CLIENTS, errors
    LOGINS_OP = "logins: LOGIN + LOGOUT, %d clients, the user logged in meanwhile" % LOGIN_CLIENTS
    if a.logins:
        measure(LOGINS_OP, login_rate)

    # Cold logins (postern only): users made with the default Argon2id parameters, each
    # logging in once, so each login derives the key in the vault (kdf_pool_memory bounds
    # how many at once). Dovecot's passwd-file does no such work: no anchor here.
    cold = None
    if a.cold_logins:
        conf2 = pst.conf + ".default-kdf"
        text = re.sub(r"(?m)^kdf_(opslimit|memlimit) = .*$\n", "", open(pst.conf).read())
        with open(conf2, "w") as f:
            f.write(text)
        os.chmod(conf2, 0o600)
        cold_users = ["cold%d@example.org" % i for i in range(a.cold_logins)]
        for u in cold_users:
            sh(POSTERN, "-c", conf2, "user", "add", u, "--password-stdin", input=(PASSWORD + "\n").encode(),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        todo = list(cold_users)
        lock = threading.Lock()

        def cold_client():
            while True:
                with lock:
                    if not todo:
                        return
                    u = todo.pop()
                c = Imap(addr, pst.imaps, ctx)
                c.cmd('LOGIN "%s" "%s"' % (u, PASSWORD))
                logout(c)
        t0 = time.monotonic()
        ts = [threading.Thread(target=cold_client) for _ in range(LOGIN_CLIENTS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        cold = (len(cold_users), time.monotonic() - t0, 2, 64 << 20, KDF_POOL)
        say("  cold logins (default Argon2id, no session of the user yet): %d in %.2f s" % (cold[0], cold[1]))

    # The imaplib session: what a client that caches nothing does on every sync.
    def imaplib_session(name, clock, imaps, pop3s):
        c = Imap(addr, imaps, ctx)
        c.login_select()
        c.cmd("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
        st = c.cmd("UID FETCH 1:* BODY.PEEK[]")
        logout(c)
        return st["fetch"], st["lit"]
    SESSION = "session: SELECT, FETCH 1:* (ENVELOPE BODYSTRUCTURE..), FETCH 1:* BODY.PEEK[]"
    measure(SESSION + ", first ever", imaplib_session)

    uids = {}

    def flags(name, clock, imaps, pop3s):
        st = stats()
        st["uids"] = []
        conns[name].cmd("UID FETCH 1:* (FLAGS)", st)
        uids[name] = st["uids"]
        return st["fetch"]
    measure("UID FETCH 1:* (FLAGS)", flags)

    # A reconnect (or a failover: postern's MODSEQs are the same at every site) with
    # RESYNC_CHANGED flags changed since the client's last sync: a full UID FETCH 1:* (FLAGS)
    # against CONDSTORE's CHANGEDSINCE and QRESYNC's SELECT, each in a new session (login and
    # SELECT timed: that is the resync). Bytes: all the server sent in the session.
    since = {}
    for name, srv, imaps, pop3s, pids in servers:
        c = Imap(addr, imaps, ctx)
        c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
        st = stats()
        st["lines"] = []
        c.cmd("SELECT INBOX (CONDSTORE)", st)
        text = b"".join(st["lines"])
        since[name] = (int(re.search(rb"UIDVALIDITY (\d+)", text).group(1)),
                       int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1)))
        u = uids[name]
        for uid in u[::max(1, len(u) // RESYNC_CHANGED)][:RESYNC_CHANGED]:
            c.cmd("UID STORE %d +FLAGS.SILENT (\\Flagged)" % uid)
        logout(c)

    def resync(name, clock, imaps, pop3s, how):
        c = Imap(addr, imaps, ctx)
        c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
        validity, h = since[name]
        if how == "full":
            c.cmd("SELECT INBOX")
            st = c.cmd("UID FETCH 1:* (FLAGS)")
        elif how == "changedsince":
            c.cmd("SELECT INBOX (CONDSTORE)")
            st = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h)
        else:
            c.cmd("ENABLE QRESYNC")
            st = c.cmd("SELECT INBOX (QRESYNC (%d %d 1:%d))" % (validity, h, max(uids[name] or [1])))
        n = c.rx
        logout(c)
        return st["fetch"], n
    for how, op in (("full", "resync: SELECT + UID FETCH 1:* (FLAGS)"),
                    ("changedsince", "resync: SELECT + UID FETCH 1:* (FLAGS) (CHANGEDSINCE h)"),
                    ("qresync", "resync: ENABLE QRESYNC + SELECT (QRESYNC (v h 1:max))")):
        measure(op, lambda *x, how=how: resync(*x, how))

    def headers(name, clock, imaps, pop3s):
        st = conns[name].cmd(HEADER_FETCH)
        return st["fetch"], st["lit"]
    measure("header fetch (Thunderbird), cold", headers)
    measure("header fetch (Thunderbird), warm", headers)

    # RFC 5256 over the whole INBOX, from what each server has of ENVELOPE (issue 13: <= 1.0x)
    def sort_date(name, clock, imaps, pop3s):
        return conns[name].cmd("UID SORT (REVERSE DATE) UTF-8 ALL")["lit"]
    measure("UID SORT (REVERSE DATE) UTF-8 ALL", sort_date)

    def thread_refs(name, clock, imaps, pop3s):
        return conns[name].cmd("UID THREAD REFERENCES UTF-8 ALL")["lit"]
    measure("UID THREAD REFERENCES UTF-8 ALL", thread_refs)
    for c in conns.values():
        logout(c)

    # Full pulls in new sessions: postern keeps decrypted messages per account, which lives as
    # long as the user has a session, so each of these starts without them. The login and
    # SELECT are not timed.
    def pull(name, clock, imaps, pop3s, again=False):
        if not again:
            conns[name] = Imap(addr, imaps, ctx)
            conns[name].login_select()
            clock.reset()
        st = imap_pipelined_pull(conns[name], uids[name], a.window)
        return st["fetch"], st["lit"]
    measure("full pull, W=%d pipelined, new session" % a.window, pull)
    measure("full pull, W=%d pipelined, same session again" % a.window,
            lambda *x: pull(*x, again=True))
    for c in conns.values():
        logout(c)

    def pull1(name, clock, imaps, pop3s):
        c = Imap(addr, imaps, ctx)
        c.login_select()
        clock.reset()
        st, lat = imap_sequential_pull(c, uids[name])
        t = time.monotonic()
        logout(c)
        clock.t0 += time.monotonic() - t
        return st["fetch"], st["lit"], None, lat
    measure("full pull, W=1 (one at a time), new session", pull1)

    if mbsync:
        def run_mbsync(name, clock, imaps, pop3s):
            d = os.path.join(work, "mbsync-" + name)
            os.mkdir(d)
            cfg = os.path.join(d, "mbsyncrc")
            with open(cfg, "w") as f:
                f.write("FSync no\n\nIMAPAccount far\nHost %s\nPort %d\nUser %s\nPass \"%s\"\nSSLType IMAPS\n"
                        "CertificateFile %s\n\nIMAPStore far\nAccount far\n\nMaildirStore near\nPath %s/\n"
                        "Inbox %s/INBOX\n\nChannel bench\nFar :far:\nNear :near:\nPatterns INBOX\nSync Pull\n"
                        "Create Near\nSyncState *\n" % (addr, imaps, USER, PASSWORD, cert, d, d))
            r = subprocess.run(["mbsync", "-c", cfg, "-q", "bench"], capture_output=True, text=True, timeout=7200)
            if r.returncode != 0:
                raise RuntimeError("mbsync against %s: exit %d: %s" % (name, r.returncode, r.stderr[-2000:]))
            files = os.listdir(os.path.join(d, "INBOX", "new")) + os.listdir(os.path.join(d, "INBOX", "cur"))
            size = sum(os.path.getsize(os.path.join(d, "INBOX", sub, f)) for sub in ("new", "cur")
                       for f in os.listdir(os.path.join(d, "INBOX", sub)))
            shutil.rmtree(d, ignore_errors=True)
            return len(files), size
        measure("mbsync, full pull into an empty Maildir", run_mbsync)

    measure(SESSION + ", again", imaplib_session)

    def pop3(name, clock, imaps, pop3s):
        t0 = time.monotonic()
        p = Pop(addr, pop3s, ctx)
        p.cmd("USER " + USER)
        p.cmd("PASS " + PASSWORD)
        t_login = time.monotonic() - t0
        lst = p.multi_lines("LIST")
        p.multi_lines("UIDL")
        total, lat = 0, []
        for line in lst:
            t1 = time.monotonic()
            total += p.multi("RETR %d" % int(line.split()[0]))
            lat.append(time.monotonic() - t1)
        p.cmd("QUIT")
        p.close()
        return len(lst), total, t_login, lat
    measure("POP3 login + LIST + UIDL + RETR each", pop3)

    # APPEND throughput (issue 13): the first a.appends messages of the corpus into a folder
    # of their own, one after another as a client saving drafts or Sent copies does. postern
    # seals each to the user's key and waits for min_copies sites to hold it; Dovecot writes
    # a file and fsyncs.
    def append_many(name, clock, imaps, pop3s):
        c = Imap(addr, imaps, ctx)
        c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
        c.cmd("CREATE BenchAppend")
        clock.reset()
        total = 0
        for i in range(a.appends):
            m = crlf(msgs.message(i, i + 1))
            c.append("BenchAppend", "\\Seen", m)
            total += len(m)
        t = time.monotonic() - clock.t0
        logout(c)
        clock.t0 = time.monotonic() - t
        return a.appends, total
    if a.appends:
        measure("APPEND %d messages (LITERAL+), one at a time" % a.appends, append_many)

    # After a restart of both servers: postern starts without decrypted messages and user
    # state in memory (its article cache on disk stays, as Dovecot's files and indexes do);
    # then once more with the article cache emptied, so every article comes from INN.
    def restart(wipe_cache):
        stop_proc(pst.serve)
        pst.pump.join(timeout=10)
        pst.log.close()
        if wipe_cache:
            shutil.rmtree(os.path.join(pst.state, "articles"), ignore_errors=True)
        pst.start_serve()
        stop_proc(dov.proc)
        dov.start()
    if mbsync:
        restart(False)
        measure("mbsync after a restart of the server", run_mbsync)
        restart(True)
        measure("mbsync after a restart, postern's article cache emptied", run_mbsync)
    else:
        restart(False)

    # ---- IDLE
    idle_msg = msgs.message(a.messages, a.messages + 1)
    idle = {}
    for name, srv, imaps, pop3s, pids in servers:
        if name == "postern":
            pst.mark("IDLE x %d" % a.idle)
            hooks = IdleHooks(lambda: pst.deliver_one(idle_msg), lambda: (mem_total(pst_pids()), pst.procs()))
        else:
            hooks = IdleHooks(lambda: dov.write(a.messages, idle_msg, int(time.time())),
                              lambda: (mem_total(dov.pids()), None))
        k = a.idle if name == "postern" else a.idle_dovecot
        say("  IDLE: %d connections to %s" % (k, name))
        idle[name] = asyncio.run(idle_test(addr, imaps, ctx, k, hooks, timeout=120))
        o = idle[name]
        say("  IDLE %-8s setup %.1f s (%d open, %d failed), new mail seen by %d: first %s s, all %s s"
            % (name, o["setup"], o["open"], o["errors"], o["seen"], fmt_s(o["first"]), fmt_s(o["all"])))
        if o["errors"]:
            say("    first failure: %s" % o["first_error"])
    pst.mark("IDLE done")

    # ---- report
    print()
    print("== postern gateway vs Dovecot %s, %d messages (%.1f MB), one INN site on loopback, TLS on both"
          % (subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.split()[0],
             a.messages, total_mb))
    print("   delivery (postern lmtp, %d connections, for setup only): %.1f s, %.0f msg/s"
          % (LMTP_CONNS, t_deliver, a.messages / t_deliver))
    print("   %d CPUs; load average before measuring %s, after %s (other work on the host stretches wall times;"
          % (os.cpu_count(), " ".join(load0), " ".join(open("/proc/loadavg").read().split()[:3])))
    print("   the CPU columns count only the servers' own processes)")
    print()
    w = 52
    print("%-*s %10s %10s %8s %12s %12s" % (w, "operation (wall seconds; server CPU seconds)", "postern s", "dovecot s",
                                          "p/d", "postern CPU", "dovecot CPU"))
    print("-" * (w + 56))
    for op, res, cpu in rows:
        p, d = res.get("postern"), res.get("dovecot")
        print("%-*s %10s %10s %8s %12.2f %12.2f" % (w, op, fmt_s(p), fmt_s(d), ("%.2f" % (p / d)) if p and d else "-",
                                                 cpu["postern"], cpu["dovecot"]))
    ks = ("%d" % a.idle) if a.idle == a.idle_dovecot else ("%d / %d" % (a.idle, a.idle_dovecot))
    for label, key in (("IDLE: %s logins + SELECT + IDLE" % ks, "setup"),
                       ("IDLE: new mail, first connection saw EXISTS", "first"),
                       ("IDLE: new mail, median connection", "median"),
                       ("IDLE: new mail, all %s saw EXISTS" % ks, "all")):
        p, d = idle["postern"][key], idle["dovecot"][key]
        print("%-*s %10s %10s %8s" % (w, label, fmt_s(p), fmt_s(d), ("%.2f" % (p / d)) if p and d else "-"))
    print()
    print("IDLE: delivery itself took postern %.3f s (LMTP: encrypt + POST to INN), Dovecot %.3f s (Maildir "
          "rename); times above count from the start of delivery" % (idle["postern"]["deliver"], idle["dovecot"]["deliver"]))
    for name in ("postern", "dovecot"):
        o = idle[name]
        grow = (o["mem_idle"][0][0] - o["mem_open"][0][0], o["mem_idle"][0][1] - o["mem_open"][0][1])
        first = (o["mem_open"][0][0] - o["mem_before"][0][0], o["mem_open"][0][1] - o["mem_before"][0][1])
        n = max(o["open"] - 1, 1)
        print("IDLE %s: memory per idle connection: RSS %.1f KB, PSS %.1f KB (connections 2..%d; the first, "
              "which opened the account: RSS %.1f KB, PSS %.1f KB; all %d from before the first: RSS %.1f KB, "
              "PSS %.1f KB each)"
              % (name, grow[0] / n, grow[1] / n, o["open"], first[0], first[1], o["open"],
                 (grow[0] + first[0]) / max(o["open"], 1), (grow[1] + first[1]) / max(o["open"], 1)))
        if o["seen"] != o["open"] or o["errors"]:
            print("IDLE %s: %d of %d connections opened, %d saw the new mail within 120 s%s"
                  % (name, o["open"], a.idle if name == "postern" else a.idle_dovecot, o["seen"], "; first failure: " + o["first_error"] if o["errors"] else ""))

    print()
    print("throughput")
    for op, res, cpu in rows:
        if not any(k in op for k in ("pull", "POP3", "mbsync", "session", "APPEND")):
            continue
        for name in ("postern", "dovecot"):
            out = extra[op][name]
            n, nbytes = out[0], out[1]
            t = res[name]
            login = " (login %.3f s)" % out[2] if len(out) > 2 and out[2] is not None else ""
            print("  %-50s %-8s %6d msgs %7.1f MB %7.0f msg/s %6.1f MB/s%s"
                  % (op, name, n, nbytes / 1e6, n / t, nbytes / 1e6 / t, login))
            if len(out) > 3:
                print("  %-50s %-8s per message: %s" % ("", "", percentiles(out[3])))
    for op, res, cpu in rows:
        if op.startswith("resync:"):
            print("  %-66s %s" % (op, ", ".join("%s %d FETCH lines, %d bytes, %.3f s" % (
                name, extra[op][name][0], extra[op][name][1], res[name]) for name in ("postern", "dovecot"))))
    if a.logins:
        res = next(r for op, r, c in rows if op == LOGINS_OP)
        print("  %-66s %s" % (LOGINS_OP, ", ".join("%s %d logins %.0f/s%s" % (
            name, extra[LOGINS_OP][name][0], extra[LOGINS_OP][name][0] / res[name],
            " (%d clients failed)" % len(extra[LOGINS_OP][name][1]) if extra[LOGINS_OP][name][1] else "")
            for name in ("postern", "dovecot"))))
    if cold:
        print("  %-66s postern %d logins in %.2f s: %.1f/s (Argon2id %d passes, %d MiB; kdf_pool_memory %d MiB: "
              "%d at once)" % ("cold logins: default KDF, no session of the user yet", cold[0], cold[1],
                              cold[0] / cold[1], cold[2], cold[3] >> 20, cold[4] >> 20, max(1, cold[4] // cold[3])))
    hp, hd = extra["header fetch (Thunderbird), cold"]["postern"], extra["header fetch (Thunderbird), cold"]["dovecot"]
    print("  header fetch: postern %d responses / %d header octets, dovecot %d / %d"
          % (hp[0], hp[1], hd[0], hd[1]))
    cnt = extra["login + SELECT INBOX (first after start)"]
    print("  SELECT EXISTS: postern %s, dovecot %s" % (cnt["postern"], cnt["dovecot"]))

    print()
    print("memory (MB; postern: parent + vault + network VmRSS; dovecot: every process of the instance)")
    print("%-*s %12s %12s %12s %12s" % (w, "after operation", "postern", "peak", "dovecot", "peak"))
    for op, mm in memrows:
        print("%-*s %12.1f %12.1f %12.1f %12.1f" % (w, op, mm["postern"][0] / 1024, mm["postern"][1] / 1024,
                                                   mm["dovecot"][0] / 1024, mm["dovecot"][1] / 1024))
    for name in ("postern", "dovecot"):
        for when in ("mem_before", "mem_open", "mem_idle", "mem_after"):
            (rss, pss, nproc), roles = idle[name][when]
            k = a.idle if name == "postern" else a.idle_dovecot
            print("%-*s %-8s RSS %8.1f MB  PSS %8.1f MB  %5d processes%s"
                  % (w, {"mem_before": "before the IDLE connections", "mem_open": "with the first IDLE connection",
                         "mem_idle": "with %d IDLE connections" % k,
                         "mem_after": "with %d IDLE connections, after new mail" % k}[when],
                     name, rss / 1024, pss / 1024, nproc,
                     ("  [" + ", ".join("%s %.1f" % (r, v[0] / 1024) for r, v in sorted(roles.items())) + "]")
                     if roles else ""))
    print()
    print("postern processes after each operation: VmRSS / VmHWM MB, and CPU seconds during it")
    for op, procs, cpu in netmem:
        print("  %-*s %s" % (w, op, "  ".join("%s %.1f/%.1f %.2fs" % (r, v[0] / 1024, v[1] / 1024, cpu.get(r, 0))
                                             for r, v in sorted(procs.items()))))

    # ---- gateway log summary
    pst.log.flush()
    print()
    with open(pst.log_path, errors="replace") as f:
        log = f.readlines()
    levels = collections.Counter()
    notable = collections.Counter()
    for line in log:
        m = re.search(r"postern\[\d+\]: (\w+): (.*)", line)
        if not m:
            continue
        levels[m.group(1)] += 1
        if m.group(1) in ("error", "warning"):
            notable[re.sub(r"\d+", "N", m.group(2))] += 1
    print("gateway log: %d lines (%s)" % (len(log), ", ".join("%s %d" % kv for kv in sorted(levels.items()))))
    for text, n in notable.most_common(15):
        print("  %5d x %s" % (n, text[:150]))
    scans = [l.strip() for l in log if " scan: " in l]
    if scans:
        print("  mailbox scans: %d, e.g. %s" % (len(scans), scans[0][:160]))
    dlog = os.path.join(dov.d, "dovecot.log")
    if os.path.exists(dlog):
        dl = [l for l in open(dlog, errors="replace") if "Error" in l or "Warning" in l or "Fatal" in l]
        if dl:
            print("dovecot log: %d warnings/errors, e.g.:" % len(dl))
            for l in dl[:5]:
                print("  " + l.strip()[:200])


if __name__ == "__main__":
    main()
