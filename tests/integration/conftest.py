"""pytest fixtures for postern's integration tests (run as root with Debian's /usr/bin/python3).

Fixtures
  inn_sites    session: factory ``inn_sites(name=None, prefix="postern")`` -> started InnSite
               (each on its own loopback address/port); every site is stopped at session end.
  inn_site     module: one started site.
  postern_env  module: a postern.conf for ``inn_site`` (authority initialised, delivery secret
               made); call it like ``postern_env(["user", "add", ...], input=b"...")``.
  nntp         function: an authenticated NNTP connection to ``inn_site``.
  gateway      module: a started ``postern serve`` for ``postern_env`` (IMAP with STARTTLS and
               IMAPS on free ports of the site's loopback address, a throwaway self-signed
               certificate); ``gateway.factory.start(**settings)`` starts another with other
               [gateway] settings (stopped at module end too).

Environment
  POSTERN_BIN          the postern binary (default: build/cli/postern); tests needing it are
                       skipped when it does not exist.
  POSTERN_KEEP_SITES=1 keep the site directories under /tmp for debugging.
"""
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nntplib_min import NNTP

REPO = Path(__file__).resolve().parents[2]
INN_SITE = REPO / "scripts" / "inn-site"
LOCK_DIR = Path("/tmp/postern-test-locks")
# site i listens on 127.0.0.i:11900+i; i in this range (127.0.0.1..19 are left to labs/humans)
SLOT_RANGE = range(20, 240)


def _free(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _reserve_slot():
    """Pick a free (addr, port); a held flock keeps parallel pytest runs from taking it too."""
    LOCK_DIR.mkdir(mode=0o755, exist_ok=True)
    start = secrets.randbelow(len(SLOT_RANGE))
    for k in range(len(SLOT_RANGE)):
        i = SLOT_RANGE[(start + k) % len(SLOT_RANGE)]
        addr, port = "127.0.0.%d" % i, 11900 + i
        fd = os.open(LOCK_DIR / ("slot-%d" % i), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _free(addr, port):
            return addr, port, fd
        os.close(fd)
    raise RuntimeError("no free loopback address/port for an INN site in 127.0.0.20-239")


def run_inn_site(*args, check=True, timeout=120):
    r = subprocess.run([str(INN_SITE), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("inn-site %s failed (exit %d):\n%s%s" %
                             (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
    return r


class InnSite:
    """One INN site made by scripts/inn-site."""

    def __init__(self, dir, addr, port, name, prefix, user, lock_fd):
        self.dir = Path(dir)
        self.addr, self.port, self.name, self.prefix, self.user = addr, port, name, prefix, user
        self._lock_fd = lock_fd
        self.innconf = self.dir / "etc" / "inn.conf"
        self.password_file = self.dir / "etc" / "postern-nntp.secret"
        self.conf_fragment = self.dir / "postern-site.conf"
        self.password = self.password_file.read_text().strip()

    def __repr__(self):
        return "<InnSite %s %s:%d %s>" % (self.name, self.addr, self.port, self.dir)

    def start(self):
        return run_inn_site("start", self.dir)

    def stop(self):
        return run_inn_site("stop", self.dir)

    def kill9(self):
        return run_inn_site("kill9", self.dir)

    def status(self):
        return run_inn_site("status", self.dir, check=False).returncode == 0

    def newgroup(self, *groups):
        return run_inn_site("newgroup", self.dir, *groups)

    def expire(self, warp=None):
        args = ["expire", self.dir] + (["--warp", warp] if warp is not None else [])
        return run_inn_site(*args)

    def client(self, auth=True, **kw):
        if auth:
            return NNTP(self.addr, self.port, self.user, self.password, **kw)
        return NNTP(self.addr, self.port, **kw)

    def release(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


@pytest.fixture(scope="session")
def _site_root():
    if os.geteuid() != 0:
        pytest.skip("INN sites need root (innd drops to user news): run sudo scripts/test.sh")
    if not Path("/usr/lib/news/bin/innd").exists():
        pytest.skip("INN is not installed: run scripts/install-deps.sh")
    root = Path(tempfile.mkdtemp(prefix="postern-test-", dir="/tmp"))
    root.chmod(0o755)  # user news must reach the site directories
    yield root
    if os.environ.get("POSTERN_KEEP_SITES") != "1":
        shutil.rmtree(root, ignore_errors=True)


class _SiteFactory:
    def __init__(self, root):
        self.root, self.made = root, []

    def __call__(self, name=None, prefix="postern", user="postern", start=True, peers=(),
                 slot=None):
        addr, port, fd = slot or _reserve_slot()
        name = name or "site%d" % port
        d = self.root / ("%s-%d" % (name, port))
        args = ["setup", d, "--addr", addr, "--port", port, "--name", name,
                "--prefix", prefix, "--nntp-user", user]
        for p in peers:
            args += ["--peer", p]
        try:
            run_inn_site(*args)
        except BaseException:
            os.close(fd)
            raise
        site = InnSite(d, addr, port, name, prefix, user, fd)
        self.made.append(site)
        if start:
            site.start()
        return site

    def mesh(self, n, prefix="postern", start=True):
        """n sites, each feeding every other one (innfeed, full mesh)."""
        slots = [_reserve_slot() for _ in range(n)]
        names = ["site%d" % port for _, port, _ in slots]
        sites = []
        for i, slot in enumerate(slots):
            peers = ["%s=%s:%d" % (names[j], slots[j][0], slots[j][1])
                     for j in range(n) if j != i]
            sites.append(self(names[i], prefix=prefix, start=False, peers=peers, slot=slot))
        if start:
            for s in sites:
                s.start()
        return sites


@pytest.fixture(scope="session")
def inn_sites(_site_root):
    """Factory: inn_sites(name=None, prefix="postern", user="postern", start=True, peers=())
    and inn_sites.mesh(n) -> list of fully peered sites."""
    factory = _SiteFactory(_site_root)
    yield factory
    stop_all(factory.made)
    for site in factory.made:
        site.release()


def stop_all(sites):
    """Stop sites in parallel (innd takes ~3 s to shut down, 1 s of it a built-in sleep)."""
    procs = [subprocess.Popen([str(INN_SITE), "stop", str(s.dir)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for s in sites]
    for p in procs:
        p.wait(timeout=120)


@pytest.fixture(scope="module")
def inn_site(inn_sites):
    site = inn_sites()
    yield site
    run_inn_site("stop", site.dir, check=False)


@pytest.fixture
def nntp(inn_site):
    c = inn_site.client()
    yield c
    c.quit()


# `postern inn-setup` execs scripts/postern-inn-setup from the tree (installed: /usr/libexec)
os.environ.setdefault("POSTERN_INN_SETUP", str(REPO / "scripts" / "postern-inn-setup"))


def postern_bin():
    return Path(os.environ.get("POSTERN_BIN") or REPO / "build" / "cli" / "postern")


class PosternEnv:
    """A postern.conf for one site plus a runner for the postern binary."""

    def __init__(self, dir, site, bin):
        self.dir, self.site, self.bin = Path(dir), site, Path(bin)
        self.conf = self.dir / "postern.conf"
        self.state_dir = self.dir / "state"
        self.authority_public = self.dir / "authority.pub"
        self.authority_secret = self.dir / "authority.key"
        self.delivery_secret = self.dir / "delivery.secret"
        self.writer_key = self.dir / "writer.key"  # `authority init` issues it (formats.md 4a)

    def write_conf(self, prefix="postern", extra=""):
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.conf.write_text(
            "[postern]\n"
            "prefix = %s\n"
            "authority_public = %s\n"
            "authority_secret = %s\n"
            "delivery_secret = %s\n"
            "writer_key = %s\n"
            "state_dir = %s\n"
            "; cheap Argon2id for tests (8 MiB, 1 pass)\n"
            "kdf_opslimit = 1\n"
            "kdf_memlimit = 8388608\n"
            "\n[deliver]\n"
            "min_copies = 1\n"
            "\n%s\n%s" % (prefix, self.authority_public, self.authority_secret,
                          self.delivery_secret, self.writer_key, self.state_dir,
                          self.site.conf_fragment.read_text(), extra))
        self.conf.chmod(0o600)

    def run(self, args, input=None, env=None, timeout=300, check=False):
        e = dict(os.environ)
        e.pop("POSTERN_CONFIG", None)
        if env:
            e.update(env)
        if isinstance(input, str):
            input = input.encode()
        return subprocess.run([str(self.bin), "-c", str(self.conf), *map(str, args)],
                              input=input, capture_output=True, env=e, timeout=timeout,
                              check=check)

    __call__ = run


def multi_site_env(dir, sites, shared=None):
    """A PosternEnv whose postern.conf names every site in `sites`, the first preferred (the
    gateway's local INN), with min_copies 2. `shared`: another such env whose authority and
    delivery secret this one uses (one organisation, several sites)."""
    env = PosternEnv(dir, sites[0], postern_bin())
    if shared:
        env.authority_public, env.authority_secret = shared.authority_public, shared.authority_secret
        env.delivery_secret = shared.delivery_secret
        env.writer_key = shared.writer_key
    else:
        fd = os.open(env.delivery_secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    env.write_conf(prefix=sites[0].prefix, extra="".join(s.conf_fragment.read_text() for s in sites[1:]))
    env.conf.write_text(env.conf.read_text().replace("min_copies = 1", "min_copies = 2"))
    return env


@pytest.fixture(scope="module")
def postern_env(inn_site, tmp_path_factory):
    bin = postern_bin()
    if not (bin.is_file() and os.access(bin, os.X_OK)):
        pytest.skip("postern binary %s not built (set POSTERN_BIN or build first)" % bin)
    env = PosternEnv(tmp_path_factory.mktemp("postern"), inn_site, bin)
    fd = os.open(env.delivery_secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    env.write_conf(prefix=inn_site.prefix)
    r = env.run(["authority", "init"])
    if r.returncode != 0:
        pytest.fail("postern authority init failed (exit %d):\n%s%s" % (
            r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")))
    return env


def read_until_tagged(c, tag):
    """Lines an imaplib connection reads up to and including the one starting with tag."""
    lines = []
    while True:
        line = c.readline()
        assert line, lines
        lines.append(line)
        if line.startswith(tag):
            return lines


def _free_port(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((addr, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def make_cert(dir, addr, name="cert"):
    """A throwaway self-signed P-256 certificate for localhost and addr; returns (cert, key)."""
    cert, key = Path(dir) / (name + ".pem"), Path(dir) / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:%s" % addr],
                   check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def make_ca_cert(dir, ca, *names, name="cert"):
    """A leaf for the DNS `names` signed by the test CA `ca` (CA.pem/CA.key, made on first
    use; scripts/self-signed-cert), so that clients verify the name against CA.pem; the leaf
    file holds the chain. Returns (cert, key)."""
    out = Path(dir) / name
    subprocess.run([str(REPO / "scripts" / "self-signed-cert"), "--ca", str(ca), str(out), "2", *names],
                   check=True, capture_output=True)
    return Path(str(out) + ".pem"), Path(str(out) + ".key")


class Gateway:
    """One running ``postern serve``: plain/STARTTLS port ``imap_port`` and IMAPS ``imaps_port``
    on ``addr`` (free ones unless given); ``tls`` = (cert, key), else a throwaway self-signed
    one; its stderr goes to ``log``."""

    def __init__(self, env, dir, addr, settings, imap_port=None, imaps_port=None, tls=None):
        self.env, self.dir, self.addr = env, Path(dir), addr
        self.imap_port = imap_port or _free_port(addr)
        self.imaps_port = imaps_port or _free_port(addr)
        self.cert, self.key = tls or make_cert(self.dir, addr)
        self.state_dir = self.dir / "state"
        self.state_dir.mkdir(mode=0o700)
        self.user = self.vault_user = None
        if os.geteuid() == 0:
            # two unprivileged users that exist everywhere; the network user owns state_dir
            self.user, self.vault_user = "nobody", "daemon"
            pw = pwd.getpwnam(self.user)
            os.chown(self.state_dir, pw.pw_uid, pw.pw_gid)
        conf = re.sub(r"(?m)^state_dir = .*$", "state_dir = %s" % self.state_dir, env.conf.read_text())
        lines = ["[gateway]", "imap = %s:%d" % (addr, self.imap_port),
                 "imaps = %s:%d" % (addr, self.imaps_port),
                 "tls_cert = %s" % self.cert, "tls_key = %s" % self.key,
                 "kdf_pool_memory = 67108864"]
        if self.user:
            lines += ["user = %s" % self.user, "vault_user = %s" % self.vault_user]
        settings = dict(settings)
        extra = settings.pop("conf_extra", "")  # whole sections after [gateway] ("[metrics]\nlisten = ...")
        lines += ["%s = %s" % kv for kv in settings.items()]
        if extra:
            lines.append(extra)
        self.conf = self.dir / "gateway.conf"
        self.conf.write_text(conf + "\n" + "\n".join(lines) + "\n")
        self.conf.chmod(0o600)
        self.log = self.dir / "serve.log"
        self.proc = None

    def start(self, timeout=10):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen([str(self.env.bin), "-c", str(self.conf), "serve", "--verbose"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        for port in (self.imap_port, self.imaps_port):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError("postern serve exited with %d:\n%s" % (self.proc.returncode,
                                                                                self.log_text()))
                try:
                    socket.create_connection((self.addr, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError("postern serve does not listen on %d:\n%s" % (port, self.log_text()))
                    time.sleep(0.05)
        return self

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def children(self):
        """pids of the vault and network processes."""
        r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in r.stdout.split()]

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = False  # the certificate names the address; imaplib passes the host
        return ctx


class _GatewayFactory:
    def __init__(self, env, tmp_path_factory, addr):
        self.env, self.addr, self.made = env, addr, []
        # state_dir must be reachable by the unprivileged network user: not under pytest's
        # root-only temporary directories
        self.root = Path(tempfile.mkdtemp(prefix="postern-gw-", dir="/tmp"))
        self.root.chmod(0o755)

    def start(self, **settings):
        return self.start_at(**settings)

    def start_at(self, addr=None, imap_port=None, imaps_port=None, tls=None, **settings):
        """start() on an explicit address, ports and (cert, key)."""
        d = self.root / ("gw%d" % len(self.made))
        d.mkdir(mode=0o755)
        gw = Gateway(self.env, d, addr or self.addr, settings, imap_port, imaps_port, tls)
        self.made.append(gw)
        return gw.start()

    def close(self):
        for gw in self.made:
            gw.stop()
        # With the sanitizer build, a report (a leak at exit included) lands in the gateway's
        # log: fail the module then, and keep the logs to read.
        reports = ["%s:\n%s" % (gw.log, gw.log_text()[-4000:]) for gw in self.made
                   if any(bad in gw.log_text() for bad in ("Sanitizer", "runtime error:"))]
        if reports:
            raise AssertionError("sanitizer report in a gateway log (kept in %s):\n%s" % (self.root, reports[0]))
        if os.environ.get("POSTERN_KEEP_SITES") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(postern_env, inn_site, tmp_path_factory):
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    gw = factory.start()
    gw.factory = factory
    yield gw
    factory.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "mesh: several meshed INN sites, minutes of wall time (scripts/test.sh "
                                       "runs these once, with the plain build)")
    config.addinivalue_line("markers", "package: builds and installs the Debian package (scripts/test.sh runs "
                                       "these once: they do not use POSTERN_BIN)")


# ---- a TCP relay for clients that check the certificate's DNS name (mbsync, mutt) ----

class Relay:
    """A byte-for-byte TCP relay from 127.0.0.1 (name: localhost) to the gateway. mbsync 1.4
    checks the server name only against the certificate's DNS names and CN (no IP
    subjectAltName), and the test certificate names "localhost": mbsync connects to
    localhost:relay and TLS still runs end to end between mbsync and the gateway."""

    def __init__(self, addr, port):
        self.target = (addr, port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = threading.Event()
        self.socks, self.threads = [], []
        self.accepted = 0
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.accepted += 1
            s = socket.create_connection(self.target, timeout=10)
            s.settimeout(None)
            c.settimeout(None)
            self.socks += [c, s]
            for a, b in ((c, s), (s, c)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stopping.set()
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def relay():
    made = []

    def make(addr, port):
        r = Relay(addr, port)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()
