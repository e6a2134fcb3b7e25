#!/usr/bin/python3
"""Convergence latency of the replicated mailbox state (issue 12, benchmark): how long a flag
change made at one site takes to reach an IDLE session at another. Prints figures; asserts
nothing about timing.

  1. Three INN sites in a full innfeed mesh (tests/integration's factory: conftest's
     _SiteFactory.mesh, the locked slot reservation on 127.0.0.20-239, as every benchlib bench),
     one postern.conf per site naming its own site first and the other two after it
     (conftest.multi_site_env, one authority and delivery secret, min_copies 2), one user, and
     a `postern serve` per site (conftest.Gateway) with `[gateway] site_id` 1, 2, 3 and
     `uid_claim_delay` (--claim-delay, default 3 s), as test_replicated_state.py's Mesh.
  2. MESSAGES (default 50) messages of about 3 KB through `postern lmtp` (site 1's conf) while a
     session is selected at every site; then wait until a fresh SELECT at each site shows all
     of them under the same UIDs.
  3. A session at site 2 and one at site 3 in IDLE, each read by a thread of its own that
     timestamps every untagged line. A session at site 1 sends N (default 50) `UID STORE u
     +FLAGS.SILENT (\\Flagged)` (or -FLAGS.SILENT if the message is flagged), message i mod
     MESSAGES, one at a time: the clock starts when the STORE is sent and stops, per site, when
     that site's IDLE session shows `* seq FETCH (... FLAGS (...))` for the message with the new
     \\Flagged state. The next STORE goes only after both sites showed the previous one (or
     --timeout passed), after a random pause of 0 to --gap s (default 1, the poll interval), so
     that the STOREs fall on every phase of the receiving gateways' 1 s poll. Meanwhile a
     reader connection per site sends GROUP every --watch-ms (default 5; 0: off) ms: the time
     the group's high-water mark moved at site 1 (the gateway posted the delta to its own INN)
     and at sites 2 and 3 (innfeed brought it) splits the latency into INN's part and the
     receiving gateway's (its poll, the scan, the merge, the untagged FETCH).
  4. State articles in the user's group at each site (OVER of the group, Message-IDs "<s.",
     STAT of each so that cancelled ones do not count), before the STOREs and --settle s
     (default 5) after the last: count and total bytes; and how many snapshots each gateway
     wrote (its log, "state snapshot"). A gateway writes a snapshot after 64 state articles
     read or written since its last one and cancels the ones it covers.

Prints p50 / p90 / p99 / max (ms) of site 1 -> site 2 and site 1 -> site 3, and of site 1's own
STORE round trip.

usage: sudo /usr/bin/python3 bench/bench_convergence.py [--n N] [--messages M] [--gap S] [--seed S] [--keep]
Needs root (INN sites) and a built build/cli/postern (POSTERN_BIN overrides). About 2 minutes
with the defaults.
"""
import argparse
import os
import random
import re
import socket
import threading
import time

from benchlib import Bench, add_users, deliver, describe, header, lmtp_message, lmtp_server, pct, sites_line
import conftest  # noqa: E402  (benchlib put tests/integration on sys.path)
import bench_gateway as bg  # noqa: E402  (its IMAP client)

USER = "convbench@example.org"
PASSWORD = "bench convergence password 1"
FETCH = re.compile(rb"\* (\d+) FETCH \((.*)\)\r?\n?$")


def imap(gw):
    c = bg.Imap(gw.addr, gw.imaps_port, gw.ssl_context(), timeout=120)
    c.cmd('LOGIN "%s" "%s"' % (USER, PASSWORD))
    return c


def uid_flags(c):
    """SELECT INBOX; [(seq, uid, flags)] in sequence order."""
    c.cmd("SELECT INBOX")
    tag = c.send_cmd("FETCH 1:* (UID FLAGS)")
    out = []
    while True:
        line = c.readline()
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise RuntimeError("FETCH: %r" % line)
            return out
        m = FETCH.match(line)
        if m:
            uid = re.search(rb"UID (\d+)", m.group(2))
            fl = re.search(rb"FLAGS \(([^)]*)\)", m.group(2))
            out.append((int(m.group(1)), int(uid.group(1)), set(fl.group(1).decode().split()) if fl else set()))


def fresh_view(gw):
    """{uid: flags} from a new session at the gateway (NO [UNAVAILABLE] and the like: None)."""
    try:
        c = imap(gw)
    except (RuntimeError, OSError, EOFError):
        return None
    try:
        return {u: f for _, u, f in uid_flags(c)}
    except (RuntimeError, OSError, EOFError):
        return None
    finally:
        try:
            bg.logout(c)
        except Exception:
            pass


class Idler:
    """An IDLE session at one site; a thread notes (time, seq, flags) of every untagged FETCH."""

    def __init__(self, gw, label):
        self.label = label
        self.c = imap(gw)
        self.rows = uid_flags(self.c)
        self.seq = {u: s for s, u, _ in self.rows}
        self.c.send(b"i IDLE\r\n")
        while True:
            line = self.c.readline()
            if line.startswith(b"+"):
                break
        self.cv = threading.Condition()
        self.events = []  # (monotonic, seq, flags)
        self.error = None
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        try:
            self.c.s.settimeout(None)
            while True:
                line = self.c.readline()
                t = time.monotonic()
                m = FETCH.match(line)
                if not m:
                    continue
                fl = re.search(rb"FLAGS \(([^)]*)\)", m.group(2))
                if not fl:
                    continue
                with self.cv:
                    self.events.append((t, int(m.group(1)), set(fl.group(1).decode().split())))
                    self.cv.notify_all()
        except Exception as e:  # closed at the end, or by the server
            with self.cv:
                self.error = e
                self.cv.notify_all()

    def wait(self, uid, flagged, since, deadline):
        """Time of the first FETCH after `since` showing the message with \\Flagged == flagged."""
        seq = self.seq[uid]
        with self.cv:
            i = 0
            while True:
                while i < len(self.events):
                    t, s, fl = self.events[i]
                    i += 1
                    if t >= since and s == seq and (("\\Flagged" in fl) == flagged):
                        return t
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return None
                self.cv.wait(left)

    def close(self):
        try:
            self.c.send(b"DONE\r\n")
            time.sleep(0.2)
            self.c.s.close()
        except OSError:
            pass


class GroupWatch:
    """GROUP of the user's group at one site every `every` s over one reader connection: when
    its high-water mark moved (the state article a STORE posted arrived at that site's INN)."""

    def __init__(self, site, group, every):
        self.site, self.group, self.every = site, group, every
        self.c = site.client()
        self.high = self.c.group(group)[2]
        self.moves = []  # (monotonic, high)
        self.cv = threading.Condition()
        self.stop = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stop:
            try:
                h = self.c.group(self.group)[2]
            except Exception:
                return
            t = time.monotonic()
            if h > self.high:
                with self.cv:
                    self.high = h
                    self.moves.append((t, h))
                    self.cv.notify_all()
            time.sleep(self.every)

    def now(self):
        with self.cv:
            return self.high

    def wait(self, above, since, deadline):
        """Time of the first move past `above` seen after `since`."""
        with self.cv:
            while True:
                for t, h in self.moves:
                    if t >= since and h > above:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def close(self):
        self.stop = True
        self.th.join(timeout=5)
        try:
            self.c.quit()
        except Exception:
            pass


def user_group(site):
    with site.client() as c:
        groups = [g for g, *_ in c.list_active("%s.*" % site.prefix) if "convbench" in g and not g.endswith(".encrypt")]
    if len(groups) != 1:
        raise RuntimeError("the user's group at %s: %s" % (site.name, groups))
    return groups[0]


def state_articles(site, group):
    """(count, bytes) of the state articles ("<s.") in the group at site that STAT still finds."""
    with site.client() as c:
        try:
            _, low, high, _ = c.group(group)
        except Exception:
            return 0, 0
        if high < low:
            return 0, 0
        n = size = 0
        for f in c.over("%d-%d" % (low, high)):
            if len(f) > 6 and f[4].startswith("<s.") and c.stat(f[4]).startswith("223"):
                n += 1
                size += int(f[6] or 0)
        return n, size


def snapshots_written(gw):
    return len(re.findall(r"state snapshot <", gw.log_text()))


def ms(x):
    return "%.0f" % (x * 1e3)


def summary(label, xs, want):
    xs = sorted(xs)
    if not xs:
        return "  %-26s none arrived (of %d)" % (label, want)
    return "  %-26s %4d/%-4d min %5s  p50 %6s  p90 %6s  p99 %6s  max %6s  mean %6s" % (
        label, len(xs), want, ms(xs[0]), ms(pct(xs, 0.5)), ms(pct(xs, 0.9)), ms(pct(xs, 0.99)), ms(xs[-1]),
        ms(sum(xs) / len(xs)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="STOREs at site 1, one at a time")
    ap.add_argument("--messages", type=int, default=50, help="messages in the mailbox")
    ap.add_argument("--gap", type=float, default=1.0, help="random pause 0..GAP s before each STORE")
    ap.add_argument("--timeout", type=float, default=30.0, help="s to wait for one change at a site")
    ap.add_argument("--claim-delay", type=int, default=3, help="[gateway] uid_claim_delay")
    ap.add_argument("--settle", type=float, default=5.0, help="s after the last STORE before counting")
    ap.add_argument("--watch-ms", type=float, default=5.0,
                    help="GROUP at each site every W ms to time the state article's arrival (0: off)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rnd = random.Random(a.seed)

    with Bench("bench-conv", a.keep) as b:
        sites = b.sites.mesh(3)
        envs = []
        for k in range(3):
            d = os.path.join(b.root, "conf%d" % (k + 1))
            os.makedirs(d, mode=0o755)
            order = sites[k:] + sites[:k]  # its own site first
            envs.append(conftest.multi_site_env(d, order, shared=envs[0] if envs else None))
        header("convergence: a flag change at site 1 until an IDLE session at site 2 / site 3 shows it",
               postern=describe(b.bin), sites=sites_line(sites),
               runs="%d messages; %d STOREs at site 1 one at a time, 0-%.1f s apart; uid_claim_delay %d"
                    % (a.messages, a.n, a.gap, a.claim_delay))
        add_users(envs[0], [USER], password=PASSWORD, progress=0)
        gws = []
        for k, (env, site) in enumerate(zip(envs, sites)):
            d = os.path.join(b.root, "gw%d" % (k + 1))
            os.makedirs(d, mode=0o755)
            gw = conftest.Gateway(env, d, site.addr, {"site_id": k + 1, "uid_claim_delay": a.claim_delay})
            gw.start(timeout=30)
            b.own(gw.proc)
            gws.append(gw)
        keepers = []  # a selected session at every site, as a mail client's: the account is open
        for gw in gws:
            c = imap(gw)
            c.cmd("SELECT INBOX")
            keepers.append(c)

        srv = lmtp_server(b, envs[0], os.path.join(b.root, "lmtp.sock"))
        lm = srv.connect()
        t0 = time.monotonic()
        for i in range(a.messages):
            code, text, _ = deliver(lm, USER, lmtp_message(i, 3000, "conv"))
            if code != 250:
                raise SystemExit("LMTP: %d %s" % (code, text))
        lm.quit()
        print("  %d messages delivered in %.1f s" % (a.messages, time.monotonic() - t0), flush=True)

        deadline = time.monotonic() + 180
        while True:
            views = [fresh_view(gw) for gw in gws]
            if all(v is not None and len(v) == a.messages for v in views) and \
                    set(views[0]) == set(views[1]) == set(views[2]):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the sites did not agree on %d messages within 180 s: %s"
                                 % (a.messages, [None if v is None else len(v) for v in views]))
            time.sleep(0.5)
        print("  all three sites show the %d messages under the same UIDs (%.1f s after the first delivery)"
              % (a.messages, time.monotonic() - t0), flush=True)
        group = user_group(sites[0])
        time.sleep(a.settle)
        before = [state_articles(s, group) for s in sites]
        snaps_before = [snapshots_written(gw) for gw in gws]

        idlers = [Idler(gws[1], "site 2"), Idler(gws[2], "site 3")]
        c1 = imap(gws[0])
        rows = uid_flags(c1)
        uids = [u for _, u, _ in rows]
        flagged = {u: "\\Flagged" in f for _, u, f in rows}
        watches = [GroupWatch(s, group, a.watch_ms / 1e3) for s in sites] if a.watch_ms > 0 else []
        arrive = [[], [], []]  # STORE sent -> the group's high-water mark moved at site k
        lat = {"site 2": [], "site 3": []}
        rtt, missed = [], {"site 2": 0, "site 3": 0}
        t_run = time.monotonic()
        for i in range(a.n):
            time.sleep(rnd.uniform(0, a.gap))
            uid = uids[i % len(uids)]
            want = not flagged[uid]
            highs = [w.now() for w in watches]
            t = time.monotonic()
            c1.cmd("UID STORE %d %sFLAGS.SILENT (\\Flagged)" % (uid, "+" if want else "-"))
            rtt.append(time.monotonic() - t)
            flagged[uid] = want
            deadline = t + a.timeout
            for idl in idlers:
                got = idl.wait(uid, want, t, deadline)
                if got is None:
                    missed[idl.label] += 1
                    print("    STORE %d (UID %d): not seen at %s within %.0f s%s" % (
                        i, uid, idl.label, a.timeout, " (%r)" % idl.error if idl.error else ""), flush=True)
                else:
                    lat[idl.label].append(got - t)
            for k, w in enumerate(watches):
                got = w.wait(highs[k], t, time.monotonic() + (0.5 if k == 0 else 0.1))
                if got is not None:
                    arrive[k].append(got - t)
            if (i + 1) % 10 == 0:
                print("    %d/%d STOREs (%.0f s)" % (i + 1, a.n, time.monotonic() - t_run), flush=True)
        bg.logout(c1)
        for w in watches:
            w.close()
        time.sleep(a.settle)
        after = [state_articles(s, group) for s in sites]
        snaps = [snapshots_written(gw) - n0 for gw, n0 in zip(gws, snaps_before)]
        for idl in idlers:
            idl.close()
        for c in keepers:
            try:
                bg.logout(c)
            except Exception:
                pass
        for gw in gws:
            gw.stop(timeout=60)
        problems = []
        for k, gw in enumerate(gws):
            bad = [l for l in gw.log_text().splitlines() if ": error: " in l or ": warning: " in l]
            if bad:
                problems.append("gateway %d: %d warnings/errors, e.g. %s" % (k + 1, len(bad), bad[0][:200]))

        print()
        print("RESULTS: %d UID STOREs (+/-FLAGS.SILENT \\Flagged) at site 1, one at a time; load average now %s, "
              "%d CPUs" % (a.n, " ".join(open("/proc/loadavg").read().split()[:3]), os.cpu_count()))
        print("  from the STORE sent at site 1 until the IDLE session's untagged FETCH, ms:")
        print(summary("site 1 -> site 2", lat["site 2"], a.n))
        print(summary("site 1 -> site 3", lat["site 3"], a.n))
        print(summary("site 1 STORE round trip", rtt, a.n))
        if watches:
            print("  from the STORE sent until the group's high-water mark moved at each site's INN (GROUP every %.0f ms), "
                  "ms:" % a.watch_ms)
            for k in range(3):
                print(summary("state article at site %d" % (k + 1), arrive[k], a.n))
        if any(missed.values()):
            print("  not seen within %.0f s: site 2 %d, site 3 %d" % (a.timeout, missed["site 2"], missed["site 3"]))
        print("  state articles in %s (OVER, \"<s.\" Message-IDs STAT still finds; count / bytes):" % group)
        for k, s in enumerate(sites):
            print("    site %d (%s): before the STOREs %d / %d; %.0f s after the last %d / %d" % (
                k + 1, s.name, before[k][0], before[k][1], a.settle, after[k][0], after[k][1]))
        print("  snapshots written during the STOREs: gateway 1 %d, gateway 2 %d, gateway 3 %d" % tuple(snaps))
        for p in problems:
            print("  " + p)


if __name__ == "__main__":
    main()
