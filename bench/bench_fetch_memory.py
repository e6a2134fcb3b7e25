#!/usr/bin/python3
"""Peak RSS under 4 concurrent 100 MB FETCHes (issue 14, item 6, benchmark): how much memory
the gateway's network process takes while M sessions (default 4) each fetch a different large
message at the same moment, the build before the plaintext budget against this one, Dovecot
as an anchor. Prints figures; asserts nothing about timing (the bodies are checked byte for
byte).

Before b776887 / cc99e74 nothing bounded the decrypted messages in the network process: each
session's load held the article, the plaintext, its MIME tree and the copy in the session's
output buffer, and four 100 MB FETCHes at once took it to 926 MB. Now a load reserves what it
will hold in one budget for every session together ([gateway] plaintext_budget, MiB, default
256) before it reads the article, and FETCH output refers to the decrypted message instead of
copying it. This runs both binaries in one run, on the same INN site, user and messages:

  1. One INN site (tests/integration's factory, as every benchlib bench), a postern.conf with a
     cheap KDF and [deliver] max_message_size above the messages (2 x S + 16 MiB), one user,
     MESSAGES (default 4) messages of SIZE MB (default 100): a few headers and a random base64
     body (76-character lines), delivered with `postern deliver --to USER` (the new binary's;
     delivery is timed but is not what is measured). The sha256 of each message with CRLF line
     ends is what every FETCH must return.
  2. For each binary (old, then new): a fresh `postern serve` (conftest.Gateway: IMAPS on
     loopback, user nobody / vault_user daemon, its own empty state_dir and article cache; the
     defaults otherwise, plaintext_budget only for the new binary and only with --budget-mb:
     the old one does not know the key). The network process is the pid of serve's log line
     "postern[PID]: info: network process ready". MESSAGES sessions log in and EXAMINE INBOX;
     then per round:
       - `echo 5 > /proc/PID/clear_refs` (VmHWM starts again from what is resident now) and
         VmRSS read: the baseline;
       - every session sends `FETCH n (BODY.PEEK[])` for its own n at the same moment
         (threads behind a barrier) and hashes the literal as it arrives;
       - VmHWM of the network process when all bodies are in: the peak; wall time from the
         barrier until the last body's tagged OK; VmRSS afterwards.
     Round 1 ("cold") reads the articles from INN; round 2 ("again", unless --rounds 1) runs
     the same FETCHes in the same sessions: with the articles in the on-disk article cache
     if they got there -- an envelope larger than the cache writer's queue (QUEUE_MAX in
     mailbox/artcache.c, 64 MiB) is never cached, so at the default 100 MB round 2 reads INN
     again; the cache's size on disk is printed after the rounds -- and with what the
     process still holds decrypted. After the rounds every session logs out and VmRSS is
     read again one second later.
  3. Dovecot as an anchor (unless --no-dovecot): bench_gateway.py's private instance (own
     config, base_dir, foreground; the system service is never touched), the same messages as
     Maildir files (LF, as a delivery writes them; Dovecot sends CRLF), the same sessions and
     rounds. Its figure is the sum over the imap processes serving the sessions (one per
     session; clear_refs on each first); the imap-login processes, which proxy TLS in
     high-performance mode, are printed next to it.

Table: server, round, RSS before, peak (VmHWM), peak above before, wall time, bodies intact.

usage: sudo /usr/bin/python3 bench/bench_fetch_memory.py [--old-bin PATH] [--new-bin PATH] [--only old|new]
           [--messages M] [--size-mb S] [--budget-mb B] [--rounds 1|2] [--no-dovecot] [--keep]
  smoke: sudo /usr/bin/python3 bench/bench_fetch_memory.py --size-mb 10
Binaries (Release builds): --old-bin / POSTERN_OLD_BIN, default /work/wt-old/build-rel/cli/postern
(a worktree of 6ab983d, before the plaintext budget); --new-bin / POSTERN_NEW_BIN (or
POSTERN_BIN), default build-rel/cli/postern of this tree. Needs root (INN, the gateway's
privilege drop, Dovecot; installs dovecot-imapd with apt-get if missing, as bench_gateway does).
"""
import argparse
import base64
import hashlib
import os
import re
import ssl
import sys
import threading
import time

from benchlib import Bench, PosternEnv, add_bin_args, add_users, check, describe, ensure_dovecot, header
import conftest  # noqa: E402  (benchlib put tests/integration on sys.path)
import bench_gateway as bg  # noqa: E402  (its IMAP client, /proc helpers and Dovecot instance)

USER = bg.USER  # bench_gateway's Dovecot writes its passwd-file and home for this user
PASSWORD = bg.PASSWORD
MB = 1 << 20


# ---------------------------------------------------------------- /proc

def status(pid, field):
    """A kB field of /proc/PID/status in bytes (None when the process is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def clear_peak(pids):
    for p in pids:
        with open("/proc/%d/clear_refs" % p, "w") as f:
            f.write("5")  # VmHWM starts again from what is resident now


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- messages

def make_messages(work, m, size_mb):
    """m files of about size_mb MB (LF line ends, as a delivery gets them); [(path, sha256 of
    the CRLF form, bytes of the CRLF form)]."""
    out = []
    for i in range(m):
        body = base64.encodebytes(os.urandom(size_mb * MB * 3 // 4))
        raw = (b"From: Sender <sender@example.net>\nTo: %s\nSubject: big message %d\n"
               b"Message-ID: <fetchmem.%d.%d@example.net>\nDate: Wed, 02 Dec 2026 06:00:00 +0000\n"
               b"MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
               % (USER.encode(), i, i, time.time_ns())) + body
        crlf = raw.replace(b"\n", b"\r\n")
        path = os.path.join(work, "msg-%d.eml" % i)
        with open(path, "wb") as f:
            f.write(raw)
        out.append((path, hashlib.sha256(crlf).hexdigest(), len(crlf)))
        del body, raw, crlf
    return out


# ---------------------------------------------------------------- IMAP

def open_sessions(addr, port, ctx, m):
    sessions = []
    for _ in range(m):
        c = bg.Imap(addr, port, ctx, timeout=1800)
        c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
        st = c.cmd("EXAMINE INBOX")
        if st["exists"] < m:
            raise RuntimeError("INBOX has %d messages, %d expected" % (st["exists"], m))
        sessions.append(c)
    return sessions


def fetch_body(c, n):
    """FETCH n (BODY.PEEK[]); the literal is hashed as it arrives. (sha256, octets)."""
    tag = c.send_cmd("FETCH %d (BODY.PEEK[])" % n)
    digest, octets = None, 0
    while True:
        line = c.readline()
        m = c.LIT.search(line)
        if m:
            left = octets_n = int(m.group(1))
            h = hashlib.sha256()
            while left:
                if len(c.buf) == c.pos:
                    c._fill()
                    continue
                take = min(len(c.buf) - c.pos, left)
                h.update(bytes(c.buf[c.pos:c.pos + take]))
                c.pos += take
                left -= take
            if digest is None:
                digest, octets = h.hexdigest(), octets_n
            continue
        if line.startswith(tag + b" "):
            if not line[len(tag) + 1:].startswith(b"OK"):
                raise RuntimeError("FETCH %d: %r" % (n, line[:200]))
            return digest, octets


def fetch_round(sessions):
    """Every session fetches its own message at once; (wall, [(n, sha, octets, seconds)], errors)."""
    m = len(sessions)
    start = threading.Barrier(m + 1)
    res, errors = {}, []
    t0 = [0.0]

    def one(c, n):
        try:
            start.wait()
            d, octets = fetch_body(c, n)
            res[n] = (d, octets, time.monotonic() - t0[0])
        except Exception as e:  # reported with the others
            errors.append("%d: %r" % (n, e))

    threads = [threading.Thread(target=one, args=(c, n), daemon=True) for n, c in enumerate(sessions, 1)]
    for t in threads:
        t.start()
    t0[0] = time.monotonic()
    start.wait()
    for t in threads:
        t.join(timeout=1800)
    wall = time.monotonic() - t0[0]
    return wall, [(n,) + res[n] for n in sorted(res)], errors


def close_sessions(sessions):
    for c in sessions:
        bg.logout(c)


# ---------------------------------------------------------------- one server

def run_rounds(label, sessions, pids_fn, extra_fn, digests, rounds):
    """rounds x (clear the peak of pids_fn(), fetch, read VmHWM); rows for the table."""
    want = {d for _, d, _ in digests}
    rows = []
    for r in range(rounds):
        pids = pids_fn()
        clear_peak(pids + extra_fn())
        ex0 = sum(status(p, "VmRSS") or 0 for p in extra_fn())
        before = sum(status(p, "VmRSS") or 0 for p in pids)
        wall, got, errors = fetch_round(sessions)
        peak = sum(status(p, "VmHWM") or 0 for p in pids)
        after = sum(status(p, "VmRSS") or 0 for p in pids)
        expeak = sum(status(p, "VmHWM") or 0 for p in extra_fn())
        ok = sum(1 for g in got if g[1] in want)
        row = {"server": label, "round": "cold" if r == 0 else "again", "before": before, "peak": peak,
               "after": after, "wall": wall, "ok": ok, "n": len(sessions), "errors": errors,
               "each": [g[3] for g in got], "octets": sum(g[2] for g in got), "procs": len(pids),
               "extra": (ex0, expeak) if extra_fn() else None}
        rows.append(row)
        print("    round %d (%s): RSS before %.0f MB, peak %.0f MB (+%.0f), after %.0f MB; wall %.1f s "
              "(bodies in after %s s); %d/%d bodies intact, %.0f MB received%s%s"
              % (r + 1, row["round"], before / MB, peak / MB, (peak - before) / MB, after / MB, wall,
                 ", ".join("%.1f" % x for x in row["each"]), ok, len(sessions), row["octets"] / MB,
                 "" if not row["extra"] else "; imap-login processes: RSS before %.0f MB, peak %.0f MB"
                 % (ex0 / MB, expeak / MB),
                 "" if not errors else "; errors: %s" % "; ".join(errors)), flush=True)
    return rows


def network_pid(gw, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        m = re.findall(r"postern\[(\d+)\]: info: network process ready", gw.log_text())
        if m:
            return int(m[-1])
        if time.monotonic() > deadline:
            raise RuntimeError("no 'network process ready' in %s" % gw.log)
        time.sleep(0.1)


def measure_postern(label, e, work, addr, settings, digests, rounds):
    print("  %s: postern serve %s" % (label, e.bin), flush=True)
    d = os.path.join(work, "gw-%s" % label)
    os.makedirs(d, mode=0o755)
    gw = conftest.Gateway(e, d, addr, settings)
    gw.start(timeout=30)
    rows = []
    try:
        pid = network_pid(gw)
        t0 = time.monotonic()
        sessions = open_sessions(addr, gw.imaps_port, gw.ssl_context(), len(digests))
        print("    network process %d; %d sessions logged in, INBOX examined (%.1f s); VmRSS %.0f MB"
              % (pid, len(sessions), time.monotonic() - t0, (status(pid, "VmRSS") or 0) / MB), flush=True)
        rows = run_rounds(label, sessions, lambda: [pid], lambda: [], digests, rounds)
        close_sessions(sessions)
        time.sleep(1)
        idle = status(pid, "VmRSS") or 0
        for r in rows:
            r["logout"] = idle
        cached = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(gw.state_dir / "articles")
                     for f in fs)
        print("    after LOGOUT of every session: VmRSS %.0f MB; article cache on disk %.0f MB"
              % (idle / MB, cached / MB), flush=True)
    finally:
        gw.stop(timeout=60)
        text = gw.log_text()
        bad = [l for l in text.splitlines() if ": error: " in l or ": warning: " in l]
        budget = [l for l in text.splitlines() if "budget" in l]
        for r in rows:
            r["log"] = (len(text.splitlines()), len(bad))
        if bad:
            print("    serve.log: %d warnings/errors, e.g. %s" % (len(bad), bad[0][:240]), flush=True)
        if budget:
            print("    serve.log: %d lines about the budget, e.g. %s" % (len(budget), budget[0][:240]), flush=True)
    return rows


def measure_dovecot(work, addr, messages, digests, rounds):
    print("  dovecot: private instance", flush=True)
    d = os.path.join(work, "dovecot-run")
    os.makedirs(d, mode=0o755)
    cert, key = bg.make_cert(d, addr)
    dov = bg.Dovecot(d, addr, cert, key, 10)
    now = int(time.time())
    for i, (path, _, _) in enumerate(messages):
        with open(path, "rb") as f:
            dov.write(i, f.read(), now - 100 + i)
    dov.start()
    rows = []
    try:
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        sessions = open_sessions(addr, dov.imaps, ctx, len(digests))
        time.sleep(0.3)

        def imaps():
            return [p for p in dov.pids() if comm(p) == "imap"]

        def logins():
            return [p for p in dov.pids() if comm(p) == "imap-login"]
        print("    %d imap processes for %d sessions, %d imap-login" % (len(imaps()), len(sessions), len(logins())),
              flush=True)
        rows = run_rounds("dovecot", sessions, imaps, logins, digests, rounds)
        close_sessions(sessions)
    finally:
        bg.stop_proc(dov.proc)
        p = os.path.join(dov.d, "dovecot.log")
        lines = open(p, errors="replace").read().splitlines() if os.path.exists(p) else []
        bad = [l for l in lines if ("Error" in l or "Fatal" in l or "Warning" in l) and "Killed with signal 15" not in l]
        if bad:
            print("    dovecot.log: %d warnings/errors, e.g. %s" % (len(bad), bad[0][:240]), flush=True)
    return rows


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_bin_args(ap)
    ap.add_argument("--only", choices=["old", "new"], help="one binary only")
    ap.add_argument("--messages", type=int, default=4, help="messages, sessions and concurrent FETCHes")
    ap.add_argument("--size-mb", type=int, default=100, help="size of each message, MB (MiB of body)")
    ap.add_argument("--budget-mb", type=int, help="[gateway] plaintext_budget for the new binary (default: its default)")
    ap.add_argument("--rounds", type=int, choices=[1, 2], default=2, help="2: the same FETCHes again, cached")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    bins = [("old", a.old_bin), ("new", a.new_bin)]
    if a.only:
        bins = [x for x in bins if x[0] == a.only]
    for label, path in bins:
        if not os.access(path, os.X_OK):
            sys.exit("bench_fetch_memory: %s binary %s not built (cmake -S TREE -B TREE/build-rel "
                     "-DCMAKE_BUILD_TYPE=Release && cmake --build TREE/build-rel -j2 --target postern)" % (label, path))
    os.environ["POSTERN_BIN"] = a.new_bin  # Bench and conftest's helpers take it from there
    dovecot = not a.no_dovecot and ensure_dovecot()

    with Bench("bench-fetch-memory", a.keep) as b:
        site = b.sites(name="fetchmem")
        env = b.env([site], 1)
        maxsize = (2 * a.size_mb + 16) * MB
        env.conf.write_text(re.sub(r"(?m)^min_copies = \d+$", lambda m: m.group(0) + "\nmax_message_size = %d" % maxsize,
                                   env.conf.read_text()))
        header("Peak RSS of the network process under %d concurrent %d MB FETCHes" % (a.messages, a.size_mb),
               old=describe(a.old_bin) if a.only != "new" else "-",
               new=describe(a.new_bin) if a.only != "old" else "-",
               site="%s %s:%d" % (site.name, site.addr, site.port),
               runs="%d messages of %d MB, %d sessions each FETCH n (BODY.PEEK[]) at once, %d round(s); "
                    "max_message_size %d; plaintext_budget (new) %s"
                    % (a.messages, a.size_mb, a.messages, a.rounds, maxsize,
                       "%d MiB" % a.budget_mb if a.budget_mb is not None else "default"),
               dovecot="yes" if dovecot else "no")
        add_users(env, [USER], password=PASSWORD, progress=0)
        t0 = time.monotonic()
        messages = make_messages(b.root, a.messages, a.size_mb)
        print("  %d messages made (%.0f MB each with CRLF) in %.1f s" % (len(messages), messages[0][2] / MB,
                                                                      time.monotonic() - t0), flush=True)
        for i, (path, _, _) in enumerate(messages):
            t = time.monotonic()
            with open(path, "rb") as f:
                check(env(["deliver", "--to", USER], input=f.read(), timeout=3600), "deliver %d" % i)
            print("  delivered %d/%d in %.1f s" % (i + 1, len(messages), time.monotonic() - t), flush=True)

        rows = []
        for label, path in bins:
            e = PosternEnv(env.dir, env.site, path)
            e.conf = env.conf
            settings = {}
            if label == "new" and a.budget_mb is not None:
                settings["plaintext_budget"] = str(a.budget_mb)
            rows += measure_postern(label, e, b.root, site.addr, settings, messages, a.rounds)
        if dovecot:
            rows += measure_dovecot(b.root, site.addr, messages, messages, a.rounds)
        report(rows, a)


def report(rows, a):
    print()
    print("RESULTS: %d sessions each FETCH n (BODY.PEEK[]) of a different %d MB message at once; load average now %s, "
          "%d CPUs" % (a.messages, a.size_mb, " ".join(open("/proc/loadavg").read().split()[:3]), os.cpu_count()))
    print("  postern: the network process (VmRSS before, VmHWM after clear_refs); dovecot: summed over its imap "
          "processes (one per session); MB = MiB")
    print("  %-8s %-6s %10s %10s %12s %9s %7s" % ("server", "round", "RSS before", "peak RSS", "peak - before",
                                                  "wall s", "bodies"))
    for r in rows:
        print("  %-8s %-6s %10.0f %10.0f %12.0f %9.1f %4d/%d" % (
            r["server"], r["round"], r["before"] / MB, r["peak"] / MB, max(0, r["peak"] - r["before"]) / MB, r["wall"],
            r["ok"], r["n"]))
    old = {r["round"]: r for r in rows if r["server"] == "old"}
    new = {r["round"]: r for r in rows if r["server"] == "new"}
    for rd in ("cold", "again"):
        if rd in old and rd in new:
            o, n = old[rd]["peak"] - old[rd]["before"], new[rd]["peak"] - new[rd]["before"]
            print("  %s: peak above the baseline old %.0f MB, new %.0f MB (new/old %.2f; against the %d x %d MB "
                  "fetched: old %.2f x, new %.2f x)" % (rd, o / MB, n / MB, n / o if o else float("nan"),
                                                     a.messages, a.size_mb,
                                                     o / a.messages / (a.size_mb * MB),
                                                     n / a.messages / (a.size_mb * MB)))
    bad = [r for r in rows if r["ok"] != r["n"] or r["errors"]]
    if bad:
        print("  BODIES WRONG OR MISSING: %s" % ", ".join("%s/%s %d of %d" % (r["server"], r["round"], r["ok"], r["n"])
                                                       for r in bad))


if __name__ == "__main__":
    main()
