"""One mailbox at every site (issue 12): three meshed INN sites, a gateway at each, one user.
Flags, keywords, EXPUNGE and POP3 DELE+QUIT made at one site are posted as encrypted state
articles in the user's group and merged by every gateway; UIDVALIDITY and the UIDs are the
same everywhere (given once, in arrival order, by the gateway with the lowest site_id that has
seen the mail: [gateway] site_id, uid_claim_delay). Before, each gateway kept its own flags
and numbered the mail with its site's article numbers under a UIDVALIDITY of its own.

The partition test needs a cut that leaves site 1 working on its own: every connection that
crosses between {site 1} and {sites 2, 3} -- innfeed's feeds and postern's own NNTP
connections (delivery, the gateway's reads and posts, its repair pass) -- goes through a
forwarder in this process (`Link`), and cutting it closes those connections and refuses new
ones at once (accepted, then closed: as quick as a refused connection, no timeout to wait
for). Connections inside a side go direct. innfeed keeps what it could not send and sends it
when the link is back (the test sets max-reconnect-time 10 so that happens within seconds).

Nothing here waits a fixed time to assert anything: every check polls until it holds or a
deadline passes."""
import imaplib
import poplib
import re
import secrets
import socket
import threading
import time

import pytest

from conftest import _GatewayFactory, _free_port, multi_site_env, stop_all

pytestmark = pytest.mark.mesh

USER = "rita.replica@example.org"
PASSWORD = "replicated state password"
CLAIM_DELAY = 3   # [gateway] uid_claim_delay: site k claims unclaimed mail after (k-1)*3 s
WAIT = 60         # s: a change made at one site is seen at the others
HEAL_WAIT = 180   # s: after the heal, innfeed's backlog and the repair pass have flowed
TOKEN = secrets.token_hex(3)  # this run's subjects
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>) on")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


class Link:
    """A TCP forwarder for the connections from one site's side to another site's innd/nnrpd:
    listens on 127.0.0.1, connects out from the source site's address (the receiver's
    incoming.conf accepts feeds by source address). cut() closes every connection it carries
    and closes new ones as soon as they are accepted; heal() lets them through again."""

    def __init__(self, src_addr, dst_addr, dst_port):
        self.src_addr, self.dst = src_addr, (dst_addr, dst_port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.up, self.closed = True, False
        self.lock = threading.Lock()
        self.pairs = set()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            if not self.up:
                c.close()
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((self.src_addr, 0))
                s.settimeout(10)
                s.connect(self.dst)
                s.settimeout(None)
            except OSError:
                s.close()
                c.close()
                continue
            pair = (c, s)
            with self.lock:
                if not self.up:
                    c.close()
                    s.close()
                    continue
                self.pairs.add(pair)
            done = threading.Semaphore(0)
            threading.Thread(target=self._pump, args=(c, s, pair, done, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, pair, done, False), daemon=True).start()

    def _pump(self, a, b, pair, done, closer):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        self._shut(pair)
        done.release()
        if closer:  # the second pump to finish closes both
            done.acquire()
            done.acquire()
            for x in pair:
                x.close()
            with self.lock:
                self.pairs.discard(pair)

    @staticmethod
    def _shut(pair):
        for x in pair:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.up = False
            pairs = list(self.pairs)
        for p in pairs:
            self._shut(p)

    def heal(self):
        with self.lock:
            self.up = True

    def close(self):
        self.cut()
        self.closed = True
        self.thread.join(timeout=5)
        self.lsock.close()


CROSSING = ((0, 1), (0, 2), (1, 0), (2, 0))  # (from, to) pairs between {site 1} and {sites 2, 3}


class Mesh:
    pass


def reroute(env, site, link):
    """Make env reach `site` through `link`."""
    text = env.conf.read_text()
    old = "host = %s\nport = %d\n" % (site.addr, site.port)
    assert old in text, text
    env.conf.write_text(text.replace(old, "host = 127.0.0.1\nport = %d\n" % link.port))


@pytest.fixture(scope="module")
def mesh(inn_sites, tmp_path_factory):
    m = Mesh()
    m.sites = inn_sites.mesh(3, start=False)
    m.links = {(i, j): Link(m.sites[i].addr, m.sites[j].addr, m.sites[j].port) for i, j in CROSSING}
    for i, s in enumerate(m.sites):  # innfeed's crossing feeds through the links
        conf = s.dir / "etc" / "innfeed.conf"
        text = conf.read_text()
        for j, t in enumerate(m.sites):
            if (i, j) in m.links:
                old = "ip-name:     %s\n    port-number: %d\n" % (t.addr, t.port)
                assert old in text, text
                text = text.replace(old, "ip-name:     127.0.0.1\n    port-number: %d\n" % m.links[i, j].port)
        text, n = re.subn(r"(?m)^max-reconnect-time:.*$", "max-reconnect-time:     10", text)
        assert n == 1, text
        conf.write_text(text)
    for s in m.sites:
        s.start()
    s1, s2, s3 = m.sites
    env1 = multi_site_env(tmp_path_factory.mktemp("state1"), [s1, s2, s3])
    env2 = multi_site_env(tmp_path_factory.mktemp("state2"), [s2, s3, s1], shared=env1)
    env3 = multi_site_env(tmp_path_factory.mktemp("state3"), [s3, s1, s2], shared=env1)
    reroute(env1, s2, m.links[0, 1])
    reroute(env1, s3, m.links[0, 2])
    reroute(env2, s1, m.links[1, 0])
    reroute(env3, s1, m.links[2, 0])
    m.envs = [env1, env2, env3]
    # delivery during the partition: each side's own sites only
    m.side1 = multi_site_env(tmp_path_factory.mktemp("side1"), [s1], shared=env1)
    m.side1.conf.write_text(m.side1.conf.read_text().replace("min_copies = 2", "min_copies = 1"))
    m.side23 = multi_site_env(tmp_path_factory.mktemp("side23"), [s2, s3], shared=env1)
    r = env1(["authority", "init"])
    assert r.returncode == 0, out(r)
    r = env1(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    m.factories, m.gws = [], []
    try:
        for k, (env, site) in enumerate(zip(m.envs, m.sites)):
            f = _GatewayFactory(env, tmp_path_factory, site.addr)
            m.factories.append(f)
            gw = f.start(site_id=k + 1, uid_claim_delay=CLAIM_DELAY,
                         pop3s="%s:%d" % (site.addr, _free_port(site.addr)))
            gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
            m.gws.append(gw)
        # a selected session at every site for the whole module, as a user's mail client
        # would hold: each gateway then has the account open when mail arrives
        m.keepers = []
        for gw in m.gws:
            c = imap(gw)
            assert c.select("INBOX")[0] == "OK"
            m.keepers.append(c)
        m.obs = [[], [], []]  # every IMAP view taken at each site: {uid: subject}
        _MESH[:] = [m]
        yield m
    finally:
        _MESH.clear()
        for c in getattr(m, "keepers", []):
            try:
                c.logout()
            except Exception:
                pass
        for f in m.factories:
            f.close()
        for link in m.links.values():
            link.close()
        stop_all(m.sites)


# --- clients ---------------------------------------------------------------------------------

def imap(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    return c


def fetch_items(data):
    """imaplib FETCH data -> [(everything but the literal, literal or None)]."""
    items, i = [], 0
    while i < len(data):
        d = data[i]
        if isinstance(d, tuple):
            meta, lit = d[0], d[1]
            if i + 1 < len(data) and isinstance(data[i + 1], bytes):
                meta += data[i + 1]
                i += 1
            items.append((meta, lit))
        elif d:
            items.append((d, None))
        i += 1
    return items


class View:
    """What one IMAP client sees at one site: UIDVALIDITY and per UID (subject, flags)."""

    def __init__(self, validity, msgs):
        self.validity, self.msgs = validity, msgs

    def subjects(self):
        return {uid: m[0] for uid, m in self.msgs.items()}

    def uid_of(self, subject):
        uids = [u for u, m in self.msgs.items() if m[0] == subject]
        assert len(uids) <= 1, "%r shown under UIDs %s" % (subject, uids)
        return uids[0] if uids else None

    def flags_of(self, subject):
        u = self.uid_of(subject)
        return self.msgs[u][1] if u is not None else None

    def __repr__(self):
        return "View(UIDVALIDITY %s, %s)" % (self.validity, sorted(
            (u, s, " ".join(sorted(f))) for u, (s, f) in self.msgs.items()))


def view(m, k, folder="INBOX"):
    """A fresh EXAMINE of the folder at site k (0-based); the INBOX's recorded in m.obs[k]."""
    c = imap(m.gws[k])
    try:
        typ, data = c.select(folder, readonly=True)
        if typ != "OK":  # NO [UNAVAILABLE] ... try again: until() does
            raise imaplib.IMAP4.error("EXAMINE: %s %s" % (typ, data))
        validity = int(c.untagged_responses["UIDVALIDITY"][0])
        msgs = {}
        if int(data[0]):
            typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            if typ != "OK":  # a message not at this site yet: NO [UNAVAILABLE]
                raise imaplib.IMAP4.error("UID FETCH: %s %s" % (typ, data))
            for meta, lit in fetch_items(data):
                uid = re.search(rb"UID (\d+)", meta)
                flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
                if not uid or lit is None:
                    continue
                subject = lit.decode(errors="replace").strip()
                subject = re.sub(r"(?i)^subject:\s*", "", subject)
                fl = frozenset(flags.group(1).decode().split()) - {"\\Recent"} if flags else frozenset()
                msgs[int(uid.group(1))] = (subject, fl)
    finally:
        try:
            c.logout()
        except Exception:
            pass
    v = View(validity, msgs)
    if folder == "INBOX":
        m.obs[k].append(v.subjects())
    return v


def pop3(gw):
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=30)
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def pop3_view(p):
    """{subject: (message number, UIDL)} of an open POP3 session."""
    _, lines, _ = p.uidl()
    seen = {}
    for line in lines:
        n, uidl = line.decode().split()
        _, head, _ = p.top(int(n), 0)
        for h in head:
            h = h.decode(errors="replace")
            if h.lower().startswith("subject:"):
                seen[h[len("subject:"):].strip()] = (int(n), uidl)
    return seen


def pop3_subjects(gw):
    p = pop3(gw)
    try:
        return pop3_view(p)
    finally:
        p.quit()


class Idle:
    """An IMAP session at one site in IDLE, its untagged responses read off the socket."""

    def __init__(self, gw):
        self.c = imap(gw)
        typ, data = self.c.select("INBOX")
        assert typ == "OK", data
        self.lines = []

    def seq_of(self, uid):
        typ, data = self.c.search(None, "UID", str(uid))
        assert typ == "OK" and data[0].split(), (typ, data)
        return int(data[0].split()[0])

    def start(self):
        self.c.send(b"I1 IDLE\r\n")
        while True:
            line = self._line(time.monotonic() + 30)
            if line.startswith(b"+"):
                return
            assert line.startswith(b"* "), line

    def _line(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.c.sock.settimeout(left)
        line = self.c.readline()
        if not line:
            raise AssertionError("the gateway closed the IDLE connection; read so far: %r" % self.lines)
        self.lines.append(line)
        return line

    def wait_for(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._line(deadline)
            except (TimeoutError, socket.timeout):
                pytest.fail("IDLE: no %s within %d s; untagged lines read: %r\n%s" % (what, timeout, self.lines,
                                                                                    diagnostics()))
            if pred(line):
                return line

    def done(self):
        self.c.sock.settimeout(30)
        self.c.send(b"DONE\r\n")
        while not self.c.readline().startswith(b"I1 "):
            pass
        self.c.logout()


def fetch_flags(line, seq):
    """The flags of an untagged `* seq FETCH (... FLAGS (...) ...)`, else None."""
    m = re.match(rb"\* (\d+) FETCH \((.*)\)\r?\n?$", line)
    if not m or int(m.group(1)) != seq:
        return None
    f = re.search(rb"FLAGS \(([^)]*)\)", m.group(2))
    return set(f.group(1).decode().split()) - {"\\Recent"} if f else None


_MESH = []  # the module's mesh, for what a failure prints


def diagnostics():
    """What each site and gateway said lately: a failed wait prints it, so that a replication
    stall in CI can be told apart (a gateway that did not post, a site that parked or did not
    feed) without a second run."""
    if not _MESH:
        return ""
    m, out = _MESH[0], []
    for k, gw in enumerate(m.gws):
        lines = [l for l in gw.log_text().splitlines() if ": warning: " in l or ": error: " in l
                 or "state articles" in l or "merged" in l]
        out.append("--- gateway %d (last of %d lines):\n%s" % (k + 1, len(lines), "\n".join(lines[-25:])))
    for site in m.sites:
        for name in ("errlog", "news", "news.err", "news.notice", "keeper.log"):
            f = site.dir / "log" / name
            if f.exists():
                tail = f.read_text(errors="replace").splitlines()[-15:]
                out.append("--- %s %s:\n%s" % (site.name, name, "\n".join(tail)))
        incoming = site.dir / "spool" / "incoming"
        parked = [f.name for f in incoming.iterdir() if f.is_file()] if incoming.is_dir() else []
        out.append("--- %s spool/incoming: %s" % (site.name, parked or "empty"))
    return "\n".join(out)


def until(what, fn, timeout=WAIT, every=0.5):
    """Poll fn() -> (done, info) until done; fail with the last info after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            ok, last = fn()
        except (OSError, imaplib.IMAP4.error, poplib.error_proto) as e:
            ok, last = False, "%s: %s" % (type(e).__name__, e)
        if ok:
            return last
        if time.monotonic() > deadline:
            pytest.fail("%s: not within %d s; last seen:\n%s\n%s" % (what, timeout, last, diagnostics()))
        time.sleep(every)


def cancelled_everywhere(m, article):
    """Waits until every site answers 430 for the article (its owner's cancel went round)."""
    for site in m.sites:
        def cancelled(site=site):
            with site.client() as c:
                r = c.stat(article)
            return r.startswith("430"), r
        until("%s cancelled at %s" % (article, site.name), cancelled)


def deliver(env, subject):
    msg = (b"From: sender@example.net\nTo: %s\nSubject: %s\nMessage-ID: <%s.%s@example.net>\n\nbody of %s\n"
           % (USER.encode(), subject.encode(), secrets.token_hex(8).encode(), TOKEN.encode(), subject.encode()))
    r = env(["deliver", "--verbose", "--to", USER], input=msg, timeout=120)
    assert r.returncode == 0, out(r)
    m = DELIVERED.search(out(r))
    return m.group(1) if m else None


def everywhere(m, subjects, sites=(0, 1, 2), timeout=WAIT):
    """Wait until each of `subjects` is shown at every site in `sites`; returns {site: {subject:
    UID there}}. (Whether the UIDs agree is test_same_uidvalidity_and_uids_at_every_site's and
    the partition test's business: the others work with each site's own.)"""
    def check():
        views = {k: view(m, k) for k in sites}
        uids = {k: {s: v.uid_of(s) for s in subjects} for k, v in views.items()}
        return all(u is not None for mp in uids.values() for u in mp.values()), (uids, views)
    uids, _ = until("%s at sites %s" % (subjects, [k + 1 for k in sites]), check, timeout)
    return uids


def consistent(maps):
    """No UID names two different messages in any of `maps` ({uid: subject})."""
    named = {}
    for mp in maps:
        for uid, subject in mp.items():
            named.setdefault(uid, set()).add(subject)
    return {u: s for u, s in named.items() if len(s) > 1}


# --- tests -----------------------------------------------------------------------------------

def test_same_uidvalidity_and_uids_at_every_site(mesh):
    subjects = ["%s same uids %d" % (TOKEN, i) for i in range(5)]
    for s in subjects:
        deliver(mesh.envs[0], s)

    def same():
        views = [view(mesh, k) for k in range(3)]
        maps = [v.subjects() for v in views]
        ok = (len({v.validity for v in views}) == 1 and maps[0] == maps[1] == maps[2] and
              set(subjects) <= set(maps[0].values()))
        return ok, views
    views = until("the same UIDVALIDITY and UID -> Subject map at the three sites", same)
    uids = [views[0].uid_of(s) for s in subjects]
    assert uids == sorted(uids), "UIDs not in arrival order: %s" % views[0]


def test_flags_and_keywords_reach_the_other_sites_and_their_idle_sessions(mesh):
    subject = "%s flags" % TOKEN
    deliver(mesh.envs[0], subject)
    uids = everywhere(mesh, [subject])
    uid1, uid3 = uids[0][subject], uids[2][subject]

    idle3 = Idle(mesh.gws[2])
    seq3 = idle3.seq_of(uid3)
    idle3.start()
    c1 = imap(mesh.gws[0])
    c1.select("INBOX")
    typ, data = c1.uid("STORE", str(uid1), "+FLAGS", r"(\Seen \Flagged $Label1)")
    assert typ == "OK", data
    want = {"\\Seen", "\\Flagged", "$Label1"}
    idle3.wait_for(lambda l: want <= (fetch_flags(l, seq3) or set()), "FETCH of %s at site 3" % want)
    idle3.done()
    for k in (1, 2):
        until("%s on %r at site %d" % (want, subject, k + 1),
              lambda k=k: ((lambda v: (v.flags_of(subject) is not None and want <= v.flags_of(subject), v))(view(mesh, k))))

    # the other way: site 3 clears \Seen, site 1's IDLE session and site 2 see it
    idle1 = Idle(mesh.gws[0])
    seq1 = idle1.seq_of(uid1)
    idle1.start()
    c3 = imap(mesh.gws[2])
    c3.select("INBOX")
    typ, data = c3.uid("STORE", str(uid3), "-FLAGS", r"(\Seen)")
    assert typ == "OK", data
    c3.logout()
    after = {"\\Flagged", "$Label1"}

    def cleared(line):
        f = fetch_flags(line, seq1)
        return f is not None and after <= f and "\\Seen" not in f
    idle1.wait_for(cleared, "FETCH without \\Seen at site 1")
    idle1.done()
    c1.logout()
    for k in (0, 1):
        until("%s without \\Seen on %r at site %d" % (after, subject, k + 1),
              lambda k=k: ((lambda f: (f is not None and after <= f and "\\Seen" not in f, f))(
                  view(mesh, k).flags_of(subject))))

    # what carried them: state articles in the user's own group, sealed (no keyword in clear)
    with mesh.sites[1].client() as c:
        groups = [g for g, *_ in c.list_active("postern.*") if "rita" in g and not g.endswith(".encrypt")]
        assert len(groups) == 1, groups
        _, low, high, _ = c.group(groups[0])
        ids = [f[4] for f in c.over("%d-%d" % (low, high))]
        state = [i for i in ids if re.fullmatch(r"<s\.[^@>]+@postern\.invalid>", i)]
        assert state, "no state article in %s: %s" % (groups[0], ids)
        for i in state:
            _, lines = c.article(i)
            assert b"Label1" not in b"\n".join(lines), i


def modseqs_at(gw):
    """(HIGHESTMODSEQ, {uid: MODSEQ}) of the INBOX at a gateway (CONDSTORE, RFC 7162)."""
    c = imap(gw)
    try:
        typ, data = c.select("INBOX", readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error("EXAMINE: %s %s" % (typ, data))
        h = int(c.untagged_responses["HIGHESTMODSEQ"][0])
        typ, data = c.uid("FETCH", "1:*", "(MODSEQ)")
        if typ != "OK":
            raise imaplib.IMAP4.error("UID FETCH: %s %s" % (typ, data))
        got = {}
        for d in data:
            m = re.search(rb"UID (\d+) MODSEQ \((\d+)\)", d or b"")
            if m:
                got[int(m.group(1))] = int(m.group(2))
        return h, got
    finally:
        try:
            c.logout()
        except Exception:
            pass


def test_modseq_is_the_same_at_every_site(mesh):
    """A message's MODSEQ and the folder's HIGHESTMODSEQ come from the replicated state: the
    same at every site once merged, so a client's cached HIGHESTMODSEQ means the same after a
    failover; a CHANGEDSINCE at site 2 with h taken at site 1 returns the change made at site 1
    after h."""
    subjects = ["%s modseq %d" % (TOKEN, i) for i in range(2)]
    for s in subjects:
        deliver(mesh.envs[0], s)
    uids = everywhere(mesh, subjects)

    def same(pred=lambda got: True):
        got = [modseqs_at(mesh.gws[k]) for k in range(3)]
        return got[0] == got[1] == got[2] and pred(got[0]), got
    got = until("the same HIGHESTMODSEQ and MODSEQs at the three sites", same)
    h, before = got[0]
    assert h == max(before.values()) and min(before.values()) > 0, got[0]
    uid = uids[0][subjects[1]]
    c1 = imap(mesh.gws[0])
    c1.select("INBOX")
    typ, data = c1.uid("STORE", str(uid), "+FLAGS", r"(\Flagged)")
    assert typ == "OK", data
    c1.logout()

    def changed_at_site_2():
        c2 = imap(mesh.gws[1])
        try:
            typ, data = c2.select("INBOX", readonly=True)
            typ, data = c2.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % h)
            line = [d for d in data if d and re.search(rb"UID %d " % uid, d)]
            return bool(line) and b"\\Flagged" in line[0] and int(re.search(rb"MODSEQ \((\d+)\)", line[0]).group(1)) > h, data
        finally:
            c2.logout()
    until("site 1's change after HIGHESTMODSEQ %d in a CHANGEDSINCE at site 2" % h, changed_at_site_2)
    got = until("the new MODSEQ the same at the three sites", lambda: same(lambda g: g[1].get(uid, 0) > h))
    assert got[0][0] == got[0][1][uid] > h, got[0]


def test_expunge_at_one_site_removes_the_message_everywhere(mesh):
    gone, kept = "%s expunged" % TOKEN, "%s kept beside the expunged" % TOKEN
    deliver(mesh.envs[0], gone)
    deliver(mesh.envs[0], kept)
    uids = everywhere(mesh, [gone, kept])
    until("%r in POP3 at site 1" % gone, lambda: ((lambda p: (gone in p, p))(pop3_subjects(mesh.gws[0]))))
    article = "<%s@postern.invalid>" % pop3_subjects(mesh.gws[0])[gone][1]  # UIDL "m.HEX"

    idle1 = Idle(mesh.gws[0])
    seq1 = idle1.seq_of(uids[0][gone])
    idle1.start()
    c2 = imap(mesh.gws[1])
    c2.select("INBOX")
    typ, data = c2.uid("FETCH", str(uids[1][gone]), "(BODY.PEEK[])")  # read, then deleted
    assert typ == "OK", data
    typ, data = c2.uid("STORE", str(uids[1][gone]), "+FLAGS", r"(\Deleted)")
    assert typ == "OK", data
    typ, data = c2.expunge()
    assert typ == "OK", data
    c2.logout()
    idle1.wait_for(lambda l: l.strip() == b"* %d EXPUNGE" % seq1, "* %d EXPUNGE at site 1" % seq1)
    idle1.done()
    for k in (0, 2):
        def check(k=k):
            v = view(mesh, k)
            return gone not in v.subjects().values() and v.uid_of(kept) == uids[k][kept], v
        until("%r gone at site %d, %r kept" % (gone, k + 1, kept), check)
    until("%r gone from POP3 UIDL at site 1" % gone,
          lambda: ((lambda p: (gone not in p and kept in p, p))(pop3_subjects(mesh.gws[0]))))
    # the owner's expunge cancels the article itself, with its Cancel-Key, at every site
    cancelled_everywhere(mesh, article)


def test_pop3_dele_quit_at_one_site_removes_the_message_everywhere(mesh):
    gone, kept = "%s pop3 deleted" % TOKEN, "%s kept beside the pop3 deleted" % TOKEN
    deliver(mesh.envs[0], gone)
    deliver(mesh.envs[0], kept)
    uids = everywhere(mesh, [gone, kept])
    p = pop3(mesh.gws[2])
    seen = pop3_view(p)
    assert gone in seen, seen
    p.dele(seen[gone][0])
    p.quit()
    for k in (0, 1):
        def check(k=k):
            v = view(mesh, k)
            return gone not in v.subjects().values() and v.uid_of(kept) == uids[k][kept], v
        until("%r gone at site %d after DELE+QUIT at site 3" % (gone, k + 1), check)

    # it stays gone: after more mail has gone round, and at a new gateway that reads the whole
    # state from the group (site_id 4: it gives no UIDs while the others do)
    later = "%s after the pop3 delete" % TOKEN
    deliver(mesh.envs[1], later)
    everywhere(mesh, [later])
    cold = mesh.factories[0].start(site_id=4, uid_claim_delay=CLAIM_DELAY)
    try:
        mesh.gws.append(cold)
        mesh.obs.append([])

        def check():
            v = view(mesh, 3)
            return v.uid_of(later) is not None, v
        v = until("a new gateway at site 1 shows %r" % later, check)
        assert gone not in v.subjects().values(), v
        assert v.uid_of(kept) == uids[0][kept], v
        assert v.validity == view(mesh, 0).validity
    finally:
        mesh.gws.pop()
        mesh.obs.pop()
        cold.stop()
    for k in range(3):
        assert gone not in view(mesh, k).subjects().values()
    assert gone not in pop3_subjects(mesh.gws[2])


def folder_list(c, cmd="LIST"):
    typ, data = c.list('""', "*") if cmd == "LIST" else c.lsub('""', "*")
    assert typ == "OK", data
    got = {}
    for line in data:
        m = re.match(rb'\(([^)]*)\) "/" (.+)$', line)
        assert m, line
        got[m.group(2).strip(b'"').decode()] = m.group(1).decode()
    return got


def test_folders_are_the_same_at_every_site(mesh):
    """CREATE (with its missing superior level), SUBSCRIBE, RENAME and DELETE made at one site
    show at the others, with the same UIDVALIDITY per folder (issue 13)."""
    c1, c3, c2 = imap(mesh.gws[0]), imap(mesh.gws[2]), imap(mesh.gws[1])
    name = "Projects%s" % TOKEN
    assert c1.create(name + "/2026")[0] == "OK"  # creates the level above as well
    assert c1.create("Lists%s" % TOKEN)[0] == "OK"
    assert c1.subscribe("Lists%s" % TOKEN)[0] == "OK"
    assert c1.rename("Lists%s" % TOKEN, "News%s" % TOKEN)[0] == "OK"
    mine = folder_list(c1)
    assert mine[name] == "\\HasChildren" and mine[name + "/2026"] == "\\HasNoChildren", mine
    assert "Lists%s" % TOKEN not in mine and mine["Archive"] == "\\HasNoChildren \\Archive", mine

    def listed():
        there = folder_list(c3)
        return all(k in there and there[k] == v for k, v in mine.items()) and len(there) == len(mine), there
    until("the folders made at site 1 listed at site 3", listed)
    assert "News%s" % TOKEN in folder_list(c3, "LSUB")

    def validity(c, folder):
        typ, data = c.status(folder, "(UIDVALIDITY UIDNEXT MESSAGES)")
        assert typ == "OK", data
        return re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1)
    assert validity(c1, name) == validity(c3, name) != validity(c1, name + "/2026")
    # an empty folder selects at every site with that UIDVALIDITY
    typ, _ = c3.select(name + "/2026", readonly=True)
    assert typ == "OK" and c3.untagged_responses["UIDVALIDITY"][0] == validity(c1, name + "/2026")

    # a DELETE at site 2 reaches site 1; the name made again is a new folder
    until("site 2 knows the folder", lambda: (name + "/2026" in folder_list(c2), None))
    old = validity(c2, name + "/2026")
    assert c2.delete(name + "/2026")[0] == "OK"
    until("the folder deleted at site 2 gone at site 1", lambda: (name + "/2026" not in folder_list(c1),
                                                                    folder_list(c1)))
    assert folder_list(c1)[name] == "\\HasNoChildren"
    assert c1.create(name + "/2026")[0] == "OK"
    assert validity(c1, name + "/2026") != old
    for c in (c1, c2, c3):
        c.logout()


def test_a_move_to_trash_and_empty_trash_reach_every_site(mesh):
    """Thunderbird's Delete at site 1 (UID MOVE to Trash, issue 13): sites 2 and 3 show the
    message in Trash under the same UIDVALIDITY and UID, with its flags, and no longer in the
    INBOX; the article stays. Empty Trash at site 3 then removes it from every site's Trash
    and cancels the article everywhere."""
    subject = "%s moved to Trash" % TOKEN
    deliver(mesh.envs[0], subject)
    uids = everywhere(mesh, [subject])
    until("%r in POP3 at site 1" % subject, lambda: ((lambda p: (subject in p, p))(pop3_subjects(mesh.gws[0]))))
    article = "<%s@postern.invalid>" % pop3_subjects(mesh.gws[0])[subject][1]
    c1 = imap(mesh.gws[0])
    c1.select("INBOX")
    assert c1.uid("STORE", str(uids[0][subject]), "+FLAGS", r"(\Seen \Flagged)")[0] == "OK"
    typ, data = c1.uid("MOVE", str(uids[0][subject]), "Trash")
    assert typ == "OK", data
    c1.logout()
    here = view(mesh, 0, "Trash")
    uid = here.uid_of(subject)
    assert uid and {"\\Seen", "\\Flagged"} <= here.flags_of(subject), here
    for k in (1, 2):
        def moved(k=k):
            t, i = view(mesh, k, "Trash"), view(mesh, k)
            return (t.validity == here.validity and t.uid_of(subject) == uid and
                    {"\\Seen", "\\Flagged"} <= (t.flags_of(subject) or set()) and i.uid_of(subject) is None), (t, i)
        until("%r in Trash at site %d as at site 1" % (subject, k + 1), moved)
    for site in mesh.sites:
        with site.client() as c:
            assert c.stat(article).startswith("223"), "cancelled while Trash holds it"
    c3 = imap(mesh.gws[2])
    c3.select("Trash")
    assert c3.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    assert c3.expunge()[0] == "OK"
    c3.logout()
    for k in (0, 1):
        until("Trash empty at site %d" % (k + 1),
              lambda k=k: ((lambda t: (t.uid_of(subject) is None, t))(view(mesh, k, "Trash"))))
    cancelled_everywhere(mesh, article)


def test_an_appended_draft_reaches_every_site(mesh):
    """Thunderbird's save draft at site 1 (APPEND to Drafts, issue 13): every site shows the
    draft in Drafts under the UIDVALIDITY and UID the APPENDUID named, with \\Draft, and never
    in the INBOX."""
    subject = "%s appended draft" % TOKEN
    msg = ("From: %s\r\nSubject: %s\r\n\r\nsaved at site 1\r\n" % (USER, subject)).encode()
    c1 = imap(mesh.gws[0])
    typ, data = c1.append("Drafts", r"(\Draft)", None, msg)
    assert typ == "OK", data
    m = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    validity, uid = int(m.group(1)), int(m.group(2))
    c1.logout()
    for k in (0, 1, 2):
        def filed(k=k):
            d, i = view(mesh, k, "Drafts"), view(mesh, k)
            return (d.validity == validity and d.uid_of(subject) == uid and
                    "\\Draft" in (d.flags_of(subject) or set()) and i.uid_of(subject) is None), (d, i)
        until("%r in Drafts at site %d" % (subject, k + 1), filed)


def test_partition_and_heal_converge(mesh):
    m = mesh
    pre = ["%s before the partition %d" % (TOKEN, i) for i in range(4)]
    for s in pre:
        deliver(m.envs[0], s)
    base = everywhere(m, pre)
    x, y, z1, z2 = pre
    before = view(m, 0)

    for link in m.links.values():
        link.cut()
    side1 = ["%s side 1 %d" % (TOKEN, i) for i in range(2)]
    side23 = ["%s side 2+3 %d" % (TOKEN, i) for i in range(2)]
    ids1 = [deliver(m.side1, s) for s in side1]
    ids23 = [deliver(m.side23, s) for s in side23]

    # side {1}: flag x, keyword on y, expunge z1, \Seen on its new mail
    c1 = imap(m.gws[0])
    c1.select("INBOX")
    for uid, op in ((base[0][x], r"(\Flagged)"), (base[0][y], "($Side1)"), (base[0][z1], r"(\Deleted)")):
        typ, data = c1.uid("STORE", str(uid), "+FLAGS", op)
        assert typ == "OK", data
    typ, data = c1.uid("EXPUNGE", str(base[0][z1]))
    assert typ == "OK", data
    got1 = everywhere(m, side1, sites=(0,))
    typ, data = c1.uid("STORE", str(got1[0][side1[0]]), "+FLAGS", r"(\Seen)")
    assert typ == "OK", data
    c1.logout()

    # side {2, 3}: \Answered on x, keyword on y, POP3 DELE of z2, \Flagged on its new mail
    c3 = imap(m.gws[2])
    c3.select("INBOX")
    for uid, op in ((base[2][x], r"(\Answered)"), (base[2][y], "($Side23)")):
        typ, data = c3.uid("STORE", str(uid), "+FLAGS", op)
        assert typ == "OK", data
    c3.logout()
    p = pop3(m.gws[1])
    seen = pop3_view(p)
    assert z2 in seen, seen
    p.dele(seen[z2][0])
    p.quit()
    got23 = everywhere(m, side23, sites=(1, 2))
    c2 = imap(m.gws[1])
    c2.select("INBOX")
    typ, data = c2.uid("STORE", str(got23[1][side23[0]]), "+FLAGS", r"(\Flagged)")
    assert typ == "OK", data
    c2.logout()

    def side_state(k, flags, gone):
        def check():
            v = view(m, k)
            f = v.flags_of(x)
            return f is not None and flags <= f and gone not in v.subjects().values(), v
        return check
    until("side 1's changes at site 1", side_state(0, {"\\Flagged"}, z1))
    until("side 2+3's changes at site 2", side_state(1, {"\\Answered"}, z2))
    until("side 2+3's changes at site 3", side_state(2, {"\\Answered"}, z2))

    # the partition held: neither side has the other's mail or changes
    v1, v2, v3 = view(m, 0), view(m, 1), view(m, 2)
    for v, other, k in ((v1, side23, 1), (v2, side1, 2), (v3, side1, 3)):
        assert not set(other) & set(v.subjects().values()), "partition leaked mail to site %d: %s" % (k, v)
    assert z2 in v1.subjects().values() and "\\Answered" not in v1.flags_of(x), v1
    for v in (v2, v3):
        assert z1 in v.subjects().values() and "\\Flagged" not in v.flags_of(x), v
    with m.sites[0].client() as c:
        assert all(c.stat(i).startswith("430") for i in ids23 if i)
    for s in m.sites[1:]:
        with s.client() as c:
            assert all(c.stat(i).startswith("430") for i in ids1 if i)

    for link in m.links.values():
        link.heal()
    # mail keeps coming after the heal, at both sides (innfeed may leave a backlog until the next article)
    after = ["%s after the heal %d" % (TOKEN, i) for i in range(2)]
    deliver(m.envs[0], after[0])
    deliver(m.envs[1], after[1])

    expected = (set(before.subjects().values()) - {z1, z2}) | set(side1) | set(side23) | set(after)
    want_flags = {x: {"\\Flagged", "\\Answered"}, y: {"$Side1", "$Side23"},
                  side1[0]: {"\\Seen"}, side23[0]: {"\\Flagged"}}

    def converged():
        views = [view(m, k) for k in range(3)]
        full = [v.msgs for v in views]
        subjects = sorted(views[0].subjects().values())
        ok = (len({v.validity for v in views}) == 1 and full[0] == full[1] == full[2] and
              set(subjects) == expected and len(subjects) == len(expected) and
              all(views[0].flags_of(s) is not None and f <= views[0].flags_of(s) for s, f in want_flags.items()))
        return ok, views
    final = until("the three sites converge after the heal", converged, timeout=HEAL_WAIT)
    assert final[0].validity == before.validity, (before, final[0])
    for k in range(3):  # POP3 serves the same maildrop, under the same UIDLs everywhere
        until("POP3 at site %d shows the converged mailbox" % (k + 1),
              lambda k=k: ((lambda p: (set(p) == expected, p))(pop3_subjects(m.gws[k]))))
    assert len({frozenset(v for _, v in pop3_subjects(gw).values()) for gw in m.gws}) == 1

    # no UID named two messages: not at any one site in all this module's views, nor between
    # what any site ever showed and the converged mailbox (during the partition the two sides
    # may have shown one UID for different messages; after the heal it names neither)
    final_map = final[0].subjects()
    for k in range(3):
        bad = consistent(m.obs[k] + [final_map])
        assert not bad, "site %d: a UID named two messages: %s" % (k + 1, bad)
