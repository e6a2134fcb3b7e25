#!/usr/bin/python3
"""Delivery throughput through `postern lmtp` per min_copies, healthy and with a black-holed
site (issue 10, benchmarks). Prints figures side by side; asserts nothing.

Three INN sites in a full innfeed mesh; postern.conf names site 1, 2, 3 in that order. Rows:
- healthy, min_copies 1, 2, 3: this build (a copy counts once the site shows it: POST, then
  STAT until 223) and, with --old-bin, the build before confirmation (commit 0753001, the parent
  of a79c363 "deliver: a copy counts only when the site shows the article": a 240 or 435 counted
  as a copy);
- black hole, min_copies 1, 2, 3: site 1's [site] entry points at a listener on site 1's
  address that never accepts (test_dead_site's BlackHole: the kernel drops the SYNs, as a
  destroyed site's network does), default connect_timeout (5 s). The first message pays the
  timeout; store/health.c then skips the site (30 s, doubling up to 5 min). So the row's rate is
  given without its first message, next to the first message's latency and the number of
  timeouts (state_dir/site-health) the row ran into. With min_copies 3 only two sites can show
  a message: every message is answered 451 (the row says how fast).
Each row: a fresh `postern lmtp` (its own state_dir, so each black-holed row pays its first
timeout), one LMTP connection, MESSAGES (default 300) messages of SIZE_KB (default 50) one
after another. Targets: confirmed 2-copy rate >= 0.8 x the old unconfirmed 2-copy rate; a
black-holed site costs < 5 % of the healthy rate after the first timeout.

usage: sudo bench/bench_lmtp_copies.py [--messages N] [--size-kb K] [--old-bin PATH] [--keep]
A quick run: sudo bench/bench_lmtp_copies.py --messages 60
The old binary: git worktree add --detach /tmp/postern-old 0753001 &&
  cmake -S /tmp/postern-old -B /tmp/postern-old/build -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  cmake --build /tmp/postern-old/build -j2 --target postern   (then --old-bin /tmp/postern-old/build/cli/postern)
"""
import argparse
import os
import re
import statistics
import time

from benchlib import (BlackHole, Bench, CountingProxy, add_users, deliver, describe, header, lmtp_message, lmtp_server,
                      sites_line)

USER = "copies.bench@example.org"


def hole_timeouts(state_dir, hole):
    """Connection attempts to the hole that ran into the timeout (site-health, as test_dead_site
    counts them)."""
    f = os.path.join(state_dir, "site-health")
    if not os.path.exists(f):
        return 0
    return sum(int(line.split()[3]) for line in open(f).read().splitlines()
               if line.split()[:2] == [hole.addr, str(hole.port)])


def run_row(b, env, bin, label, copies, n, size, conf_text, rnd=0, duration=None):
    """A fresh lmtp server with this conf text and its own state_dir: n messages (or as many
    as fit in duration seconds when n is None); returns a result dict."""
    d = os.path.join(b.root, "%s-%d-%d" % (label.replace(" ", "-"), copies, rnd))
    state = os.path.join(d, "state")
    os.makedirs(state, mode=0o700)
    conf = os.path.join(d, "postern.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(re.sub(r"(?m)^min_copies = \d+$", "min_copies = %d" % copies,
                       re.sub(r"(?m)^state_dir = .*$", "state_dir = " + state, conf_text)))
    env.bin = bin
    pool = [lmtp_message(i, size, "copies") for i in range(min(n or 200, 200))]
    srv = lmtp_server(b, env, os.path.join(d, "lmtp.sock"), conf=conf)
    lm = srv.connect()
    codes, lat = {}, []
    t0 = time.monotonic()
    i = 0
    while (i < n) if n else (time.monotonic() - t0 < duration):
        # a distinct message (and so a distinct postern Message-ID) from a pre-made body
        m = b"X-Bench: %d %d\r\n" % (i, time.time_ns()) + pool[i % len(pool)]
        t = time.monotonic()
        code, text, _ = deliver(lm, USER, m)
        lat.append(time.monotonic() - t)
        codes[code] = codes.get(code, 0) + 1
        i += 1
    n = i
    total = time.monotonic() - t0
    lm.quit()
    srv.stop()
    rest = total - lat[0]
    r = {"label": label, "copies": copies, "n": n, "total": total, "first": lat[0], "max": max(lat),
         "p50": sorted(lat)[len(lat) // 2],
         "rate": n / total, "rate_rest": (n - 1) / rest if n > 1 and rest > 0 else float("nan"),
         "codes": codes, "state": state, "slow": sum(x for x in lat if x > 1),
         "slow_at": ["%.0f s: %.1f s" % (sum(lat[:k]), x) for k, x in enumerate(lat) if x > 1]}
    print("  %-22s min_copies %d: %s" % (label, copies, fmt_codes(codes)), flush=True)
    if set(codes) - {250} and not (copies == 3 and "hole" in label):
        for line in list(srv.log_tail)[-3:]:
            print("    lmtp: %s" % line[:400], flush=True)
    return r


def combine(runs):
    """One row per (setting, min_copies) over the rounds: median rates, first-message latency
    and p50; the worst max; answers and timeouts summed."""
    rows = {}
    for r in runs:
        rows.setdefault((r["label"], r["copies"]), []).append(r)
    out = []
    for (label, copies), rs in rows.items():
        c = dict(rs[0])
        for k in ("rate", "rate_rest", "first", "p50"):
            c[k] = statistics.median(x[k] for x in rs)
        c["max"] = max(x["max"] for x in rs)
        c["total"] = statistics.median(x["total"] for x in rs)
        c["codes"] = {}
        for x in rs:
            for code, v in x["codes"].items():
                c["codes"][code] = c["codes"].get(code, 0) + v
        if "timeouts" in c:
            c["timeouts"] = sum(x["timeouts"] for x in rs)
        c["rounds"] = len(rs)
        out.append(c)
    return out


def fmt_codes(codes):
    return ", ".join("%d x %d" % (v, k) for k, v in sorted(codes.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--size-kb", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1, help="run every row this many times, interleaved; medians")
    ap.add_argument("--long", type=float, default=0, help="also a black-hole row (min_copies 2) this many seconds"
                    " long: store/health.c tries the site again after 30 s, 60 s, 120 s, ...")
    ap.add_argument("--count", action="store_true", help="also the healthy rows once through a relay that counts"
                    " the NNTP commands per site")
    ap.add_argument("--warmup", type=int, default=30, help="messages delivered before the rows, not counted")
    ap.add_argument("--old-bin", help="postern built from 0753001 (before delivery confirmed copies)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if a.old_bin and not os.access(a.old_bin, os.X_OK):
        raise SystemExit("--old-bin %s is not an executable" % a.old_bin)
    with Bench("bench-copies", a.keep) as b:
        s1, s2, s3 = b.sites.mesh(3)
        env = b.env([s1, s2, s3], 1)
        hole = BlackHole(s1.addr)
        header("delivery throughput through postern lmtp, per min_copies; healthy and with a black-holed site",
               postern=describe(b.bin), old=describe(a.old_bin) if a.old_bin else "n/a (no --old-bin)",
               sites=sites_line([s1, s2, s3]) + " (full innfeed mesh; conf order 1, 2, 3)",
               hole="%s:%d replaces %s in the black-holed rows (connect_timeout default)" % (
                   hole.addr, hole.port, s1.name),
               messages="%d x %d KB per row, one LMTP connection, one message after another" % (a.messages, a.size_kb))
        try:
            add_users(env, [USER])
            healthy = env.conf.read_text()
            holed = healthy.replace("host = %s\nport = %d\n" % (s1.addr, s1.port),
                                    "host = %s\nport = %d\n" % (hole.addr, hole.port))
            assert holed != healthy
            # not counted: the first articles of a new group and innfeed's first connections
            run_row(b, env, b.bin, "warm-up", 1, a.warmup, a.size_kb * 1000, healthy)
            runs = []
            for rnd in range(a.rounds):
                if a.rounds > 1:
                    print("  round %d/%d" % (rnd + 1, a.rounds), flush=True)
                for copies in (1, 2, 3):
                    runs.append(run_row(b, env, b.bin, "healthy", copies, a.messages, a.size_kb * 1000, healthy,
                                        rnd))
                    if a.old_bin:
                        runs.append(run_row(b, env, a.old_bin, "healthy old", copies, a.messages, a.size_kb * 1000,
                                            healthy, rnd))
                    r = run_row(b, env, b.bin, "black hole", copies, a.messages, a.size_kb * 1000, holed, rnd)
                    r["timeouts"] = hole_timeouts(r["state"], hole)
                    runs.append(r)
            counted = []
            if a.count:
                # the same rows once more through a counting relay per site: what confirmation costs
                # each site in NNTP (STAT after POST; a fresh connection per re-check round)
                proxies = [CountingProxy(s.addr, s.port) for s in (s1, s2, s3)]
                relayed = healthy
                for s, p in zip((s1, s2, s3), proxies):
                    relayed = relayed.replace("host = %s\nport = %d\n" % (s.addr, s.port),
                                              "host = %s\nport = %d\n" % (s.addr, p.port))
                try:
                    for bin, label in ((b.bin, "counted"), (a.old_bin, "counted old")):
                        for copies in (1, 2, 3) if bin else ():
                            for p in proxies:
                                p.reset()
                            r = run_row(b, env, bin, label, copies, a.messages, a.size_kb * 1000, relayed)
                            time.sleep(0.2)
                            r["cost"] = [p.snapshot() for p in proxies]
                            counted.append(r)
                finally:
                    for p in proxies:
                        p.close()
            if a.long:
                print("  long black-hole row: min_copies 2 for %.0f s" % a.long, flush=True)
                long_row = run_row(b, env, b.bin, "black hole long", 2, None, a.size_kb * 1000, holed,
                                   duration=a.long)
                long_row["timeouts"] = hole_timeouts(long_row["state"], hole)
        finally:
            hole.close()
        rows = combine(runs)
        by = {(r["label"], r["copies"]): r for r in rows}
        print("\nRESULTS (%d x %d KB per row; msg/s over the whole row, and without its first message; medians of"
              " %d round(s), answers and timeouts summed)" % (a.messages, a.size_kb, a.rounds))
        print("  %-12s %-10s %-9s %-10s %-9s %-9s %-8s %-9s %s" % (
            "setting", "min_copies", "msg/s", "msg/s 2..N", "p50 (ms)", "1st (s)", "max (s)", "timeouts", "answers"))
        for r in rows:
            print("  %-12s %-10d %-9.1f %-10.1f %-9.1f %-9.2f %-8.2f %-9s %s" % (
                r["label"], r["copies"], r["rate"], r["rate_rest"], r["p50"] * 1000, r["first"], r["max"],
                r.get("timeouts", "-"), fmt_codes(r["codes"])))
        if not a.old_bin:
            for copies in (1, 2, 3):
                print("  %-12s %-10d n/a (run with --old-bin)" % ("healthy old", copies))
        if a.long:
            r = long_row
            print("  %-12s %-10d %-9.1f %-10.1f %-9.1f %-9.2f %-8.2f %-9s %s   (%d messages in %.0f s)" % (
                "bh long", 2, r["rate"], r["rate_rest"], r["p50"] * 1000, r["first"], r["max"], r["timeouts"],
                fmt_codes(r["codes"]), r["n"], r["total"]))
        if counted:
            print("\nNNTP COMMANDS PER MESSAGE at site 1 / 2 / 3 (rows through a counting relay; connections"
                  " beyond the first are re-check rounds)")
            for r in counted:
                cells = []
                for counts, conns in r["cost"]:
                    cells.append("POST %.2f STAT %.2f conn %d" % (counts.get("POST", 0) / r["n"],
                                                                  counts.get("STAT", 0) / r["n"], conns))
                print("  %-12s min_copies %d: %s" % (r["label"], r["copies"], " | ".join(cells)))
        print("\nRATIOS")
        new2 = by[("healthy", 2)]
        if a.old_bin:
            old2 = by[("healthy old", 2)]
            print("  confirmed 2-copy / old unconfirmed 2-copy: %.2f (target >= 0.8)" % (new2["rate"] / old2["rate"]))
            for copies in (1, 3):
                print("  (min_copies %d: confirmed / old %.2f)" % (
                    copies, by[("healthy", copies)]["rate"] / by[("healthy old", copies)]["rate"]))
        else:
            print("  confirmed 2-copy / old unconfirmed 2-copy: n/a (no --old-bin)")
        for copies in (1, 2, 3):
            h, bh = by[("healthy", copies)], by[("black hole", copies)]
            if copies == 3:
                print("  black hole, min_copies 3: only 2 sites can show a message; %s at %.1f answers/s" % (
                    fmt_codes(bh["codes"]), bh["rate_rest"]))
                continue
            print("  black hole / healthy, min_copies %d, after the first timeout: %.2f (cost %.1f %%, target < 5 %%);"
                  " first message %.2f s; %d timeout(s) in %d row(s) of about %.0f s" % (
                      copies, bh["rate_rest"] / h["rate_rest"], 100 * (1 - bh["rate_rest"] / h["rate_rest"]),
                      bh["first"], bh["timeouts"], bh["rounds"], bh["total"]))

        if a.long:
            h = by[("healthy", 2)]
            print("  long black-hole row / healthy, min_copies 2, after the first timeout: %.2f (cost %.1f %%); %d timeouts"
                  " of the hole in %.0f s, %.0f s spent in messages slower than 1 s" % (
                      long_row["rate_rest"] / h["rate_rest"], 100 * (1 - long_row["rate_rest"] / h["rate_rest"]),
                      long_row["timeouts"], long_row["total"], long_row["slow"]))
            print("    slow messages (at: took): %s" % ", ".join(long_row["slow_at"]))


if __name__ == "__main__":
    main()
