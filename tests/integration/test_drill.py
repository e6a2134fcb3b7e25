"""The disaster drill of issue 10, built so that it would have caught what it found: several
new users added at once, their first messages in the same second, a burst delivered with
min_copies 2, and site 1 killed with kill -9 **immediately** after the last acknowledgement
(no settling time). Every acknowledged message must then be readable at sites 2 and 3, over
IMAP and POP3. The old drill let replication settle before the kill and so passed over a
loss: 240 and "441 435" were counted as copies, and 101 of a user's 102 messages existed
only at the site that died."""
import imaplib
import poplib
import re
import threading
import time

import pytest

from conftest import _GatewayFactory, _free_port, multi_site_env

pytestmark = pytest.mark.mesh

USERS = ["ann.drill@example.org", "ben.drill@example.org", "cat.drill@example.org", "dan.drill@example.org"]
PASSWORD = "drill password 1"
BURST = 25  # messages per user after the first


def message(user, n):
    return b"From: drill@example.net\nTo: %s\nSubject: %s %d\n\nbody %d\n" % (user.encode(), user.encode(), n, n)


def run_all(fns):
    results = [None] * len(fns)

    def one(i):
        results[i] = fns[i]()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return results


def imap_subjects(gw, user):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(user, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK", data
    subjects = set()
    if int(data[0]):
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        if typ == "NO" and b"[UNAVAILABLE]" in data[0]:
            c.logout()  # a site still catching up (RFC 5530: try again): the caller's wait goes on
            return set()
        assert typ == "OK", data
        subjects = {item[1].decode().strip()[len("Subject: "):] for item in data if isinstance(item, tuple)}
    c.logout()
    return subjects


def pop3_count(gw, user):
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=120)
    p.user(user)
    p.pass_(PASSWORD)
    n, _ = p.stat()
    p.quit()
    return n


def test_kill_site1_right_after_the_last_acknowledgement(inn_sites, tmp_path_factory):
    s1, s2, s3 = inn_sites.mesh(3)
    env = multi_site_env(tmp_path_factory.mktemp("drill1"), [s1, s2, s3])
    assert env(["authority", "init"]).returncode == 0
    envs = {s2: multi_site_env(tmp_path_factory.mktemp("drill2"), [s2, s3, s1], shared=env),
            s3: multi_site_env(tmp_path_factory.mktemp("drill3"), [s3, s1, s2], shared=env)}
    # new users at once
    adds = run_all([lambda u=u: env(["user", "add", u, "--password-stdin"], input=PASSWORD + "\n") for u in USERS])
    for r in adds:
        assert r.returncode == 0, (r.stdout + r.stderr).decode()
    # their first messages in the same second, then the burst, four deliveries at a time
    acked = {u: set() for u in USERS}

    def deliver_all(user, numbers):
        for n in numbers:
            r = env(["deliver", "--to", user], input=message(user, n), timeout=120)
            assert r.returncode in (0, 75), (r.stdout + r.stderr).decode()
            if r.returncode == 0:
                acked[user].add("%s %d" % (user, n))

    run_all([lambda u=u: deliver_all(u, [0]) for u in USERS])
    run_all([lambda u=u: deliver_all(u, range(1, BURST + 1)) for u in USERS])
    s1.kill9()  # at once: nothing has settled
    total = sum(len(a) for a in acked.values())
    assert total >= len(USERS) * (BURST + 1) * 0.9, acked  # a healthy mesh acknowledges nearly all

    factories = []
    try:
        gws = {}
        for site in (s2, s3):
            f = _GatewayFactory(envs[site], tmp_path_factory, site.addr)
            factories.append(f)
            gw = f.start(pop3s="%s:%d" % (site.addr, _free_port(site.addr)))
            gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
            gws[site] = gw
        # innfeed from site 2 carries to site 3 what only sites 1 and 2 held: bounded wait
        deadline = time.monotonic() + 120
        for site, gw in gws.items():
            for user in USERS:
                while True:
                    missing = acked[user] - imap_subjects(gw, user)
                    if not missing:
                        break
                    assert time.monotonic() < deadline, "site %s lacks %d of %s's %d acknowledged messages: %s" % (
                        site.name, len(missing), user, len(acked[user]), sorted(missing)[:5])
                    time.sleep(1)
                assert pop3_count(gw, user) >= len(acked[user])
    finally:
        for f in factories:
            f.close()
        for s in (s2, s3):
            s.stop()
