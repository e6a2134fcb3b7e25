"""Two independent INN sites holding the same mail under different article numbers (site B
got an unrelated article first): the gateways of both serve the same messages under the same
IMAP UIDVALIDITY and UIDs (the replicated state numbers them, not the sites) and the same POP3
UIDLs (from the Message-ID), so a phone failing over to the other site downloads nothing again."""
import imaplib
import os
import poplib
import re
import secrets
import subprocess
import time

import pytest

from conftest import _GatewayFactory, _free_port, multi_site_env
from nntplib_min import make_article

USER = "frank.sites@example.org"
PASSWORD = "two sites password"


@pytest.fixture(scope="module")
def two(inn_sites, tmp_path_factory):
    a, b = inn_sites(), inn_sites()
    env_a = multi_site_env(tmp_path_factory.mktemp("env_a"), [a, b])
    r = env_a(["authority", "init"])
    assert r.returncode == 0, r.stderr
    env_b = multi_site_env(tmp_path_factory.mktemp("env_b"), [b, a], shared=env_a)
    r = env_a(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    group = "postern.org.example.frank_2esites"
    r = env_a(["user", "list"])
    m = re.search(r"postern\.org\.example\.\S+", r.stdout.decode() + r.stderr.decode())
    if m:
        group = m.group(0).rstrip(":,")
    with b.client() as c:  # site B numbers the mail one higher
        c.post(make_article(group, "<unrelated.%s@example.net>" % secrets.token_hex(6), b"not mail\n"))
    for i in range(3):
        r = env_a(["deliver", "--to", USER], input=b"From: x@example.net\nSubject: both sites %d\n\nbody %d\n" % (i, i))
        assert r.returncode == 0, r.stderr
    gws = []
    factories = []
    for site_id, env, site in ((1, env_a, a), (2, env_b, b)):
        f = _GatewayFactory(env, tmp_path_factory, site.addr)
        # each its own site_id, as docs/deploy.md says: with one id both number at once, and
        # the loser renumbers (the CI run under the sanitizer read site A before it had)
        gw = f.start(site_id=site_id, pop3s="%s:%d" % (site.addr, _free_port(site.addr)))
        gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
        gws.append(gw)
        factories.append(f)
    yield gws
    for f in factories:
        f.close()


def uidls(gw):
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=20)
    p.user(USER)
    p.pass_(PASSWORD)
    _, lines, _ = p.uidl()
    p.quit()
    return [l.split()[1] for l in lines]


def imap_view(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    c.select("INBOX", readonly=True)
    validity = c.untagged_responses["UIDVALIDITY"][0]
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    seen = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            seen[item[1].strip().decode()] = uid
    c.logout()
    return validity, seen


def test_same_uidls_and_uids_under_other_article_numbers(two):
    """UIDs come from the replicated state, numbered in arrival order, not from a site's
    article numbers (site B's are one higher): the same UIDVALIDITY and UIDs at both, even
    with no state article between them (these two sites do not peer)."""
    gw_a, gw_b = two
    # site B waits uid_claim_delay for site A's numbering (a state article), then shows it
    deadline = time.monotonic() + 60
    while True:
        ua, ub = uidls(gw_a), uidls(gw_b)
        va, seen_a = imap_view(gw_a)
        vb, seen_b = imap_view(gw_b)
        if (ua, va, seen_a) == (ub, vb, seen_b) and len(seen_a) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(ua) == 3 and ua == ub
    assert va == vb
    assert set(seen_a) == set(seen_b) == {"Subject: both sites %d" % i for i in range(3)}
    assert seen_a == seen_b, (seen_a, seen_b)


def test_user_add_refuses_until_every_site_has_the_groups(inn_sites, tmp_path_factory):
    a, b = inn_sites(), inn_sites()
    env = multi_site_env(tmp_path_factory.mktemp("env_remote"), [a, b])
    # site b is "administered elsewhere": no innconf, so postern cannot create its groups
    env.conf.write_text(re.sub(r"(?m)^innconf = .*%s.*\n" % re.escape(str(b.dir)), "", env.conf.read_text()))
    assert env(["authority", "init"]).returncode == 0
    r = env(["user", "add", "remote.site@example.org", "--password-stdin"], input=PASSWORD + "\n")
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 75, out
    assert "site %s: group postern.org.example.remote_2esite.encrypt is missing" % b.name in out, out
    assert "ctlinnd newgroup" in out and "nothing was posted" in out, out
    with a.client() as c:
        assert c.group("postern.org.example.remote_2esite.encrypt")[0] == 0  # no key record posted
    # the remote admin creates them; the second run succeeds
    b.newgroup("postern.org.example.remote_2esite", "postern.org.example.remote_2esite.encrypt")
    r = env(["user", "add", "remote.site@example.org", "--password-stdin"], input=PASSWORD + "\n")
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert out.count("groups verified") == 2, out
    a.stop()
    b.stop()


def test_mail_the_first_site_never_numbered_shows_at_the_second_to_short_sessions(inn_sites, tmp_path_factory):
    """Site 1 took the delivery and died before its gateway numbered the mail (no state
    article ever comes from it). Site 2 waits uid_claim_delay for site 1's claim, then numbers
    the mail itself — counted from when the article was posted, not from when the account was
    opened: a POP3 client that polls with short sessions (each opens the account afresh) must
    see the mail once the delay has passed, not never."""
    a, b = inn_sites(), inn_sites()
    env_a = multi_site_env(tmp_path_factory.mktemp("env_dead_a"), [a, b])
    assert env_a(["authority", "init"]).returncode == 0
    env_b = multi_site_env(tmp_path_factory.mktemp("env_dead_b"), [b, a], shared=env_a)
    user = "short.sessions@example.org"
    r = env_a(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = env_a(["deliver", "--to", user], input=b"From: x@example.net\nSubject: never numbered\n\nbody\n")
    assert r.returncode == 0, r.stderr
    a.stop()  # site 1 is gone; its gateway never ran
    f = _GatewayFactory(env_b, tmp_path_factory, b.addr)
    try:
        delay = 3
        gw = f.start(site_id=2, uid_claim_delay=delay, pop3s="%s:%d" % (b.addr, _free_port(b.addr)))
        port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
        start = time.monotonic()
        counts = []
        while time.monotonic() - start < 20 * delay:
            p = poplib.POP3_SSL(b.addr, port, context=gw.ssl_context(), timeout=20)
            p.user(user)
            p.pass_(PASSWORD)
            counts.append(p.stat()[0])
            p.quit()
            if counts[-1] == 1:
                break
            time.sleep(0.3)
        assert counts[-1] == 1, "after %.0f s and %d sessions: %s" % (time.monotonic() - start, len(counts), counts)
    finally:
        f.close()


def test_a_state_change_a_paused_site_parks_reaches_the_other_site(inn_sites, tmp_path_factory):
    """nnrpd answers 240 for a POST it only parks (innd paused or throttled), and a parked
    state article reaches no other site until rnews -U runs there. A gateway counts its
    state article posted only once a site shows it, else it posts to the next site: a flag
    set at site 1 while site 1's innd is paused still shows at site 2."""
    a, b = inn_sites.mesh(2, start=False)
    # readers (and their POSTs) while innd is paused: nnrpd then parks every POST, on new
    # connections too, which makes the trap certain rather than a race with old connections
    with open(a.innconf, "a") as f:
        f.write("readerswhenstopped: true\n")
    a.start()
    b.start()
    env_a = multi_site_env(tmp_path_factory.mktemp("env_paused_a"), [a, b])
    assert env_a(["authority", "init"]).returncode == 0
    env_b = multi_site_env(tmp_path_factory.mktemp("env_paused_b"), [b, a], shared=env_a)
    env_a.conf.write_text(env_a.conf.read_text() + "\n[deliver]\nconfirm_timeout = 2\n")
    user = "paused.site@example.org"
    r = env_a(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = env_a(["deliver", "--to", user], input=b"From: x@example.net\nSubject: flag me\n\nbody\n")
    assert r.returncode == 0, r.stderr
    fa, fb = _GatewayFactory(env_a, tmp_path_factory, a.addr), _GatewayFactory(env_b, tmp_path_factory, b.addr)
    try:
        ga, gb = fa.start(site_id=1), fb.start(site_id=2, uid_claim_delay=1)

        def flags_at(gw):
            c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
            c.login(user, PASSWORD)
            typ, data = c.select("INBOX", readonly=True)
            got = None
            if typ == "OK" and int(data[0]):
                typ, data = c.fetch("1", "(FLAGS)")
                got = data[0]
            c.logout()
            return got

        deadline = time.monotonic() + 60
        while flags_at(gb) is None:  # numbered and shown at site 2 too
            assert time.monotonic() < deadline, gb.log_text()[-2000:]
            time.sleep(0.5)
        r = subprocess.run(["/usr/lib/news/bin/ctlinnd", "pause", "test"], env=dict(os.environ, INNCONF=str(a.innconf)),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            c = imaplib.IMAP4_SSL(ga.addr, ga.imaps_port, ssl_context=ga.ssl_context(), timeout=20)
            c.login(user, PASSWORD)
            assert c.select("INBOX")[0] == "OK"
            typ, data = c.store("1", "+FLAGS", "(\\Flagged)")
            assert typ == "OK", data
            c.logout()
            deadline = time.monotonic() + 60
            while b"\\Flagged" not in (flags_at(gb) or b""):
                assert time.monotonic() < deadline, "site 2 never saw the flag:\n" + ga.log_text()[-3000:]
                time.sleep(0.5)
            assert "does not show it (parked?)" in ga.log_text()
        finally:
            subprocess.run(["/usr/lib/news/bin/ctlinnd", "go", "test"], env=dict(os.environ, INNCONF=str(a.innconf)),
                           capture_output=True, timeout=60)
    finally:
        fa.close()
        fb.close()
