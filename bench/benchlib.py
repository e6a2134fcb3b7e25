"""Shared machinery of the issue-10 benchmarks (bench_lag.py, bench_lmtp_copies.py,
bench_repair.py). Sites, meshes and postern.conf come from the integration tests' own helpers
(tests/integration/conftest.py: slot reservation on 127.0.0.20-239 with a lock, so that a
parallel test run never takes the same address; InnSite; multi_site_env), the LMTP server and
transaction from test_lmtp.py and the black hole from test_dead_site.py: the benchmarks run
exactly what the tests run, only more of it, and print figures."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402
from conftest import PosternEnv, multi_site_env, postern_bin, stop_all  # noqa: E402,F401
from test_dead_site import BlackHole  # noqa: E402,F401
from test_lmtp import DELIVERED, Server, stuff, transaction  # noqa: E402,F401

__all__ = ["Bench", "BlackHole", "CountingProxy", "PosternEnv", "Server", "add_users", "check", "deliver", "describe",
           "add_bin_args", "ensure_dovecot",
           "header", "lmtp_message", "lmtp_server", "multi_site_env", "pct", "set_min_copies", "sites_line"]


def _sigterm(signum, frame):
    raise KeyboardInterrupt


class Bench:
    """A work directory under /tmp with INN sites made by conftest's factory; with-block:
    on leaving it (normally, on an exception, Ctrl-C or SIGTERM) every process registered with
    `own()` is terminated, every site stopped and its slot released, the directory removed
    (unless keep)."""

    def __init__(self, name, keep=False):
        if os.geteuid() != 0:
            sys.exit("%s: run as root (it starts INN sites)" % name)
        if not os.path.exists("/usr/lib/news/bin/innd"):
            sys.exit("%s: INN is not installed (scripts/install-deps.sh)" % name)
        self.name, self.keep, self.procs = name, keep, []
        self.bin = str(postern_bin())
        if not os.access(self.bin, os.X_OK):
            sys.exit("%s: %s not built (cmake -S . -B build && cmake --build build -j2)" % (name, self.bin))

    def __enter__(self):
        signal.signal(signal.SIGTERM, _sigterm)
        self.root = tempfile.mkdtemp(prefix="postern-%s-" % self.name, dir="/tmp")
        os.chmod(self.root, 0o755)  # user news must reach the site directories
        self.sites = conftest._SiteFactory(conftest.Path(self.root))
        return self

    def own(self, proc):
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        stop_all(self.sites.made)
        for s in self.sites.made:
            s.release()
        if self.keep:
            print("kept %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return False

    def env(self, sites, min_copies, dirname="postern", extra=""):
        """postern.conf naming `sites` (the first preferred) with min_copies; authority not
        initialised yet (call init)."""
        d = os.path.join(self.root, dirname)
        os.makedirs(d, mode=0o755)
        e = multi_site_env(d, sites)
        set_min_copies(e, min_copies)
        if extra:
            e.conf.write_text(e.conf.read_text() + extra)
        return e


def add_bin_args(ap):
    """--old-bin and --new-bin for the benchmarks that run the build before a change beside
    this one (the old one from a worktree at the commit before it, bench/README.md)."""
    ap.add_argument("--old-bin", default=os.environ.get("POSTERN_OLD_BIN", "/work/wt-old/build-rel/cli/postern"))
    ap.add_argument("--new-bin", default=os.environ.get("POSTERN_NEW_BIN") or os.environ.get("POSTERN_BIN")
                    or os.path.join(ROOT, "build-rel", "cli", "postern"))


def ensure_dovecot():
    """Dovecot's imap and pop3 binaries, installed with apt-get if missing (the system service
    is never configured or started: the benchmarks run a private instance). False if they
    cannot be had: the benchmark then runs without its anchor."""
    if shutil.which("dovecot") and os.path.exists("/usr/lib/dovecot/imap") and os.path.exists("/usr/lib/dovecot/pop3"):
        return True
    print("installing dovecot-imapd dovecot-pop3d (the system service is not configured by this bench)", flush=True)
    r = subprocess.run(["apt-get", "install", "-y", "dovecot-imapd", "dovecot-pop3d"], stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0:
        print("  apt-get failed: no Dovecot anchor", flush=True)
        return False
    return True


def set_min_copies(env, n):
    env.conf.write_text(re.sub(r"(?m)^min_copies = \d+$", "min_copies = %d" % n, env.conf.read_text()))


def check(r, what):
    if r.returncode != 0:
        raise SystemExit("%s failed (exit %d):\n%s%s" % (what, r.returncode, r.stdout.decode(errors="replace"),
                                                         r.stderr.decode(errors="replace")))
    return r


def add_users(env, users, password="bench password 1", progress=200):
    check(env(["authority", "init"]), "authority init")
    t0 = time.monotonic()
    for i, u in enumerate(users):
        check(env(["user", "add", u, "--password-stdin"], input=password + "\n"), "user add " + u)
        if progress and (i + 1) % progress == 0:
            print("  %d/%d users added (%.0f s)" % (i + 1, len(users), time.monotonic() - t0), flush=True)


def lmtp_server(b, env, path, conf=None):
    """test_lmtp's Server (which drains lmtp's stderr), owned by Bench b; the last lines are
    in server.log_tail."""
    srv = Server(env, path, conf=conf)
    b.own(srv.proc)

    class Tail:
        def __iter__(self):
            return iter([l.rstrip("\n") for l in srv.lines[-20:]])

    srv.log_tail = Tail()
    return srv


def lmtp_message(i, size, tag="bench"):
    """A CRLF, dot-stuffed message of about `size` bytes of base64 text (LMTP's wire form)."""
    import base64
    body = base64.encodebytes(os.urandom(max(size, 4) * 3 // 4)).replace(b"\n", b"\r\n")
    head = ("From: Sender <sender@example.net>\r\nSubject: %s %d\r\nMessage-ID: <%s.%d.%d@example.net>\r\n\r\n"
            % (tag, i, tag, i, time.time_ns())).encode()
    return stuff(head + body)


def deliver(lm, user, raw):
    """One LMTP transaction; returns (code, reply text, Message-ID or None)."""
    _, replies = transaction(lm, [user], raw)
    if not replies:
        return 550, "recipient refused", None
    code, text = replies[0]
    text = text.decode(errors="replace")
    m = DELIVERED.search(text)
    return code, text, m.group(1) if m else None


def describe(bin):
    """postern's version and the commit it was built from (best effort: the binary's tree)."""
    v = subprocess.run([bin, "--version"], capture_output=True, text=True).stdout.strip() or "?"
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(bin))))
    c = subprocess.run(["git", "-C", tree, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return "%s (%s, commit %s)" % (v, bin, c.stdout.strip() or "?")


def header(title, **setup):
    load = open("/proc/loadavg").read().split()[:3]
    print("== %s" % title)
    for k, v in setup.items():
        print("  %-12s %s" % (k, v))
    print("  %-12s %s (load average %s, %d CPUs)" % ("host", os.uname().nodename, " ".join(load), os.cpu_count()),
          flush=True)


def sites_line(sites):
    return ", ".join("%s %s:%d" % (s.name, s.addr, s.port) for s in sites)


def pct(values, q):
    """q-quantile of sorted values (nearest rank)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(round(q * len(values) + 0.5)) - 1))]


class CountingProxy:
    """A TCP relay in front of one NNTP site that counts the client's commands by verb (and
    connections): what a postern command costs that site. Lines of an article after POST,
    IHAVE or TAKETHIS (up to the terminating ".") are data, not commands. Point a [site] entry's
    port at `port` to use it."""

    def __init__(self, addr, target_port):
        import socket
        import threading
        self.addr, self.target = addr, (addr, target_port)
        self.lock, self.counts, self.connections = threading.Lock(), {}, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.counts, self.connections = {}, 0

    def snapshot(self):
        with self.lock:
            return dict(self.counts), self.connections

    def _accept(self):
        import socket
        import threading
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=30)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.connections += 1
            for sk in (c, s):
                sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(s, c, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(c, s, True), daemon=True).start()

    def _pump(self, src, dst, count):
        import socket
        buf, data = b"", False
        try:
            while True:
                chunk = src.recv(1 << 16)
                if not chunk:
                    break
                dst.sendall(chunk)
                if not count:
                    continue
                buf += chunk
                *lines, buf = buf.split(b"\r\n")
                for line in lines:
                    if data:
                        data = line != b"."
                        continue
                    verb = line.split(b" ", 1)[0].upper().decode(errors="replace")
                    if verb == "LIST" and b" " in line:  # LIST COUNTS, LIST ACTIVE, ...
                        verb = "LIST " + line.split()[1].upper().decode(errors="replace")
                    with self.lock:
                        self.counts[verb] = self.counts.get(verb, 0) + 1
                    data = verb in ("POST", "IHAVE", "TAKETHIS")
        except OSError:
            pass
        finally:
            for sk in (src, dst):
                try:
                    sk.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.sock.close()
