#!/usr/bin/python3
"""IDLE fan-out: what one mailbox event costs the gateway while K sessions idle on another
user (issue 11, benchmark). Prints figures; asserts nothing about timing.

Before commit d27bd46 the network process walked every connection it had for every mailbox
event (a STORE that changed flags, new mail, an expunge: gw_view_changed() over
net->sessions); since then mailbox/ keeps watchers per account and an event touches only the
sessions that have that account's mailbox open. This runs both binaries in one run, on the
same INN site, users and messages:

  1. One INN site (tests/integration's factory, as every benchlib bench), a postern.conf with a
     cheap KDF (Argon2id 1 pass, 8 MiB), users A and B, MESSAGES (default 5) messages for A and
     one for B through `postern lmtp` (the new binary's: delivery is not measured).
  2. For each binary (old, then new) and each K (default 0, 1000, 10000): a fresh
     `postern serve` (conftest.Gateway: IMAPS on loopback, user nobody / vault_user daemon,
     max_connections_per_ip = 0, max_connections = max K + 200, long idle/preauth timeouts);
     K connections logged in as B with INBOX selected and in IDLE (asyncio, in a thread of
     its own); then
       - background: CPU of the gateway over QUIET seconds (default 2) with nothing happening
         (the 1 s poll of the watched groups and whatever else runs on its own);
       - STORE: one session of A sends EVENTS (default 2000) `UID STORE 1 +FLAGS.SILENT
         (\\Flagged)` and `-FLAGS.SILENT` alternately, one at a time (after 50 unmeasured):
         wall time per command (p50, p99, mean) and CPU per event of the network process
         (utime + stime from /proc/PID/stat, all threads, 10 ms ticks; and the sum of
         /proc/PID/task/*/schedstat, ns) and of every live process of `postern serve`
         (schedstat; stat too); the background rate times the run's duration is taken off in
         the net-bg column;
       - new mail: A opens one IDLE session; DELIVERIES (default 5) times one message to A
         through LMTP, and the time from the start of the delivery until A's IDLE shows
         `* n EXISTS` (the gateway polls INN once a second, so this is mostly the poll's phase;
         the delivery's own time is printed too). The K sessions of B stay open throughout.
  3. Dovecot as an anchor (unless --no-dovecot): bench_gateway.py's private instance (own
     config, base_dir, foreground; the system service is never touched), the same two users in
     a passwd-file, the same messages in Maildirs, the same K idle sessions of B -- but at most
     --dovecot-max-idle (default 1000) of them, since Dovecot runs one imap process per session
     (10,000 take minutes and GBs) -- the same STOREs by A, and new mail as a Maildir file
     written into A's new/ (no LMTP: the time is inotify + IDLE). Its CPU is the whole
     instance's (schedstat of the live processes; the background rate from stat, which
     counts the processes that ended meanwhile).

Table: server, K, CPU per event, wall per event; then per server the ratio of the largest K's
figures to K=0's (an event cost that does not grow with the connections stays near 1, within
the host's noise: on a busy 2-core host the new build's rows move between about 15 and 50 us
from run to run), and the growth old vs new in us per event and ns per idle session.

usage: sudo /usr/bin/python3 bench/bench_fanout.py [--old-bin PATH] [--new-bin PATH] [--idle K1,K2,..]
           [--events N] [--deliveries D] [--no-dovecot] [--dovecot-max-idle K] [--keep]
  smoke: sudo /usr/bin/python3 bench/bench_fanout.py --idle 0,200 --events 200
Binaries (Release builds): --old-bin / POSTERN_OLD_BIN, default /work/wt-old/build-rel/cli/postern
(a worktree of 6ab983d, the commit before d27bd46); --new-bin / POSTERN_NEW_BIN (or POSTERN_BIN),
default build-rel/cli/postern of this tree. Needs root (INN, the gateway's privilege drop,
Dovecot; installs dovecot-imapd/dovecot-pop3d with apt-get if missing, as bench_gateway does).
"""
import argparse
import asyncio
import os
import re
import resource
import ssl
import statistics
import sys
import threading
import time

from benchlib import (Bench, PosternEnv, add_bin_args, add_users, deliver, describe, ensure_dovecot, header, lmtp_message,
                      lmtp_server, pct)
import conftest  # noqa: E402  (benchlib put tests/integration on sys.path)
import bench_gateway as bg  # noqa: E402  (its fast IMAP client, /proc CPU helpers and Dovecot instance)

USER_A = "a.fanout@example.org"
USER_B = "b.fanout@example.org"
PASSWORD = "bench fanout password 1"
WARMUP = 50


def csv_ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


# ---------------------------------------------------------------- CPU of the gateway

def tree_ns(root):
    """CPU seconds (schedstat, ns resolution) of every thread of every live process under root."""
    total = 0.0
    for p in bg.children_of(root):
        total += proc_cpu(p)[1]
    return total


def proc_cpu(pid):
    """(utime + stime seconds from /proc/PID/stat: every thread; schedstat ns summed over
    /proc/PID/task/*: the same with ns resolution)."""
    stat = bg.cpu_of(pid)
    ns = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return stat, ns / 1e9


class PosternServer:
    """One `postern serve` of one binary (conftest.Gateway), the network process found as the
    child running as nobody."""

    name = "postern"

    def __init__(self, label, env, root, addr, settings):
        self.label = label
        self.gw = conftest.Gateway(env, root, addr, settings)
        self.addr, self.port = addr, self.gw.imaps_port

    def start(self):
        self.gw.start(timeout=30)
        deadline = time.monotonic() + 10
        while len(self.gw.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        self.net = None
        for p in self.gw.children():
            try:
                if os.stat("/proc/%d" % p).st_uid == nobody:
                    self.net = p
            except OSError:
                pass
        self.ctx = self.gw.ssl_context()

    def cpu(self):
        """{net_stat, net_ns, tree_ns, tree_stat} seconds."""
        s, ns = proc_cpu(self.net) if self.net else (0.0, 0.0)
        return {"net_stat": s, "net_ns": ns, "tree_ns": tree_ns(self.gw.proc.pid),
                "tree_stat": bg.cpu_seconds(self.gw.proc.pid)}

    def new_mail(self, lm, i):
        code, text, _ = deliver(lm, USER_A, lmtp_message(i, 3000, "fanout-new"))
        if code != 250:
            raise RuntimeError("LMTP to A: %d %s" % (code, text))

    def stop(self):
        self.gw.stop(timeout=60)

    def log_problems(self):
        text = self.gw.log_text()
        bad = [l for l in text.splitlines() if ": error: " in l or ": warning: " in l]
        return len(text.splitlines()), bad


class DovecotServer:
    """bench_gateway's private Dovecot with users A and B (passwd-file, Maildirs)."""

    name = "dovecot"
    label = "dovecot"

    def __init__(self, work, addr, idle_max, n_a, n_b):
        self.cert, self.key = bg.make_cert(work, addr)
        self.dov = bg.Dovecot(work, addr, self.cert, self.key, idle_max)
        self.addr, self.port = addr, self.dov.imaps
        with open(os.path.join(self.dov.d, "passwd"), "w") as f:
            for u in (USER_A, USER_B):
                f.write("%s:{PLAIN}%s\n" % (u, PASSWORD))
        self.maildirs = {}
        for u in (USER_A, USER_B):
            home = os.path.join(self.dov.d, "home", u)
            md = os.path.join(home, "Maildir")
            for p in (home, md, *(os.path.join(md, s) for s in ("cur", "new", "tmp"))):
                os.makedirs(p, mode=0o700, exist_ok=True)
                os.chown(p, self.dov.uid, self.dov.gid)
            self.maildirs[u] = md
        now = int(time.time())
        for i in range(n_a):
            self.write(USER_A, i, now - 1000 + i)
        for i in range(n_b):
            self.write(USER_B, i, now - 1000 + i)
        self.n = 1000

    def write(self, user, i, when):
        msg = (b"From: Sender <sender@example.net>\nTo: %s\nSubject: fanout %d\nMessage-ID: <fanout.%d.%d@example.net>\n"
               b"\n" % (user.encode(), i, i, time.time_ns())) + os.urandom(1500).hex().encode() + b"\n"
        self.dov.maildir = self.maildirs[user]
        self.dov.write(i, msg, when)

    def start(self):
        self.dov.start()
        self.ctx = ssl.create_default_context(cafile=self.cert)
        self.ctx.check_hostname = False

    def cpu(self):
        return {"net_stat": None, "net_ns": None, "tree_ns": tree_ns(self.dov.proc.pid),
                "tree_stat": bg.cpu_seconds(self.dov.proc.pid)}

    def new_mail(self, lm, i):
        self.n += 1
        self.write(USER_A, self.n, int(time.time()))

    def stop(self):
        bg.stop_proc(self.dov.proc)

    def log_problems(self):
        p = os.path.join(self.dov.d, "dovecot.log")
        lines = open(p, errors="replace").read().splitlines() if os.path.exists(p) else []
        return len(lines), [l for l in lines if ("Error" in l or "Fatal" in l or "Warning" in l)
                            and "Killed with signal 15" not in l]


# ---------------------------------------------------------------- K idle sessions of B (asyncio)

class Idlers:
    """K connections of user B, logged in, INBOX selected, in IDLE, held by an event loop in a
    thread of its own (nothing arrives on them: they idle on another user)."""

    def __init__(self, addr, port, ctx):
        self.addr, self.port, self.ctx = addr, port, ctx
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conns = []

    def run(self, coro, timeout=None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open_one(self, sem, progress):
        async def until(r, pred):
            while True:
                line = await r.readline()
                if not line:
                    raise EOFError("closed")
                if pred(line):
                    return line

        for attempt in range(6):
            async with sem:
                r, w = await asyncio.open_connection(self.addr, self.port, ssl=self.ctx, server_hostname="localhost",
                                                     limit=1 << 16)
                try:
                    g = await r.readline()
                    if not g.startswith(b"* OK"):
                        raise RuntimeError("greeting: %r" % g)
                    w.write(('a LOGIN "%s" "%s"\r\n' % (USER_B, PASSWORD)).encode())
                    line = await until(r, lambda l: l.startswith(b"a "))
                    if not line.startswith(b"a OK"):
                        raise RuntimeError("LOGIN: %r" % line)
                    w.write(b"b SELECT INBOX\r\n")
                    line = await until(r, lambda l: l.startswith(b"b "))
                    if not line.startswith(b"b OK"):
                        raise RuntimeError("SELECT: %r" % line)
                    w.write(b"c IDLE\r\n")
                    await until(r, lambda l: l.startswith(b"+"))
                    progress[0] += 1
                    return r, w
                except (RuntimeError, EOFError, OSError) as e:
                    w.close()
                    if attempt == 5:
                        raise
                    last = e
            await asyncio.sleep(0.5 * (attempt + 1))
        raise last

    async def _open(self, k):
        sem = asyncio.Semaphore(32)
        progress = [0]

        async def report():
            t0 = time.monotonic()
            while True:
                await asyncio.sleep(15)
                print("    %d/%d idle sessions of B open (%.0f s)" % (progress[0], k, time.monotonic() - t0), flush=True)
        rep = asyncio.create_task(report())
        res = await asyncio.gather(*[self._open_one(sem, progress) for _ in range(k)], return_exceptions=True)
        rep.cancel()
        self.conns = [x for x in res if not isinstance(x, BaseException)]
        errs = [x for x in res if isinstance(x, BaseException)]
        return len(self.conns), errs

    def open(self, k):
        t0 = time.monotonic()
        n, errs = self.run(self._open(k))
        return n, errs, time.monotonic() - t0

    async def _alive(self):
        return sum(1 for r, w in self.conns if not w.is_closing() and not r.at_eof())

    def alive(self):
        return self.run(self._alive())

    async def _close(self):
        for r, w in self.conns:
            try:
                w.write(b"DONE\r\nd LOGOUT\r\n")
            except Exception:
                pass
        await asyncio.sleep(0.5)
        for r, w in self.conns:
            w.close()
        await asyncio.gather(*[asyncio.wait_for(w.wait_closed(), 10) for r, w in self.conns], return_exceptions=True)

    def close(self):
        try:
            self.run(self._close(), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


# ---------------------------------------------------------------- one server, one K

def login(srv, user):
    c = bg.Imap(srv.addr, srv.port, srv.ctx, timeout=120)
    c.cmd('LOGIN "%s" "%s"' % (user, PASSWORD))
    st = c.cmd("SELECT INBOX")
    return c, st["exists"]


def store_run(srv, n):
    """A's session: n flag changes one at a time; (latencies, cpu before, cpu after, EXISTS)."""
    c, exists = login(srv, USER_A)
    if not exists:
        raise RuntimeError("%s: A's INBOX is empty" % srv.label)
    for i in range(WARMUP):
        c.cmd("UID STORE 1 %sFLAGS.SILENT (\\Flagged)" % "+-"[i % 2])
    lat = []
    c0, t0 = srv.cpu(), time.monotonic()
    for i in range(n):
        t = time.monotonic()
        c.cmd("UID STORE 1 %sFLAGS.SILENT (\\Flagged)" % "+-"[i % 2])
        lat.append(time.monotonic() - t)
    wall = time.monotonic() - t0
    c1 = srv.cpu()
    bg.logout(c)
    return lat, wall, c0, c1, exists


def new_mail_run(srv, lm, d, base):
    """A idles in one session; d times: new mail for A, time until the IDLE shows EXISTS."""
    c, exists = login(srv, USER_A)
    c.send(b"i IDLE\r\n")
    line = c.readline()
    if not line.startswith(b"+"):
        raise RuntimeError("IDLE: %r" % line)
    seen, delivery = [], []
    for j in range(d):
        got = threading.Event()
        out = {}

        def reader():
            try:
                while True:
                    l = c.readline()
                    m = re.match(rb"\* (\d+) EXISTS", l)
                    if m and int(m.group(1)) > exists:
                        out["t"], out["n"] = time.monotonic(), int(m.group(1))
                        return
            except Exception as e:  # timeout or closed
                out["err"] = e
            finally:
                got.set()
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        t0 = time.monotonic()
        srv.new_mail(lm, base + j)
        delivery.append(time.monotonic() - t0)
        got.wait(30)
        th.join(timeout=1)
        if "t" not in out:
            print("    new mail %d: not seen within 30 s (%r)" % (j, out.get("err")), flush=True)
            break
        seen.append(out["t"] - t0)
        exists = out["n"]
        time.sleep(0.3 + 0.37 * j % 1.0)  # spread the deliveries over the poll's phase
    try:
        c.send(b"DONE\r\n")
        bg.logout(c)
    except OSError:
        pass
    return seen, delivery


def measure(srv, k, a, lm, base):
    print("  %s, K=%d: starting" % (srv.label, k), flush=True)
    srv.start()
    idl = Idlers(srv.addr, srv.port, srv.ctx)
    row = {"server": srv.label, "k": k}
    try:
        n_open, errs, setup = idl.open(k)
        row.update(open=n_open, setup=setup)
        print("    %d/%d idle sessions of B open in %.1f s%s" % (n_open, k, setup,
              ("; %d failed, first: %r" % (len(errs), errs[0])) if errs else ""), flush=True)
        c0 = srv.cpu()
        time.sleep(a.quiet)
        c1 = srv.cpu()
        row["bg"] = {key: (None if c0[key] is None else (c1[key] - c0[key]) / a.quiet) for key in c0}
        lat, wall, c0, c1, exists = store_run(srv, a.events)
        row["exists"] = exists
        row["lat"] = sorted(lat)
        row["wall"] = wall
        row["cpu"] = {key: (None if c0[key] is None else (c1[key] - c0[key]) / a.events) for key in c0}
        # the network process's background (schedstat); Dovecot's whole instance from stat, which
        # counts the processes that exit meanwhile (the master reaps them)
        main = "net_ns" if c0["net_ns"] is not None else "tree_ns"
        bgk = "net_ns" if c0["net_ns"] is not None else "tree_stat"
        row["bgk"] = bgk
        row["cpu_adj"] = row["cpu"][main] - row["bg"][bgk] * wall / a.events
        print("    STORE x %d: wall p50 %.0f us, p99 %.0f us; CPU/event: tree %.1f us (schedstat) %.1f us (stat)%s; "
              "background %.2f ms/s"
              % (a.events, pct(row["lat"], 0.5) * 1e6, pct(row["lat"], 0.99) * 1e6, row["cpu"]["tree_ns"] * 1e6,
                 row["cpu"]["tree_stat"] * 1e6,
                 "" if row["cpu"]["net_ns"] is None else ", network process %.1f us (schedstat) %.1f us (stat)"
                 % (row["cpu"]["net_ns"] * 1e6, row["cpu"]["net_stat"] * 1e6), row["bg"][bgk] * 1e3), flush=True)
        if a.deliveries:
            seen, dl = new_mail_run(srv, lm, a.deliveries, base)
            row["seen"], row["delivery"] = sorted(seen), dl
            print("    new mail x %d: EXISTS after %s ms (delivery itself %s ms)"
                  % (len(seen), ", ".join("%.0f" % (x * 1e3) for x in seen),
                     ", ".join("%.0f" % (x * 1e3) for x in dl)), flush=True)
        row["alive"] = idl.alive()
        if row["alive"] != n_open:
            print("    only %d of the %d idle sessions of B still open at the end" % (row["alive"], n_open), flush=True)
    finally:
        idl.close()
        srv.stop()
        nlines, bad = srv.log_problems()
        row["log"] = (nlines, len(bad))
        if bad:
            print("    log: %d warnings/errors, e.g. %s" % (len(bad), bad[0][:200]), flush=True)
    return row


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_bin_args(ap)
    ap.add_argument("--idle", type=csv_ints, default=[0, 1000, 10000], help="K values, comma-separated")
    ap.add_argument("--events", type=int, default=2000, help="STOREs per run")
    ap.add_argument("--messages", type=int, default=5, help="messages for A")
    ap.add_argument("--deliveries", type=int, default=5, help="new-mail events per run (0: none)")
    ap.add_argument("--quiet", type=float, default=2.0, help="seconds of background CPU measured per run")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--dovecot-max-idle", type=int, default=1000)
    ap.add_argument("--only", choices=["old", "new"], help="one binary only")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    bins = [("old", a.old_bin), ("new", a.new_bin)]
    if a.only:
        bins = [x for x in bins if x[0] == a.only]
    for label, path in bins:
        if not os.access(path, os.X_OK):
            sys.exit("bench_fanout: %s binary %s not built (cmake -S TREE -B TREE/build-rel -DCMAKE_BUILD_TYPE=Release "
                     "&& cmake --build TREE/build-rel -j2 --target postern)" % (label, path))
    os.environ["POSTERN_BIN"] = a.new_bin  # Bench and conftest's helpers take it from there
    kmax = max(a.idle)
    want = max(65536, 3 * kmax + 4096)  # this process holds K client sockets, the gateway K more
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    dovecot = not a.no_dovecot and ensure_dovecot()

    with Bench("bench-fanout", a.keep) as b:
        site = b.sites(name="fanout")
        env = b.env([site], 1)
        header("IDLE fan-out: cost of one mailbox event with K sessions idling on another user",
               old=describe(a.old_bin) if a.only != "new" else "-",
               new=describe(a.new_bin) if a.only != "old" else "-",
               site="%s %s:%d" % (site.name, site.addr, site.port),
               runs="K in %s; %d STOREs by A one at a time; %d new mails to A per run" % (
                   ",".join(map(str, a.idle)), a.events, a.deliveries),
               dovecot=("at most %d idle sessions" % a.dovecot_max_idle) if dovecot else "no")
        add_users(env, [USER_A, USER_B], password=PASSWORD, progress=0)
        srv_lmtp = lmtp_server(b, env, os.path.join(b.root, "lmtp.sock"))
        lm = srv_lmtp.connect()
        for i in range(a.messages):
            code, text, _ = deliver(lm, USER_A, lmtp_message(i, 3000, "fanout-a"))
            if code != 250:
                sys.exit("LMTP to A: %d %s" % (code, text))
        code, text, _ = deliver(lm, USER_B, lmtp_message(0, 3000, "fanout-b"))
        if code != 250:
            sys.exit("LMTP to B: %d %s" % (code, text))

        settings = {"max_connections_per_ip": 0, "max_connections": kmax + 200, "idle_timeout": 7200,
                    "preauth_timeout": 600, "preauth_deadline": 600}
        rows, base = [], 1000
        try:
            for label, path in bins:
                e = PosternEnv(env.dir, env.site, path)
                e.conf = env.conf
                for k in a.idle:
                    d = os.path.join(b.root, "gw-%s-%d" % (label, k))
                    os.makedirs(d, mode=0o755)
                    rows.append(measure(PosternServer(label, e, d, site.addr, settings), k, a, lm, base))
                    base += 100
            if dovecot:
                ino = "/proc/sys/fs/inotify/max_user_instances"  # as bench_gateway: one per imap process
                want_ino = 4 * a.dovecot_max_idle + 256
                old_ino = int(open(ino).read())
                if old_ino < want_ino:
                    with open(ino, "w") as f:
                        f.write(str(want_ino))
                try:
                    for k in sorted(set(min(k, a.dovecot_max_idle) for k in a.idle)):
                        d = os.path.join(b.root, "dovecot-%d" % k)
                        os.makedirs(d, mode=0o755)
                        rows.append(measure(DovecotServer(d, site.addr, a.dovecot_max_idle, a.messages, 1), k, a,
                                            lm, 0))
                finally:
                    if old_ino < want_ino:
                        with open(ino, "w") as f:
                            f.write(str(old_ino))
        finally:
            try:
                lm.quit()
            except Exception:
                pass
        report(rows, a)


def report(rows, a):
    us = lambda x: "-" if x is None else "%.1f" % (x * 1e6)
    print()
    print("RESULTS: %d UID STOREs (+/-FLAGS.SILENT \\Flagged, alternating) by A one at a time per run; "
          "K sessions of B idle; load average now %s, %d CPUs"
          % (a.events, " ".join(open("/proc/loadavg").read().split()[:3]), os.cpu_count()))
    print("  CPU per event, us: net = the gateway's network process, all threads (schedstat ns; stat: utime+stime "
          "in 10 ms ticks); -bg = less its background rate over the run; tree = every live process of the server "
          "(schedstat); wall = the client's round trip per STORE, us")
    print("  %-8s %6s %6s %8s %8s %8s %8s %9s %8s %8s %8s  %s" % (
        "server", "K", "open", "net", "net stat", "net-bg", "tree", "bg ms/s", "wall p50", "wall p99", "wall avg",
        "new mail to A: IDLE saw EXISTS after, ms (median / max; delivery median)"))
    for r in rows:
        lat = r.get("lat") or []
        if not lat:
            continue
        nm = "-"
        if r.get("seen"):
            nm = "%.0f / %.0f; %.0f" % (statistics.median(r["seen"]) * 1e3, max(r["seen"]) * 1e3,
                                       statistics.median(r["delivery"]) * 1e3)
        print("  %-8s %6d %6d %8s %8s %8s %8s %9.2f %8.0f %8.0f %8.0f  %s" % (
            r["server"], r["k"], r.get("open", 0), us(r["cpu"]["net_ns"]), us(r["cpu"]["net_stat"]),
            us(r["cpu_adj"]), us(r["cpu"]["tree_ns"]), r["bg"][r["bgk"]] * 1e3, pct(lat, 0.5) * 1e6,
            pct(lat, 0.99) * 1e6, statistics.mean(lat) * 1e6, nm))
    print()
    for name in ("old", "new", "dovecot"):
        rs = [r for r in rows if r["server"] == name and r.get("lat")]
        if len(rs) < 2:
            continue
        lo, hi = min(rs, key=lambda r: r["k"]), max(rs, key=lambda r: r["k"])
        key = "net_ns" if lo["cpu"]["net_ns"] is not None else "tree_ns"
        print("  %-8s K=%d vs K=%d: CPU per event x%.2f (%.1f -> %.1f us, %s), wall p50 x%.2f (%.0f -> %.0f us)"
              % (name, hi["k"], lo["k"], hi["cpu"][key] / lo["cpu"][key] if lo["cpu"][key] else float("nan"),
                 lo["cpu"][key] * 1e6, hi["cpu"][key] * 1e6, "network process" if key == "net_ns" else "whole instance",
                 pct(hi["lat"], 0.5) / pct(lo["lat"], 0.5), pct(lo["lat"], 0.5) * 1e6, pct(hi["lat"], 0.5) * 1e6))
    old = {r["k"]: r for r in rows if r["server"] == "old" and r.get("lat")}
    new = {r["k"]: r for r in rows if r["server"] == "new" and r.get("lat")}
    ks = sorted(set(old) & set(new))
    if len(ks) >= 2:
        k0, k1 = ks[0], ks[-1]
        d_old = old[k1]["cpu"]["net_ns"] - old[k0]["cpu"]["net_ns"]
        d_new = new[k1]["cpu"]["net_ns"] - new[k0]["cpu"]["net_ns"]
        print("  growth of the network process's CPU per event from K=%d to K=%d: old %+.1f us (%+.2f ns per idle "
              "session), new %+.1f us (%+.2f ns per idle session)"
              % (k0, k1, d_old * 1e6, d_old * 1e9 / max(k1 - k0, 1), d_new * 1e6, d_new * 1e9 / max(k1 - k0, 1)))


if __name__ == "__main__":
    main()
