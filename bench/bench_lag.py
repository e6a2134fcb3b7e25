#!/usr/bin/python3
"""Replication lag after a confirmed delivery (issue 10, benchmarks). Prints figures; asserts
nothing.

Three INN sites in a full innfeed mesh (conftest's mesh: scripts/inn-site --peer). postern.conf
names site 1, 2, 3 in that order with min_copies (default 2, so postern itself stores at sites
1 and 2, and site 3 gets the article only through innfeed). MESSAGES (default 300) messages go
through one `postern lmtp` connection, one after another (--interval S between them, default
0: back to back). For each, the clock starts when LMTP answers 250 ("delivered ... on N
sites": N sites showed it) and stops when site 3 answers `STAT <msgid>` with 223; a watcher
polls every pending Message-ID at site 3 every --poll ms (default 1 ms) over one reader
connection. Prints p50, p99 and max (target: p99 < 2 s), and how many confirmations already
named site 3 (lag 0, postern stored it there itself).

usage: sudo bench/bench_lag.py [--messages N] [--size-kb K] [--min-copies C] [--interval S] [--keep]
A quick run: sudo bench/bench_lag.py --messages 100
Needs root (INN sites) and a built build/cli/postern (POSTERN_BIN overrides).
"""
import argparse
import threading
import time

from benchlib import Bench, add_users, deliver, describe, header, lmtp_message, lmtp_server, pct, sites_line

USER = "lag.bench@example.org"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--size-kb", type=int, default=50)
    ap.add_argument("--min-copies", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--poll", type=float, default=1.0, help="ms between polling rounds at site 3")
    ap.add_argument("--fresh", action="store_true", help="a new reader connection to site 3 for every polling round")
    ap.add_argument("--timeout", type=float, default=120.0, help="s to wait for the last article at site 3")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    with Bench("bench-lag", a.keep) as b:
        s1, s2, s3 = b.sites.mesh(3)
        env = b.env([s1, s2, s3], a.min_copies)
        header("replication lag: LMTP confirmation at site 1 -> STAT 223 at site 3",
               postern=describe(b.bin), sites=sites_line([s1, s2, s3]) + " (full innfeed mesh)",
               messages="%d x %d KB through one postern lmtp connection, interval %.3f s" % (
                   a.messages, a.size_kb, a.interval),
               min_copies=a.min_copies, poll="every %.1f ms, STAT at %s over %s" % (
                   a.poll, s3.name, "a new connection per round" if a.fresh else "one reader connection"))
        add_users(env, [USER])
        srv = lmtp_server(b, env, b.root + "/lmtp.sock")

        confirmed, seen, pending, lock = {}, {}, [], threading.Lock()
        done = threading.Event()

        def watch():
            c = s3.client()
            while True:
                with lock:
                    todo = list(pending)
                if not todo and done.is_set():
                    break
                if a.fresh and todo:
                    c.quit()
                    c = s3.client()
                for mid in todo:
                    if c.stat(mid).startswith("223"):
                        t = time.monotonic()
                        with lock:
                            seen[mid] = t
                            pending.remove(mid)
                time.sleep(a.poll / 1000)
            c.quit()

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        lm = srv.connect()
        at_site3, failed = 0, 0
        try:
            for i in range(a.messages):
                code, text, mid = deliver(lm, USER, lmtp_message(i, a.size_kb * 1000, "lag"))
                t = time.monotonic()
                if code != 250 or not mid:
                    failed += 1
                    print("  message %d: %d %s" % (i, code, text), flush=True)
                    continue
                if s3.name in text.rsplit("(", 1)[-1]:
                    at_site3 += 1
                    seen[mid] = confirmed[mid] = t
                else:
                    with lock:
                        confirmed[mid] = t
                        pending.append(mid)
                if (i + 1) % 100 == 0:
                    print("  %d/%d confirmed" % (i + 1, a.messages), flush=True)
                if a.interval:
                    time.sleep(a.interval)
            lm.quit()
            deadline = time.monotonic() + a.timeout
            while pending and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            with lock:
                missing = list(pending)
                pending.clear()
            done.set()
            w.join(timeout=10)
        lags = sorted((seen[m] - confirmed[m]) * 1000 for m in confirmed if m in seen)
        print("\nRESULTS (ms from LMTP 250 to STAT 223 at %s)" % s3.name)
        print("  %-10s %-8s %-8s %-8s %-8s %-9s %-9s %s" % ("confirmed", "at s3", "p50", "p90", "p99", "max",
                                                            "missing", "failed"))
        print("  %-10d %-8d %-8.1f %-8.1f %-8.1f %-9.1f %-9d %d" % (
            len(confirmed), at_site3, pct(lags, .5), pct(lags, .9), pct(lags, .99), lags[-1] if lags else float("nan"),
            len(missing), failed))
        p99 = pct(lags, .99)
        print("  target p99 < 2000 ms: %s" % ("met" if p99 < 2000 and not missing else "NOT met"))
        if missing:
            print("  %d confirmed messages not at %s after %.0f s, e.g. %s" % (len(missing), s3.name, a.timeout,
                                                                             missing[0]))


if __name__ == "__main__":
    main()
