"""The MTA recipes of docs/deliver.md, run as written by a real Postfix (Debian 12's, a private
instance: its own config directory, queue and loopback port; never /etc/postfix) and a real
Exim 4 (Debian's exim4-daemon-light, unpacked by scripts/install-deps.sh because it conflicts
with postfix; run with -C and its own configuration). Issue 15, items 2 and 4.

Each recipe below is the text docs/deliver.md shows, with /usr/sbin/postern,
/etc/postern/postern.conf and the users replaced by the test's own (test_recipes_are_the_docs
checks the docs quote them). What is checked: mail sent over SMTP is readable through postern;
an unknown recipient gets 550 5.1.1 at RCPT and no bounce is made; with the news server down,
RCPT answers 4xx and mail already accepted is deferred, then delivered, never bounced; no
reply names the internal newsgroup."""
import os
import pwd
import grp
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import _free_port
from test_lmtp import Server

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "deliver.md"
EXIM_DIR = Path(os.environ.get("POSTERN_EXIM_DIR", "/usr/local/lib/postern-test/exim4"))
EXIM = EXIM_DIR / "usr" / "sbin" / "exim4"
MASTER_DIST = Path("/usr/share/postfix/master.cf.dist")
PASSWORD = "mta test password"
ALICE = "alice.mta@example.org"
BOB = "bob.mta@example.org"
CAROL = "carol.mta@example.org"   # never verified before the news server goes down
UNKNOWN = "nobody.mta@example.org"
MSGID = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>)")
# as docs/deliver.md shows them
DOC_NAMES = {"etc": "/etc/postfix", "postern": "/usr/sbin/postern", "conf": "/etc/postern/postern.conf", "user": "postern",
             "group": "postern", "socket": "/run/postern/lmtp"}

# --- the recipes (docs/deliver.md quotes these, with DOC_NAMES) --------------------------------

POSTFIX_LMTP_MAIN = """\
# postern's domains, delivered over LMTP to the socket inside Postfix's chroot
relay_domains = example.org, postern-feed.example.org
relay_transport = lmtp:unix:private/postern-lmtp
# a feeding domain's addresses are the users' own to postern: rewritten in the envelope
# only (generic maps would rewrite the To: header too)
virtual_alias_maps = regexp:{etc}/postern-feed.regexp
lmtp_destination_recipient_limit = 100
# recipients are checked at RCPT time by a probe through that transport: postern lmtp
# answers RCPT 550 5.1.1 for an unknown user, 451 4.4.1 when no news server answers
smtpd_recipient_restrictions = reject_unverified_recipient
unverified_recipient_reject_code = 550
unverified_recipient_reject_reason = no such user here
# a failed or deferred result is probed again after 10 s: a user just added, or news
# servers back, are not refused for long (the default is 3 hours)
address_verify_negative_refresh_time = 10s
"""

POSTFIX_FEED_REGEXP = """\
/^(.+)@postern-feed\\.example\\.org$/ ${1}@example.org
"""

POSTERN_LMTP_CMD = ("{postern} -c {conf} lmtp --listen unix:/var/spool/postfix/private/postern-lmtp "
                    "--group postfix --user {user}")

POSTFIX_PIPE_MASTER = """\
postern   unix  -       n       n       -       4       pipe
  flags=Rq user={user} argv={postern} -c {conf} deliver --to ${{recipient}}
"""

POSTFIX_PIPE_MAIN = """\
relay_domains = example.org
relay_transport = postern:
# one recipient per command: --to takes one address
postern_destination_recipient_limit = 1
"""

EXIM_MAIN = """\
domainlist postern_domains = example.org
acl_smtp_rcpt = acl_check_rcpt
"""

EXIM_ACL = """\
acl_check_rcpt:
  accept  hosts = :
  deny    !domains = +postern_domains
          message = relay not permitted
  # 0: a user here; 67: unknown; anything else: try again later
  warn    set acl_m_postern = ${{run{{{postern} -c {conf} verify-recipient $local_part@$domain}}{{0}}{{$runrc}}}}
  deny    condition = ${{if eq{{$acl_m_postern}}{{67}}}}
          message = 5.1.1 no such user here
  defer   condition = ${{if !eq{{$acl_m_postern}}{{0}}}}
          message = 4.4.1 mail store temporarily unavailable, try again later
  accept
"""

EXIM_ROUTER = """\
postern:
  driver = accept
  domains = +postern_domains
  transport = postern_lmtp
"""

EXIM_TRANSPORT = """\
postern_lmtp:
  driver = lmtp
  socket = {socket}
  batch_max = 100
  user = Debian-exim
  group = {group}
"""


def doc_text(recipe, **names):
    return recipe.format(**dict(DOC_NAMES, **names))


def test_recipes_are_the_docs():
    docs = DOCS.read_text()
    assert POSTFIX_FEED_REGEXP in docs
    for recipe in (POSTFIX_LMTP_MAIN, POSTERN_LMTP_CMD, POSTFIX_PIPE_MASTER, POSTFIX_PIPE_MAIN, EXIM_MAIN,
                   EXIM_ACL, EXIM_ROUTER, EXIM_TRANSPORT):
        assert doc_text(recipe) in docs, "docs/deliver.md does not quote:\n" + doc_text(recipe)


# --- helpers -----------------------------------------------------------------------------------

def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


def message(subject, to):
    # with a Date: and a Message-ID: the MTAs add only their Received: line
    return ("From: Sender <sender@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "\r\nbody of %s\r\n" % (to, subject, secrets.token_hex(8), subject)).encode()


def show(env, address, msgid):
    r = env(["mailbox", address, "--password-stdin", "--show", msgid], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    return r.stdout


def smtp_rcpt(addr, port, rcpt):
    """MAIL and one RCPT over SMTP; the RCPT reply."""
    c = smtplib.SMTP(addr, port, timeout=60)
    try:
        c.ehlo("client.example.net")
        assert c.mail("sender@example.net")[0] == 250
        return c.rcpt(rcpt)
    finally:
        c.quit()


def reachable_bin(env, root):
    """The postern binary where the MTA's unprivileged user can run it (POSTERN_BIN may be in
    a directory only root may enter)."""
    dst = root / "postern"
    if not dst.exists():
        shutil.copy2(env.bin, dst)
        dst.chmod(0o755)
    return dst


def private_copy(env, root, owner):
    """A postern.conf (and the files it names) that `owner` can read, in root: what the MTA's
    user needs for the pipe recipe and Exim's recipient check. The delivery secret is the
    owner's, mode 0600 (postern refuses one that others may read), and so is the writer key."""
    pw = pwd.getpwnam(owner)
    text = env.conf.read_text()
    for key in ("authority_public", "delivery_secret", "writer_key", "password_file"):
        def copy(m):
            src = Path(m.group(2))
            dst = root / ("%s-%s" % (key, src.name))
            shutil.copyfile(src, dst)
            if key in ("delivery_secret", "writer_key"):
                os.chown(dst, pw.pw_uid, pw.pw_gid)
                dst.chmod(0o600)
            else:
                os.chown(dst, 0, pw.pw_gid)
                dst.chmod(0o640)
            return m.group(1) + str(dst)
        text = re.sub(r"(?m)^(%s\s*=\s*)(\S+)$" % key, copy, text)
    state = root / "state"
    state.mkdir(mode=0o700)
    os.chown(state, pw.pw_uid, pw.pw_gid)
    text = re.sub(r"(?m)^state_dir = .*$", "state_dir = %s" % state, text)
    text = re.sub(r"(?m)^authority_secret = .*\n", "", text)
    conf = root / "postern.conf"
    conf.write_text(text)
    os.chown(conf, 0, pw.pw_gid)
    conf.chmod(0o640)
    return conf


class Postfix:
    """A private Postfix instance: config directory dir/etc (Debian's master.cf with the smtp
    service on addr:port), its own queue directory dir/spool (the chroot), log in dir/maillog."""

    def __init__(self, dir, addr, main_extra, master_extra=""):
        self.dir, self.addr = Path(dir), addr
        self.port = _free_port(addr)
        self.etc, self.spool, self.data = self.dir / "etc", self.dir / "spool", self.dir / "data"
        self.log = self.dir / "maillog"
        self.dir.mkdir(mode=0o755, exist_ok=True)
        for d in (self.etc, self.spool, self.data):
            d.mkdir(mode=0o755)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, 0)
        master = MASTER_DIST.read_text()
        master, n = re.subn(r"(?m)^smtp      inet .*$", "%s:%d inet n - y - - smtpd" % (addr, self.port), master)
        assert n == 1
        (self.etc / "master.cf").write_text(master + master_extra)
        (self.etc / "main.cf").write_text(
            "# a private test instance (tests/integration/test_mta.py)\n"
            "compatibility_level = 3.6\n"
            "queue_directory = %s\ndata_directory = %s\n"
            "maillog_file = %s\nmaillog_file_prefixes = %s\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "myhostname = mx.postern.test\nmydestination =\nalias_maps =\nalias_database =\n"
            "mynetworks = 127.0.0.0/8\nsmtpd_peername_lookup = no\n"
            "# retry deferred mail soon (the test flushes the queue itself)\n"
            "queue_run_delay = 300s\nminimal_backoff_time = 300s\n"
            "%s" % (self.spool, self.data, self.log, self.dir, main_extra))

    def postfix(self, *args, check=True):
        r = subprocess.run(["postfix", "-c", str(self.etc), *args], capture_output=True, timeout=60)
        if check and r.returncode != 0:
            # without a terminal postfix(1) says why only in its log, or nowhere: ask check
            c = subprocess.run(["script", "-qc", "postfix -c %s check" % self.etc, "/dev/null"],
                               capture_output=True, timeout=60)
            raise AssertionError("postfix %s: exit %d\n%s%s%s" % (" ".join(args), r.returncode, out(r), out(c),
                                                                 self.log_text()[-3000:]))
        return r

    def start(self):
        self.postfix("start")
        wait_for(lambda: self._listening(), 20, "postfix to listen")
        return self

    def _listening(self):
        try:
            socket.create_connection((self.addr, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.postfix("stop", check=False)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def queue(self):
        r = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True, timeout=60)
        assert r.returncode == 0, out(r)
        return [l for l in r.stdout.decode().splitlines() if l.strip()]

    def sent(self, rcpt):
        """The Message-IDs postern named in its 250 replies for rcpt, from the log."""
        return [m.group(1) for line in self.log_text().splitlines()
                if ("to=<%s>" % rcpt in line or "orig_to=<%s>" % rcpt in line) and "status=sent" in line for m in [MSGID.search(line)] if m]


def smtp_send(addr, port, rcpts, data):
    c = smtplib.SMTP(addr, port, timeout=60)
    try:
        return c.sendmail("sender@example.net", rcpts, data)
    finally:
        c.quit()


@pytest.fixture(scope="module")
def users(postern_env):
    for a in (ALICE, BOB, CAROL):
        r = postern_env(["user", "add", a, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 0, out(r)


@pytest.fixture(scope="module")
def root():
    if not shutil.which("postfix") or not MASTER_DIST.exists():
        pytest.skip("postfix is not installed: run scripts/install-deps.sh")
    d = Path(tempfile.mkdtemp(prefix="postern-mta-", dir="/tmp"))
    d.chmod(0o755)  # postfix, nobody and Debian-exim reach into it
    yield d
    if os.environ.get("POSTERN_KEEP_SITES") != "1":
        shutil.rmtree(d, ignore_errors=True)


def test_verify_recipient_exit_codes(postern_env, users):
    """0 a user here, 67 unknown (also an address that cannot be a user); quiet unless
    --verbose, whose reason names no newsgroup. 75 (no news server) is checked through Exim."""
    r = postern_env(["verify-recipient", ALICE.upper()])
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", out(r)
    for bad in (UNKNOWN, "no-at-sign", "a@b@example.org"):
        r = postern_env(["verify-recipient", "--verbose", bad])
        assert r.returncode == 67, (bad, out(r))
        assert "no such user" in out(r) or "unknown recipient" in out(r), out(r)
    r = postern_env(["verify-recipient", "--verbose", UNKNOWN])
    assert "postern." not in out(r).replace("postern: ", ""), out(r)
    assert postern_env(["verify-recipient"]).returncode == 64


# --- Postfix over LMTP -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lmtp_postfix(postern_env, users, inn_site, root):
    d = root / "postfix-lmtp"
    pf = Postfix(d, inn_site.addr, doc_text(POSTFIX_LMTP_MAIN, etc=d / "etc"))
    (pf.etc / "postern-feed.regexp").write_text(POSTFIX_FEED_REGEXP)
    pf.start()
    # postern lmtp as the recipe runs it, with the test's queue directory; the socket's
    # directory (private/, postfix's, 0700) exists once Postfix has started
    sock = pf.spool / "private" / "postern-lmtp"
    cmd = doc_text(POSTERN_LMTP_CMD, postern="P", conf="C", user="nobody").split()[3:]
    cmd[cmd.index("--listen") + 1] = "unix:%s" % sock
    srv = Server(postern_env, sock, extra=cmd[cmd.index("--listen") + 2:])
    pf.lmtp = srv
    yield pf
    if srv.proc.poll() is None:
        srv.stop()
    pf.stop()


def test_postfix_lmtp_delivers(lmtp_postfix, postern_env):
    pf = lmtp_postfix
    data = message("via postfix lmtp", ALICE)
    assert smtp_send(pf.addr, pf.port, [ALICE, BOB], data) == {}
    ids = wait_for(lambda: len(pf.sent(ALICE)) == 1 and len(pf.sent(BOB)) == 1 and (pf.sent(ALICE), pf.sent(BOB)),
                   30, "delivery through postern lmtp:\n" + pf.log_text())
    for rcpt, (msgid,) in zip((ALICE, BOB), ids):
        stored = show(postern_env, rcpt, msgid)
        # Postfix adds its Received: line; the rest is the message as sent
        assert stored.startswith(b"Received: ") and stored.endswith(data), stored[:400]
    assert pf.queue() == []


def test_postfix_feeding_domain(lmtp_postfix, postern_env):
    """The main mail server's second recipient per user (alice@postern-feed.example.org) is
    stored for alice@example.org, byte for byte: virtual_alias_maps rewrites the envelope
    recipient (probes included), not the header."""
    pf = lmtp_postfix
    feed = ALICE.replace("@example.org", "@postern-feed.example.org")
    code, text = smtp_rcpt(pf.addr, pf.port, UNKNOWN.replace("@example.org", "@postern-feed.example.org"))
    assert code == 550 and text.startswith(b"5.1.1 "), (code, text)
    before = len(pf.sent(feed))
    data = message("via the feeding domain", feed)
    assert smtp_send(pf.addr, pf.port, [feed], data) == {}
    wait_for(lambda: len(pf.sent(feed)) == before + 1, 30, "delivery for the feeding domain:\n" + pf.log_text())
    stored = show(postern_env, ALICE, pf.sent(feed)[-1])
    assert stored.startswith(b"Received: ") and stored.endswith(data), stored[:400]


def test_postfix_unknown_recipient_550_at_rcpt(lmtp_postfix):
    pf = lmtp_postfix
    code, text = smtp_rcpt(pf.addr, pf.port, UNKNOWN)
    assert code == 550 and text.startswith(b"5.1.1 "), (code, text)
    assert b"postern." not in text.lower() and b"private/" not in text, text
    # the whole dialogue: refused at RCPT, nothing queued, no bounce
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        smtp_send(pf.addr, pf.port, [UNKNOWN], message("to nobody", UNKNOWN))
    assert pf.queue() == []
    assert "status=bounced" not in pf.log_text() and "sender non-delivery notification" not in pf.log_text()


def test_postfix_news_server_down_defers(lmtp_postfix, postern_env, inn_site):
    pf = lmtp_postfix
    assert smtp_rcpt(pf.addr, pf.port, ALICE)[0] == 250   # verified (and cached) while INN is up
    data = message("while INN was down", ALICE)
    inn_site.stop()
    try:
        # an address not verified before: a temporary answer, never 550
        code, text = smtp_rcpt(pf.addr, pf.port, CAROL)
        assert 400 <= code < 500, (code, text)
        assert b"postern." not in text.lower(), text
        # one verified before is accepted, and its delivery deferred
        before = len(pf.sent(ALICE))
        assert smtp_send(pf.addr, pf.port, [ALICE], data) == {}
        wait_for(lambda: any("to=<%s>" % ALICE in l and "status=deferred" in l for l in pf.log_text().splitlines()),
                 30, "a deferral:\n" + pf.log_text())
        assert len(pf.queue()) == 1
    finally:
        inn_site.start()
    pf.postfix("flush")
    wait_for(lambda: len(pf.sent(ALICE)) == before + 1, 60, "the deferred mail:\n" + pf.log_text())
    assert show(postern_env, ALICE, pf.sent(ALICE)[-1]).endswith(data)
    assert pf.queue() == []
    assert "status=bounced" not in pf.log_text()
    # the deferred probe result is refreshed within address_verify_negative_refresh_time
    wait_for(lambda: smtp_rcpt(pf.addr, pf.port, CAROL)[0] == 250, 60, "CAROL accepted once INN is back")


def test_lmtp_removes_its_socket_after_dropping_root(lmtp_postfix):
    """The recipe's postern lmtp runs as another user, in Postfix's private/ (0700 postfix):
    its root parent removes the socket when it stops."""
    srv = lmtp_postfix.lmtp
    assert os.stat(srv.path).st_gid == grp.getgrnam("postfix").gr_gid
    assert srv.stop() == 0, srv.stderr
    assert not os.path.exists(srv.path)
    # no reply named a newsgroup; the log has the details
    assert "postern." not in lmtp_postfix.log_text().replace("postern.invalid", "").replace("postern.test", "")


# --- Postfix pipe ------------------------------------------------------------------------------

def test_postfix_pipe_two_recipients(postern_env, users, inn_site, root):
    d = root / "postfix-pipe"
    d.mkdir(mode=0o755)
    conf = private_copy(postern_env, d, "nobody")
    pf = Postfix(d, inn_site.addr, doc_text(POSTFIX_PIPE_MAIN),
                 doc_text(POSTFIX_PIPE_MASTER, postern=reachable_bin(postern_env, root), conf=conf,
                          user="nobody")).start()
    try:
        data = message("via postfix pipe", ALICE)
        assert smtp_send(pf.addr, pf.port, [ALICE, BOB], data) == {}
        wait_for(lambda: "to=<%s>" % BOB in pf.log_text() and "to=<%s>" % ALICE in pf.log_text()
                 and not pf.queue(), 30, "delivery through the pipe:\n" + pf.log_text())
        log = pf.log_text()
        assert "status=bounced" not in log and "status=deferred" not in log, log
        for rcpt in (ALICE, BOB):
            r = postern_env(["mailbox", rcpt, "--password-stdin"], input=PASSWORD + "\n")
            assert r.returncode == 0 and b"via postfix pipe" in r.stdout, out(r)
    finally:
        pf.stop()


# --- Exim --------------------------------------------------------------------------------------

class Exim:
    """The unpacked exim4 binary as a daemon on addr:port with its own configuration, spool
    and log directories (user and group Debian-exim, which the recipe's transport uses too)."""

    def __init__(self, dir, addr, conf, lmtp_socket, postern):
        self.dir, self.addr = Path(dir), addr
        self.port = _free_port(addr)
        self.spool, self.logdir = self.dir / "spool", self.dir / "log"
        pw = pwd.getpwnam("Debian-exim")
        for d in (self.spool, self.logdir):
            d.mkdir(mode=0o750)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.conf = self.dir / "exim4.conf"
        acl = doc_text(EXIM_ACL, postern=postern, conf=conf)
        self.conf.write_text(
            "# a private test instance (tests/integration/test_mta.py)\n"
            "exim_path = %s\nexim_user = Debian-exim\nexim_group = Debian-exim\n"
            "spool_directory = %s\nlog_file_path = %s/%%slog\n"
            "primary_hostname = mx.postern.test\n"
            "daemon_smtp_ports = %d\nlocal_interfaces = %s\n"
            "keep_environment =\nhost_lookup =\nrfc1413_hosts =\ntls_advertise_hosts =\n"
            "log_selector = +smtp_confirmation\n"
            "%s\nbegin acl\n%s\nbegin routers\n%s\nbegin transports\n%s\n"
            "begin retry\n*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h\n" % (
                EXIM, self.spool, self.logdir, self.port, addr, EXIM_MAIN, acl, EXIM_ROUTER,
                doc_text(EXIM_TRANSPORT, socket=lmtp_socket, group="Debian-exim")))
        self.conf.chmod(0o644)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([str(EXIM), "-C", str(self.conf), "-bdf", "-q30m"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("exim exited %d: %s%s" % (self.proc.returncode, self.proc.stdout.read().decode(),
                                                               self.log_text()))
            try:
                socket.create_connection((self.addr, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("exim does not listen:\n" + self.log_text())
                time.sleep(0.1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def log_text(self, which="main"):
        p = self.logdir / ("%slog" % which)
        return p.read_text(errors="replace") if p.exists() else ""

    def queue(self):
        r = subprocess.run([str(EXIM), "-C", str(self.conf), "-bpc"], capture_output=True, timeout=60)
        assert r.returncode == 0, out(r)
        return int(r.stdout.decode().strip())


@pytest.fixture(scope="module")
def exim(postern_env, users, inn_site, root):
    if not EXIM.exists():
        pytest.skip("exim4 is not unpacked in %s: run scripts/install-deps.sh" % EXIM_DIR)
    if not getent_user("Debian-exim"):
        pytest.skip("no user Debian-exim: run scripts/install-deps.sh")
    d = root / "exim"
    d.mkdir(mode=0o755)
    conf = private_copy(postern_env, d, "Debian-exim")
    sock = d / "lmtp.sock"
    srv = Server(postern_env, sock, extra=["--group", "Debian-exim"])
    ex = Exim(d, inn_site.addr, conf, sock, reachable_bin(postern_env, root)).start()
    ex.lmtp = srv
    yield ex
    ex.stop()
    if srv.proc.poll() is None:
        assert srv.stop() == 0, srv.stderr  # a sanitizer report makes it non-zero


def getent_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def test_exim_delivers(exim, postern_env):
    data = message("via exim lmtp", ALICE)
    assert smtp_send(exim.addr, exim.port, [ALICE, BOB], data) == {}
    wait_for(lambda: "Completed" in exim.log_text() and exim.queue() == 0, 30,
             "exim's delivery:\n" + exim.log_text() + exim.log_text("panic"))
    log = exim.log_text()
    for rcpt in (ALICE, BOB):
        line = [l for l in log.splitlines() if ("=> " in l or "-> " in l) and "<%s>" % rcpt in l]
        assert line, log
        msgid = MSGID.search(line[-1]).group(1)
        assert show(postern_env, rcpt, msgid).endswith(data)


def test_exim_unknown_recipient_550_at_rcpt(exim):
    code, text = smtp_rcpt(exim.addr, exim.port, UNKNOWN)
    assert code == 550 and text.startswith(b"5.1.1 "), (code, text)
    assert b"postern." not in text.lower(), text
    assert exim.queue() == 0


def test_exim_news_server_down_defers_at_rcpt(exim, inn_site):
    inn_site.stop()
    try:
        code, text = smtp_rcpt(exim.addr, exim.port, ALICE)
    finally:
        inn_site.start()
    assert code == 451 and text.startswith(b"4.4.1 "), (code, text)
    assert smtp_rcpt(exim.addr, exim.port, ALICE)[0] == 250
