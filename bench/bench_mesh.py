#!/usr/bin/python3
"""Multi-site benchmarks (issue: multi-site). Prints figures; asserts nothing.

Three INN sites in a full innfeed mesh (scripts/inn-site --peer), on loopback:
1. Replication lag site 1 -> site 2: ARTICLES (default 1,000) articles of 50 KB posted at
   site 1 one after another; a watcher at site 2 notes when each one appears there (STAT of
   its Message-ID, polled every millisecond); p50, p99 and max of the lag (POST's 240 to STAT's
   223 elsewhere).
2. Backlog catch-up: site 3 stopped, BACKLOG (default 5,000) 50 KB articles posted at
   site 1, site 3 started again after OUTAGE seconds (default 300, the issue's 5 minutes):
   time from the restart until site 3 holds them all, with no manual step.
3. Delivery throughput with min_copies 1, 2 and 3 side by side: `postern lmtp` over one
   LMTP connection (the MTA's way), DELIVERIES (default 300) messages of 50 KB each.

usage: sudo bench/bench_mesh.py [--articles N] [--backlog N] [--outage S] [--deliveries N] [--keep]
A quick run: sudo bench/bench_mesh.py --articles 200 --backlog 500 --outage 20 --deliveries 100
Needs root (INN sites) and a built build/cli/postern (POSTERN_BIN overrides).
"""
import argparse, base64, os, secrets, shutil, smtplib, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from nntplib_min import NNTP, make_article  # noqa: E402

POSTERN = os.environ.get("POSTERN_BIN", os.path.join(ROOT, "build", "cli", "postern"))
INN_SITE = os.path.join(ROOT, "scripts", "inn-site")
SITES = [("bench1", "127.0.0.41", 11941), ("bench2", "127.0.0.42", 11942), ("bench3", "127.0.0.43", 11943)]
GROUP = "postern.bench.lag"
USER = "mesh.bench@example.org"


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, **kw)


class Site:
    def __init__(self, root, name, addr, port, peers):
        self.dir, self.name, self.addr, self.port = os.path.join(root, name), name, addr, port
        args = [INN_SITE, "setup", self.dir, "--addr", addr, "--port", port, "--name", name]
        for p in peers:
            args += ["--peer", "%s=%s:%d" % p]
        sh(*args, stdout=subprocess.DEVNULL)
        self.password = open(os.path.join(self.dir, "etc", "postern-nntp.secret")).read().strip()
        self.fragment = open(os.path.join(self.dir, "postern-site.conf")).read()

    def start(self):
        sh(INN_SITE, "start", self.dir, stdout=subprocess.DEVNULL)

    def stop(self):
        sh(INN_SITE, "stop", self.dir, stdout=subprocess.DEVNULL)

    def client(self):
        return NNTP(self.addr, self.port, "postern", self.password)

    def count(self, group):
        with self.client() as c:
            return c.group(group)[0]


def article(tag, size=50_000):
    body = base64.encodebytes(os.urandom(size * 3 // 4))
    return make_article(GROUP, "<m.%s.%s@postern.invalid>" % (tag, secrets.token_hex(8)), body)


def bench_lag(sites, n):
    """STAT <message-id> at site 2 for each posted article in turn: a fresh lookup every time
    (INN 2.7's nnrpd answers GROUP/LIST from an index it may have cached stale)."""
    s1, s2 = sites[0], sites[1]
    seen, posted, order, stop = {}, {}, [], threading.Event()

    def watch():
        c = s2.client()
        i = 0
        while i < n and not stop.is_set():
            if i >= len(order):
                time.sleep(0.001)
                continue
            mid = order[i]
            if c.stat(mid).startswith("223"):
                seen[mid] = time.monotonic()
                i += 1
            else:
                time.sleep(0.001)
        c.quit()

    t = threading.Thread(target=watch)
    t.start()
    with s1.client() as c:
        for i in range(n):
            a = article("lag%d" % i)
            mid = a.split(b"Message-ID: ")[1].split(b"\n")[0].decode()
            c.post(a)
            posted[mid] = time.monotonic()  # site 1 answered 240
            order.append(mid)
            if (i + 1) % 200 == 0:
                print("  posted %d/%d" % (i + 1, n), flush=True)
    deadline = time.monotonic() + 120
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join()
    lags = sorted((seen[m] - posted[m]) * 1000 for m in posted if m in seen)
    if not lags:
        return "no article arrived"
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    return "%d/%d arrived; lag p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (len(lags), n, p(0.5), p(0.99), lags[-1])


def bench_backlog(sites, n, outage):
    s1, s3 = sites[0], sites[2]
    before = s3.count(GROUP)
    s3.stop()
    t0 = time.monotonic()
    with s1.client() as c:
        for i in range(n):
            c.post(article("backlog%d" % i))
            if (i + 1) % 500 == 0:
                print("  queued %d/%d while site 3 is down" % (i + 1, n), flush=True)
    rest = outage - (time.monotonic() - t0)
    if rest > 0:
        print("  site 3 stays down %.0f s more" % rest, flush=True)
        time.sleep(rest)
    s3.start()
    t1 = time.monotonic()
    target = before + n
    last = -1
    while time.monotonic() - t1 < 1800:
        got = s3.count(GROUP)
        if got != last:
            print("  site 3 holds %d/%d" % (got - before, n), flush=True)
            last = got
        if got >= target:
            return "%d articles after a %.0f s outage: caught up %.1f s after the restart" % (
                n, outage, time.monotonic() - t1)
        time.sleep(1)
    return "not caught up after 30 minutes (%d of %d)" % (last - before, n)


def bench_delivery(root, sites, n):
    conf = os.path.join(root, "postern.conf")
    secret = os.path.join(root, "delivery.secret")
    with open(secret, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(secret, 0o600)
    state = os.path.join(root, "state")
    os.makedirs(state, mode=0o700, exist_ok=True)
    base = ("[postern]\nprefix = postern\nauthority_public = %s/auth.pub\nauthority_secret = %s/auth.key\n"
            "delivery_secret = %s\nwriter_key = %s/writer.key\nstate_dir = %s\nkdf_opslimit = 1\n"
            "kdf_memlimit = 8388608\n" % (root, root, secret, root, state)) + "".join(s.fragment for s in sites)
    results = []
    for copies in (1, 2, 3):
        with open(conf, "w") as f:
            f.write(base + "\n[deliver]\nmin_copies = %d\n" % copies)
        os.chmod(conf, 0o600)
        if copies == 1:
            sh(POSTERN, "-c", conf, "authority", "init", stdout=subprocess.DEVNULL)
            subprocess.run([POSTERN, "-c", conf, "user", "add", USER, "--password-stdin"],
                           input=b"mesh bench password\n", check=True, capture_output=True)
        sock = os.path.join(root, "lmtp%d.sock" % copies)
        p = subprocess.Popen([POSTERN, "-c", conf, "lmtp", "--listen", "unix:" + sock],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.02)
        lm = smtplib.LMTP(sock)
        lm.ehlo("bench")
        t0 = time.monotonic()
        for i in range(n):
            body = base64.encodebytes(os.urandom(37_000))
            msg = (b"From: bench@example.net\r\nSubject: copies %d msg %d\r\n\r\n" % (copies, i)) + body
            lm.sendmail("bench@example.net", [USER], msg)
        dt = time.monotonic() - t0
        lm.quit()
        p.terminate()
        p.wait()
        results.append("min_copies %d: %d messages in %.1f s = %.0f msg/s" % (copies, n, dt, n / dt))
        print("  " + results[-1], flush=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--outage", type=float, default=300)
    ap.add_argument("--deliveries", type=int, default=300)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_mesh: run as root (it starts INN sites)")
    root = tempfile.mkdtemp(prefix="postern-bench-mesh-", dir="/tmp")
    os.chmod(root, 0o755)
    sites = []
    try:
        for i, (name, addr, port) in enumerate(SITES):
            sites.append(Site(root, name, addr, port, [p for j, p in enumerate(SITES) if j != i]))
        for s in sites:
            s.start()
        for s in sites:
            sh(INN_SITE, "newgroup", s.dir, GROUP, stdout=subprocess.DEVNULL)
        print("== replication lag site 1 -> site 2 (%d x 50 KB)" % a.articles, flush=True)
        lag = bench_lag(sites, a.articles)
        print("  " + lag)
        print("== backlog catch-up (%d x 50 KB, %.0f s outage of site 3)" % (a.backlog, a.outage), flush=True)
        backlog = bench_backlog(sites, a.backlog, a.outage)
        print("  " + backlog)
        print("== delivery throughput (postern lmtp, %d x 50 KB per setting)" % a.deliveries, flush=True)
        delivery = bench_delivery(root, sites, a.deliveries)
        print("\nRESULTS\n  replication: %s\n  backlog: %s\n  %s" % (lag, backlog, "\n  ".join(delivery)))
    finally:
        for s in sites:
            try:
                s.stop()
            except subprocess.CalledProcessError:
                pass
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
