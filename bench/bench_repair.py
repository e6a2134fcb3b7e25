#!/usr/bin/python3
"""`postern repair`: restoring missing articles, and what a pass costs when nothing is missing
(issue 10, benchmarks). Prints figures; asserts nothing.

Two INN sites that do not peer (as tests/integration/test_repair.py makes them: a feed that
never carried anything), postern.conf naming A then B with min_copies 1: USERS users (default
1,000) are added, then ARTICLES messages (default 5,000, SIZE_KB each, default 5) go through
`postern lmtp` to the first SPREAD users (default 50) in turn; every one lands at A only, so B
lacks all of them. Then:
1. find: `postern repair --dry-run` (LIST COUNTS at each site, Message-IDs of the groups whose
   counts differ): time and the NNTP commands it sends to each site;
2. restore: `postern repair`: time until it exits with B holding every article (it copies each
   one from A, ciphertext only, and waits until B shows it); articles/s; then a check that
   another dry run finds nothing missing;
3. no-op: `postern repair` with nothing missing over USERS users, RUNS times (default 5):
   wall time (median, max), and the NNTP commands and connections each site saw for one pass.
Commands are counted by a relay in front of each site (benchlib.CountingProxy: the [site]
entries point at it for the counted runs); timed runs go to INN directly.

usage: sudo bench/bench_repair.py [--articles N] [--users U] [--spread S] [--size-kb K] [--runs R] [--keep]
A quick run: sudo bench/bench_repair.py --articles 500 --users 100
Needs root (INN sites) and a built build/cli/postern (POSTERN_BIN overrides).
"""
import argparse
import os
import re
import statistics
import time

from benchlib import (Bench, CountingProxy, PosternEnv, add_users, check, deliver, describe, header, lmtp_message,
                      lmtp_server, sites_line)


def env_with(env, conf):
    """The same postern environment with another postern.conf."""
    e = PosternEnv(env.dir, env.site, env.bin)
    e.conf = conf
    return e


def fmt_counts(counts, connections):
    total = sum(counts.values())
    return "%d commands on %d connection(s): %s" % (
        total, connections, ", ".join("%s %d" % kv for kv in sorted(counts.items(), key=lambda kv: -kv[1])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=5000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--spread", type=int, default=50, help="users the articles are spread over")
    ap.add_argument("--size-kb", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5, help="timed no-op passes")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    spread = max(1, min(a.spread, a.users))
    with Bench("bench-repair", a.keep) as b:
        sa, sb = b.sites(name="repair-a"), b.sites(name="repair-b")  # no peering between them
        env = b.env([sa, sb], 1)
        header("postern repair: restore missing articles on one site; a no-op pass",
               postern=describe(b.bin), sites=sites_line([sa, sb]) + " (not peered; conf order A, B; min_copies 1)",
               users="%d (articles spread over the first %d)" % (a.users, spread),
               articles="%d x %d KB delivered through postern lmtp, all at A only" % (a.articles, a.size_kb))
        users = ["u%04d.repair@example.org" % i for i in range(a.users)]
        t0 = time.monotonic()
        add_users(env, users)
        print("  %d users added in %.0f s" % (a.users, time.monotonic() - t0), flush=True)

        srv = lmtp_server(b, env, os.path.join(b.root, "lmtp.sock"))
        lm = srv.connect()
        t0 = time.monotonic()
        bad = 0
        for i in range(a.articles):
            code, text, _ = deliver(lm, users[i % spread], lmtp_message(i, a.size_kb * 1000, "repair"))
            if code != 250 or "(%s)" % sa.name not in text:
                bad += 1
                if bad < 5:
                    print("  message %d: %d %s" % (i, code, text))
            if (i + 1) % 1000 == 0:
                print("  %d/%d delivered (%.0f s)" % (i + 1, a.articles, time.monotonic() - t0), flush=True)
        lm.quit()
        srv.stop()
        print("  %d delivered at A only in %.0f s (%d not as expected)" % (a.articles, time.monotonic() - t0, bad),
              flush=True)

        # the same conf with each [site] pointing at a counting relay
        proxies = {s.name: CountingProxy(s.addr, s.port) for s in (sa, sb)}
        counted = env.conf.read_text()
        for s in (sa, sb):
            counted = counted.replace("host = %s\nport = %d\n" % (s.addr, s.port),
                                      "host = %s\nport = %d\n" % (s.addr, proxies[s.name].port))
        cconf = env.dir / "counted.conf"
        cconf.write_text(counted)
        cconf.chmod(0o600)
        cenv = env_with(env, cconf)

        def counted_run(args):
            for p in proxies.values():
                p.reset()
            t0 = time.monotonic()
            r = cenv.run(args, timeout=3600)
            dt = time.monotonic() - t0
            time.sleep(0.2)  # the relay's last lines (QUIT)
            return dt, r, {n: p.snapshot() for n, p in proxies.items()}

        try:
            print("== 1. find (repair --dry-run: timed, then counted)", flush=True)
            t0 = time.monotonic()
            check(env.run(["repair", "--dry-run"], timeout=3600), "repair --dry-run")
            t_find = time.monotonic() - t0
            t_find_counted, r, find_cost = counted_run(["repair", "--dry-run"])
            find_out = check(r, "repair --dry-run").stdout.decode()
            missing = re.search(r"site %s: (\d+) missing" % re.escape(sb.name), find_out)
            print("  %.2f s; %s" % (t_find, find_out.strip().splitlines()[-1]), flush=True)

            print("== 2. restore (repair)", flush=True)
            t0 = time.monotonic()
            r = env.run(["repair"], timeout=7200)
            t_restore = time.monotonic() - t0
            restore_out = (r.stdout + r.stderr).decode(errors="replace")
            summary = [ln for ln in restore_out.splitlines() if ln.startswith("  site ") or ln.startswith("postern")]
            print("  exit %d in %.1f s\n    %s" % (r.returncode, t_restore, "\n    ".join(summary)), flush=True)
            r = check(env.run(["repair", "--dry-run"], timeout=3600), "repair --dry-run after the restore")
            after = r.stdout.decode()
            whole = "site %s: nothing missing" % sb.name in after
            print("  afterwards: %s" % ("nothing missing at B" if whole else after.strip()), flush=True)

            print("== 3. no-op passes (repair, nothing missing)", flush=True)
            times = []
            for _ in range(a.runs):
                t0 = time.monotonic()
                check(env.run(["-q", "repair"], timeout=3600), "repair (no-op)")
                times.append(time.monotonic() - t0)
            t_counted, r, noop_cost = counted_run(["-q", "repair"])
            check(r, "repair (no-op, counted)")
        finally:
            for p in proxies.values():
                p.close()

        n_missing = int(missing.group(1)) if missing else -1
        print("\nRESULTS (%d users, %d articles of %d KB missing at B)" % (a.users, a.articles, a.size_kb))
        print("  %-28s %-10s %s" % ("pass", "time (s)", "NNTP cost per site"))
        print("  %-28s %-10.2f counted pass %.2f s" % ("find (--dry-run)", t_find, t_find_counted))
        print("  %-28s %-10s %d missing at B" % ("", "", n_missing))
        for n, c in find_cost.items():
            print("  %-28s %-10s %s" % ("  find at %s" % n, "", fmt_counts(*c)))
        print("  %-28s %-10.2f %.0f articles/s restored; B whole afterwards: %s" % (
            "restore (repair)", t_restore, n_missing / t_restore if n_missing > 0 else float("nan"),
            "yes" if whole else "NO"))
        print("  %-28s %-10.3f median of %d (max %.3f); counted pass %.3f s" % (
            "no-op (repair -q)", statistics.median(times), len(times), max(times), t_counted))
        for n, c in noop_cost.items():
            print("  %-28s %-10s %s" % ("  no-op at %s" % n, "", fmt_counts(*c)))


if __name__ == "__main__":
    main()
