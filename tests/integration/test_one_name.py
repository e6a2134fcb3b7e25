"""Transparent failover with one host name (issue 12 item 4): users configure one name that
resolves to a surviving site, every site's gateway presents a certificate for that name, and
a client that reconnects to another site sees the same mailbox: the same UIDVALIDITY, UIDs
and flags (the replicated state: [gateway] site_id, uid_claim_delay) and the same UIDLs.

Two meshed INN sites, one gateway each, on the sites' own loopback addresses but the same
ports; the name is an /etc/hosts line this module writes (glibc resolves it through
nsswitch "files" for mbsync, fetchmail, getmail and Python alike) and restores. mbsync
syncs and pushes local flags, fetchmail and getmail download everything over POP3S; then
site 1 dies (gateway and innd, SIGKILL), the name moves to site 2, and every client's next
run must be a quiet no-op that keeps the local flags; then site 1 comes back, the name
moves back, and the same holds again (also for a flag set while site 1 was down)."""
import imaplib
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _free, _free_port, _GatewayFactory, make_ca_cert, multi_site_env

pytestmark = pytest.mark.mesh

USER = "olive.onename@example.org"
PASSWORD = "one name password"
SUBJECTS = ["one name %d" % i for i in range(5)]
HOSTS = Path("/etc/hosts")
# how long the replicated state may take to reach the other site (a claim waits
# uid_claim_delay = 2 s; innfeed and the repair pass move it on)
CONVERGE = 120


def wait_for(cond, timeout, step=1.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


class HostsName:
    """One /etc/hosts line `ADDR NAME` that this test owns; point() rewrites it, restore()
    takes it out again (leaving the file as it was)."""

    def __init__(self, name):
        self.name = name
        self.original = HOSTS.read_bytes()
        self.tag = b"  # postern test_one_name"

    def _write(self, data):
        with open(HOSTS, "r+b") as f:  # in place: /etc/hosts may be a bind mount
            f.write(data)
            f.truncate()

    def _others(self):
        return b"".join(l for l in HOSTS.read_bytes().splitlines(True) if self.name.encode() not in l)

    def point(self, addr):
        base = self._others()
        if base and not base.endswith(b"\n"):
            base += b"\n"
        self._write(base + b"%s %s%s\n" % (addr.encode(), self.name.encode(), self.tag))
        # glibc reads /etc/hosts on every lookup (no nscd here): it should be at once
        got = wait_for(lambda: self.resolve() == addr, 10)
        assert got, "%s resolves to %s, not %s (nsswitch: %s)" % (
            self.name, self.resolve(), addr, Path("/etc/nsswitch.conf").read_text())

    def resolve(self):
        try:
            return socket.getaddrinfo(self.name, None, socket.AF_INET)[0][4][0]
        except socket.gaierror as e:
            return str(e)

    def restore(self):
        rest = self._others()
        # the original bytes, unless someone else changed the file meanwhile (then theirs)
        self._write(self.original if rest == self.original.rstrip(b"\n") + b"\n" or rest == self.original
                    else rest)


def common_port(addrs):
    """A port free on every address."""
    for _ in range(200):
        p = _free_port(addrs[0])
        if all(_free(a, p) for a in addrs[1:]):
            return p
    raise AssertionError("no port free on all of %s" % addrs)


@pytest.fixture(scope="module")
def hosts_name():
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("/etc/hosts is not writable")
    h = HostsName("failover-%s.postern.test" % secrets.token_hex(4))
    try:
        yield h
    finally:
        h.restore()


@pytest.fixture(scope="module")
def sites(inn_sites, tmp_path_factory, hosts_name):
    a, b = inn_sites.mesh(2)
    assert a.addr != b.addr
    env_a = multi_site_env(tmp_path_factory.mktemp("env_a"), [a, b])
    r = env_a(["authority", "init"])
    assert r.returncode == 0, r.stderr
    env_b = multi_site_env(tmp_path_factory.mktemp("env_b"), [b, a], shared=env_a)
    r = env_a(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i, subj in enumerate(SUBJECTS):  # min_copies = 2: at both sites when deliver returns
        r = env_a(["deliver", "--to", USER],
                  input=b"From: x%d@example.net\nTo: %s\nSubject: %s\n\nbody %d\n" % (i, USER.encode(), subj.encode(), i))
        assert r.returncode == 0, r.stderr
    # one name, one test CA, a certificate per site for that name
    certs = tmp_path_factory.mktemp("certs")
    ca = certs / "ca"
    tls = [make_ca_cert(certs, ca, hosts_name.name, name="site%d" % k) for k in (1, 2)]
    addrs = [a.addr, b.addr]
    imap, imaps, pop3s = common_port(addrs), common_port(addrs), common_port(addrs)
    gws, factories = [], []
    for k, (env, site) in enumerate(((env_a, a), (env_b, b))):
        f = _GatewayFactory(env, tmp_path_factory, site.addr)
        gw = f.start_at(imap_port=imap, imaps_port=imaps, tls=tls[k],
                        pop3s="%s:%d" % (site.addr, pop3s), site_id=str(k + 1), uid_claim_delay="2")
        gw.pop3s_port, gw.site, gw.ca = pop3s, site, Path(str(ca) + ".pem")
        gws.append(gw)
        factories.append(f)
    try:
        yield gws
    finally:
        for f in factories:
            f.close()


# ------------------------------------------------------------------------- the clients

def run(cmd, env=None, timeout=120):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)


def ctx(ca):
    c = ssl.create_default_context(cafile=str(ca))  # check_hostname: the one name
    return c


class _IMAPAt(imaplib.IMAP4_SSL):
    """IMAPS to one address, the certificate checked against `name` (not the address)."""

    def __init__(self, addr, name, port, **kw):
        self._addr = addr
        super().__init__(name, port, **kw)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self._addr, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def server_view(gw, name, at_addr=False):
    """(UIDVALIDITY, subject -> (uid, flags)) as the gateway `gw` serves them, reached
    through the one name (or at gw's own address); (None, why) when it cannot be asked."""
    try:
        if at_addr:
            c = _IMAPAt(gw.addr, name, gw.imaps_port, ssl_context=ctx(gw.ca), timeout=30)
        else:
            c = imaplib.IMAP4_SSL(name, gw.imaps_port, ssl_context=ctx(gw.ca), timeout=30)
        c.login(USER, PASSWORD)
        c.select("INBOX", readonly=True)
        validity = int(c.untagged_responses["UIDVALIDITY"][0])
        typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        view = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
                flags.discard("\\Recent")
                subj = item[1].decode().strip().split(": ", 1)[1]
                view[subj] = (uid, frozenset(flags))
        c.logout()
        return validity, view
    except (OSError, imaplib.IMAP4.error) as e:
        return None, repr(e)


class Mbsync:
    def __init__(self, tmp, name, gw):
        self.home = tmp / "mbsync"
        (self.home / "mail").mkdir(parents=True)
        self.box = self.home / "mail" / "INBOX"
        self.conf = self.home / "mbsyncrc"
        self.conf.write_text(
            "IMAPAccount one\nHost %s\nPort %d\nUser %s\nPass \"%s\"\nAuthMechs PLAIN\n"
            "SSLType IMAPS\nCertificateFile %s\nSystemCertificates no\nTimeout 30\n\n"
            "IMAPStore far\nAccount one\n\n"
            "MaildirStore near\nPath %s/mail/\nInbox %s\n\n"
            "Channel one\nFar :far:INBOX\nNear :near:INBOX\nCreate Near\n"
            "Sync PullNew Flags\nExpunge None\nSyncState *\n"
            % (name, gw.imaps_port, USER, PASSWORD, gw.ca, self.home, self.box))
        self.conf.chmod(0o600)

    def sync(self, gws):
        r = run(["mbsync", "-V", "-c", str(self.conf), "-a"], env=dict(os.environ, HOME=str(self.home)))
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0 and not re.search(r"(?i)error|warning", out), \
            "mbsync exit %d:\n%s\n%s" % (r.returncode, out, logs(gws))
        return out

    def local(self):
        """subject -> maildir flags (the letters after ':2,'); every file once."""
        got = {}
        for sub in ("new", "cur"):
            for f in (self.box / sub).iterdir():
                m = re.search(rb"(?mi)^Subject: (.*?)\r?$", f.read_bytes())
                subj = m.group(1).decode()
                assert subj not in got, "%s twice in the maildir" % subj
                got[subj] = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
        return got

    def toggle(self, subject, letter):
        """What a mail reader does to a maildir message: sets or clears one flag letter."""
        for sub in ("new", "cur"):
            for f in (self.box / sub).iterdir():
                if re.search(rb"(?m)^Subject: %s\r?$" % re.escape(subject.encode()), f.read_bytes()):
                    base, _, letters = f.name.partition(":2,")
                    letters = set(letters) ^ {letter}
                    f.rename(self.box / "cur" / ("%s:2,%s" % (base, "".join(sorted(letters)))))
                    return
        raise AssertionError("no local message %r" % subject)

    def uidvalidity(self):
        st = (self.box / ".mbsyncstate").read_text()
        return re.search(r"(?m)^FarUidValidity (\d+)", st).group(1)


class Fetchmail:
    def __init__(self, tmp, name, gw):
        self.home = tmp / "fetchmail"
        self.home.mkdir(mode=0o700)
        self.out = tmp / "fetchmail-out"
        self.out.mkdir()
        self.rc = self.home / "fetchmailrc"
        self.rc.write_text(
            "set no bouncemail\n"
            "poll %s proto POP3 port %d uidl timeout 30\n"
            "  user \"%s\" there with password \"%s\" is root here\n"
            "  ssl sslproto \"TLS1.2+\" sslcertck sslcertfile \"%s\"\n"
            "  keep\n"
            "  mda \"cat > $(mktemp %s/msg.XXXXXX)\"\n"
            % (name, gw.pop3s_port, USER, PASSWORD, gw.ca, self.out))
        self.rc.chmod(0o600)

    def fetch(self, gws):
        r = run(["fetchmail", "--nodetach", "--nosyslog", "-v", "-f", str(self.rc),
                 "--idfile", str(self.home / "fetchids")],
                env=dict(os.environ, HOME=str(self.home), FETCHMAILHOME=str(self.home)))
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode in (0, 1), "fetchmail exit %d:\n%s\n%s" % (r.returncode, out, logs(gws))
        return r.returncode, out

    def count(self):
        return len(os.listdir(self.out))


class Getmail:
    def __init__(self, tmp, name, gw):
        self.maildir = tmp / "getmail-out"
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        self.dir = tmp / "getmail"
        self.dir.mkdir()
        self.rc = self.dir / "getmailrc"
        self.rc.write_text(
            "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = %s\nport = %d\nusername = %s\n"
            "password = %s\nca_certs = %s\n\n"
            "[destination]\ntype = MDA_external\npath = /bin/sh\n"  # (a Maildir destination refuses root)
            "arguments = (\"-c\", \"cat > $(mktemp %s/new/msg.XXXXXX)\")\nallow_root_commands = true\n\n"
            "[options]\nread_all = false\ndelete = false\nverbose = 2\n"
            % (name, gw.pop3s_port, USER, PASSWORD, gw.ca, self.maildir))

    def fetch(self, gws):
        r = run(["getmail", "--getmaildir", str(self.dir), "--rcfile", str(self.rc)])
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0, "getmail exit %d:\n%s\n%s" % (r.returncode, out, logs(gws))
        return out

    def count(self):
        return len(os.listdir(self.maildir / "new")) + len(os.listdir(self.maildir / "cur"))


def logs(gws):
    return "\n".join("--- %s (tail):\n%s" % (gw.log, gw.log_text()[-3000:]) for gw in gws)


def kill_site(gw):
    """The site dies: its gateway (every process of it) and its innd, SIGKILL."""
    pids = [gw.proc.pid] + gw.children()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    gw.proc.wait(timeout=20)
    gw.stop()  # reaps, closes the log
    gw.site.kill9()


# ------------------------------------------------------------------------------ the test

LETTER = {"S": "\\Seen", "F": "\\Flagged"}


def expected_server_flags(local):
    return {s: frozenset(LETTER[c] for c in letters if c in LETTER) for s, letters in local.items()}


def test_one_name_failover_and_back(sites, hosts_name, tmp_path):
    gw1, gw2 = sites
    name = hosts_name.name
    hosts_name.point(gw1.addr)
    mb = Mbsync(tmp_path, name, gw1)
    fm = Fetchmail(tmp_path, name, gw1)
    gm = Getmail(tmp_path, name, gw1) if run(["sh", "-c", "command -v getmail"]).returncode == 0 else None

    # --- site 1 serves the name. POP3 first: fetchmail and getmail download everything
    # (RETR marks the messages \Seen on the server, as other servers do)
    rc, out = fm.fetch(sites)
    assert rc == 0 and fm.count() == len(SUBJECTS), out
    # fetchmail remembers UIDLs per user@host-as-configured: the one name, whichever site answered
    ids = (fm.home / "fetchids").read_text().splitlines()
    assert len(ids) == len(SUBJECTS) and all(l.startswith("%s@%s " % (USER, name)) for l in ids), ids
    if gm:
        out = gm.fetch(sites)
        assert gm.count() == len(SUBJECTS), out

    # mbsync: the first sync pulls the messages with the server's flags; then local changes
    # (one read state toggled, two messages flagged), pushed by a second sync
    mb.sync(sites)
    validity1, view1 = server_view(gw1, name)
    assert validity1 is not None, view1
    assert expected_server_flags(mb.local()) == {s: f for s, (_, f) in view1.items()}, (mb.local(), view1)
    assert set(view1) == set(SUBJECTS), view1
    uids = {s: u for s, (u, _) in view1.items()}
    mb.toggle(SUBJECTS[0], "S")
    mb.toggle(SUBJECTS[1], "F")
    mb.toggle(SUBJECTS[2], "S")
    mb.toggle(SUBJECTS[2], "F")
    flags = mb.local()
    mb.sync(sites)
    assert mb.local() == flags
    want = expected_server_flags(flags)
    assert server_view(gw1, name) == (validity1, {s: (uids[s], want[s]) for s in SUBJECTS})

    # the replicated state reaches site 2 (asked by its address, the certificate still
    # checked against the name); not asserted here, so that mbsync's view below says how
    # a client fails when it did not
    def site2_has_it():
        return server_view(gw2, name, at_addr=True) == (validity1, {s: (uids[s], want[s]) for s in SUBJECTS})
    wait_for(site2_has_it, CONVERGE)

    # --- site 1 dies; the name moves to site 2
    kill_site(gw1)
    hosts_name.point(gw2.addr)
    out = mb.sync(sites)
    assert mb.local() == flags, out  # nothing new, nothing lost, the local flags kept
    assert mb.uidvalidity() == str(validity1)
    validity2, view2 = server_view(gw2, name)
    assert validity2 == validity1
    assert view2 == {s: (uids[s], want[s]) for s in SUBJECTS}
    rc, out = fm.fetch(sites)
    assert rc == 1 and fm.count() == len(SUBJECTS), out  # 1: no new mail
    if gm:
        out = gm.fetch(sites)
        assert gm.count() == len(SUBJECTS), out

    # a flag set while site 1 is down goes to site 2
    mb.toggle(SUBJECTS[3], "S")
    flags = mb.local()
    want = expected_server_flags(flags)
    mb.sync(sites)
    assert mb.local() == flags
    assert server_view(gw2, name)[1] == {s: (uids[s], want[s]) for s in SUBJECTS}

    # --- site 1 comes back (innd, then its gateway with its old state); the name moves back
    gw1.site.start()
    gw1.start()

    def site1_caught_up():
        return server_view(gw1, name, at_addr=True) == (validity1, {s: (uids[s], want[s]) for s in SUBJECTS})
    wait_for(site1_caught_up, CONVERGE)
    hosts_name.point(gw1.addr)
    out = mb.sync(sites)
    assert mb.local() == flags, out
    assert mb.uidvalidity() == str(validity1)
    validity3, view3 = server_view(gw1, name)
    assert validity3 == validity1
    assert view3 == {s: (uids[s], want[s]) for s in SUBJECTS}, logs(sites)
    rc, out = fm.fetch(sites)
    assert rc == 1 and fm.count() == len(SUBJECTS), out
    if gm:
        out = gm.fetch(sites)
        assert gm.count() == len(SUBJECTS), out
