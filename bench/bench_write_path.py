#!/usr/bin/python3
"""Write-path benchmarks (issue: write path). Prints figures; asserts nothing.

1. Delivery throughput of 50 KB messages (`postern deliver`, one process per message as an
   MTA runs it: encrypt + POST) side by side with raw POSTs of articles of the same size to
   the same INN in the same run, over one connection and over one connection per article,
   and through `postern lmtp` (one LMTP connection for all messages: NNTP connection and key
   record kept warm; the target is at least 0.8 of raw POST over one connection).
2. Peak RSS of `postern deliver` and `postern mailbox --show` for a 100 MB message
   (target < 32 MB), with the read-back checked byte for byte.

usage: sudo bench/bench_write_path.py [--count N] [--big-mb M] [--keep]
Needs root (it starts an INN site with scripts/inn-site) and a built build/cli/postern.
"""
import argparse, hashlib, os, re, shutil, smtplib, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
POSTERN = os.environ.get("POSTERN_BIN", os.path.join(ROOT, "build", "cli", "postern"))
INN_SITE = os.path.join(ROOT, "scripts", "inn-site")
ADDR, PORT = "127.0.0.40", 11940
USER = "bench@example.org"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


class Nntp:
    """Just enough NNTP for raw POSTs (the baseline)."""

    def __init__(self, user, password):
        self.s = socket.create_connection((ADDR, PORT), timeout=60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.line()
        assert self.cmd("AUTHINFO USER " + user).startswith("381")
        assert self.cmd("AUTHINFO PASS " + password).startswith("281")

    def line(self):
        return self.f.readline().decode().rstrip("\r\n")

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()

    def post(self, article):
        assert self.cmd("POST").startswith("340")
        self.s.sendall(article + b".\r\n")
        r = self.line()
        assert r.startswith("240"), r

    def close(self):
        self.cmd("QUIT")
        self.s.close()


def message(i, size):
    body = os.urandom(size * 3 // 4)
    import base64
    text = base64.encodebytes(body)
    return (b"From: Sender <sender@example.net>\nTo: %s\nSubject: bench %d\n"
            b"Message-ID: <bench.%d.%d@example.net>\n\n" % (USER.encode(), i, i, time.time_ns())) + text


def raw_article(group, i, size):
    import base64
    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    head = ("From: postern <postern@postern.invalid>\r\nNewsgroups: %s\r\nSubject: raw\r\n"
            "Message-ID: <raw.%d.%d@postern.invalid>\r\n\r\n" % (group, i, time.time_ns())).encode()
    return head + body


def peak_rss_kb(args, stdin=None, env=None, sink=None):
    """Runs a command under /usr/bin/time (wait4's ru_maxrss would include this Python
    process's pages in the child before exec), returns (exit code, peak RSS in kB)."""
    with tempfile.NamedTemporaryFile("r") as out:
        p = subprocess.Popen(["/usr/bin/time", "-o", out.name, "-f", "%M"] + args, stdin=stdin,
                             stdout=subprocess.PIPE, env=env)
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            if sink:
                sink(chunk)
        p.wait()
        return p.returncode, int(out.read().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size-kb", type=int, default=50)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_write_path: run as root (it starts an INN site)")
    if not os.access(POSTERN, os.X_OK):
        sys.exit("bench_write_path: build first (cmake -S . -B build && cmake --build build)")

    work = tempfile.mkdtemp(prefix="postern-bench-")
    os.chmod(work, 0o755)  # innd runs as news and must reach its site directory
    site = os.path.join(work, "site")
    try:
        sh(INN_SITE, "setup", site, "--addr", ADDR, "--port", str(PORT), "--name", "bench", stdout=subprocess.DEVNULL)
        sh(INN_SITE, "start", site, stdout=subprocess.DEVNULL)
        conf = os.path.join(work, "postern.conf")
        with open(conf, "w") as f:
            f.write("[postern]\nauthority_public = %s/a.pub\nauthority_secret = %s/a.key\n"
                    "delivery_secret = %s/d.secret\nwriter_key = %s/w.key\nstate_dir = %s\n\n"
                    % (work, work, work, work, work))
            f.write(open(os.path.join(site, "postern-site.conf")).read())
        with open(os.path.join(work, "d.secret"), "w") as f:
            f.write(os.urandom(32).hex())
        os.chmod(os.path.join(work, "d.secret"), 0o600)  # postern refuses secrets others can read
        with open(os.path.join(work, "pw"), "w") as f:
            f.write("benchmark password 1\n")
        env = dict(os.environ, POSTERN_CONFIG=conf)
        sh(POSTERN, "authority", "init", env=env, stdout=subprocess.DEVNULL)
        sh(POSTERN, "user", "add", USER, "--password-file", os.path.join(work, "pw"), env=env,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nntp_pw = open(os.path.join(site, "etc", "postern-nntp.secret")).read().strip()
        group = "postern.org.example.bench"
        size = a.size_kb * 1000

        print("== 1. delivery throughput, %d messages of %d KB, one INN site on loopback" % (a.count, a.size_kb))
        msgs = [message(i, size) for i in range(a.count)]
        t0 = time.perf_counter()
        for m in msgs:
            subprocess.run([POSTERN, "deliver", "--to", USER], input=m, env=env, check=True)
        t_deliver = time.perf_counter() - t0

        msgs = [message(i + 2 * a.count, size) for i in range(a.count)]
        sock = os.path.join(work, "lmtp.sock")
        server = subprocess.Popen([POSTERN, "lmtp", "--listen", "unix:" + sock], env=env)
        try:
            while not os.path.exists(sock):
                time.sleep(0.01)
            # CRLF and dot-stuffed as on the wire; MAIL, RCPT and DATA pipelined as Postfix's
            # LMTP client sends them
            msgs = [re.sub(rb"(?m)^\.", b"..", m.replace(b"\n", b"\r\n")) + b".\r\n" for m in msgs]
            envelope = ("MAIL FROM:<sender@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % USER).encode()
            t0 = time.perf_counter()
            lm = smtplib.LMTP(sock, timeout=120)
            lm.ehlo("bench")
            assert lm.has_extn("pipelining")
            for m in msgs:
                lm.send(envelope)
                for want in (250, 250, 354):
                    code, msg = lm.getreply()
                    assert code == want, (code, msg)
                lm.send(m)
                code, msg = lm.getreply()
                assert code == 250, (code, msg)
            lm.quit()
            t_lmtp = time.perf_counter() - t0
        finally:
            server.terminate()
            server.wait()

        # the size of postern's articles (base64 of the sealed, padded envelope), for a raw POST
        # baseline of the same article size below
        c = Nntp("postern", nntp_pw)
        high = c.cmd("GROUP " + group).split()[3]
        c.s.sendall(b"OVER " + high.encode() + b"\r\n")
        assert c.line().startswith("224")
        art_bytes = int(c.line().split("\t")[6])
        assert c.line() == "."
        c.close()

        arts = [raw_article(group, i, size) for i in range(a.count)]
        t0 = time.perf_counter()
        c = Nntp("postern", nntp_pw)
        for art in arts:
            c.post(art)
        c.close()
        t_raw_one = time.perf_counter() - t0

        arts = [raw_article(group, i + a.count, size) for i in range(a.count)]
        t0 = time.perf_counter()
        for art in arts:
            c = Nntp("postern", nntp_pw)
            c.post(art)
            c.close()
        t_raw_each = time.perf_counter() - t0

        # raw POSTs as large as postern's articles: what INN itself needs for them
        body_bytes = (art_bytes - 200) * 76 // 78  # raw_article sizes its base64 text, CRLF every 76
        arts = [raw_article(group, i + 2 * a.count, body_bytes) for i in range(a.count)]
        t0 = time.perf_counter()
        c = Nntp("postern", nntp_pw)
        for art in arts:
            c.post(art)
        c.close()
        t_raw_same = time.perf_counter() - t0

        r_deliver = a.count / t_deliver
        r_lmtp = a.count / t_lmtp
        r_one = a.count / t_raw_one
        r_each = a.count / t_raw_each
        print("  postern deliver (process per message): %7.1f msg/s" % r_deliver)
        print("  raw POST, one connection per article : %7.1f msg/s   ratio deliver/raw = %.2f" % (r_each, r_deliver / r_each))
        print("  raw POST, one connection for all     : %7.1f msg/s   ratio deliver/raw = %.2f" % (r_one, r_deliver / r_one))
        print("  postern lmtp (one LMTP connection, %d KB messages): %7.1f msg/s   ratio lmtp/raw one connection = %.2f"
              " (target >= 0.8)" % (a.size_kb, r_lmtp, r_lmtp / r_one))
        r_same = a.count / t_raw_same
        print("  raw POST, one connection, %d KB articles (postern's article size): %7.1f msg/s   ratio lmtp/raw = %.2f"
              % (art_bytes // 1000, r_same, r_lmtp / r_same))

        print("== 2. peak RSS for a %d MB message" % a.big_mb)
        big = os.path.join(work, "big.eml")
        want = hashlib.sha256()
        with open(big, "wb") as f:
            head = b"From: big@example.net\nTo: %s\nSubject: big\n\n" % USER.encode()
            f.write(head)
            want.update(head)
            left = a.big_mb * 1000 * 1000 - len(head)
            import base64
            while left > 0:
                chunk = base64.encodebytes(os.urandom(min(left, 3 << 20) * 3 // 4))[:left]
                f.write(chunk)
                want.update(chunk)
                left -= len(chunk)
        t0 = time.perf_counter()
        with open(big, "rb") as f:
            rc, rss = peak_rss_kb([POSTERN, "deliver", "--to", USER], stdin=f, env=env)
        print("  deliver: exit %d, %.1f s, peak RSS %.1f MB (target < 32 MB)" % (rc, time.perf_counter() - t0, rss / 1024))
        # the big message is the newest article in the group
        c = Nntp("postern", nntp_pw)
        high = c.cmd("GROUP " + group).split()[3]
        c.close()
        # Reading starts with Argon2id, whose memory (kdf_memlimit) is the point of it: show the
        # streaming cost with a small KDF, and the total with the default (64 MiB).
        for label, memlimit in (("kdf_memlimit 8 MiB", 8 << 20), ("default KDF, 64 MiB", None)):
            rconf = conf + ".read"
            with open(conf) as src, open(rconf, "w") as dst:
                text = src.read()
                if memlimit:
                    text = text.replace("[postern]\n", "[postern]\nkdf_memlimit = %d\n" % memlimit, 1)
                dst.write(text)
            renv = dict(env, POSTERN_CONFIG=rconf)
            # re-wrap the key under this config's KDF, so that reading derives with it
            subprocess.run([POSTERN, "user", "passwd", USER, "--password-stdin"], env=renv, check=True,
                           input=b"benchmark password 1\nbenchmark password 1\n", stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            got = hashlib.sha256()
            t0 = time.perf_counter()
            rc, rss = peak_rss_kb([POSTERN, "mailbox", USER, "--password-file", os.path.join(work, "pw"),
                                   "--show", high], env=renv, sink=got.update)
            print("  mailbox --show (%s): exit %d, %.1f s, peak RSS %.1f MB, byte-identical: %s"
                  % (label, rc, time.perf_counter() - t0, rss / 1024, got.digest() == want.digest()))
    finally:
        subprocess.run([INN_SITE, "stop", site], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
