"""Only the recipient and the admin can cancel a mail article (issue 12, item 3). Every article
carries an RFC 8315 Cancel-Lock with two locks: the owner's, whose key comes from the
message's stream key (only the recipient's vault unseals it), and the admin's, from the
delivery secret (for purging a deleted user's mail). INN 2.7 checks a cancel's Cancel-Key
against the lock at every site (Debian's inn2 links libcanlock): a cancel without a key,
with a made-up key, or with the lock itself as the key removes nothing anywhere, whoever
posts it with the shared posting account; the admin's key removes the article at every
site. Before, articles had no lock, so no cancel could ever remove one, and a deletion could
not reach the other sites at all.

No timing is assumed: the forged cancels are posted before a genuine cancel of another
article, and INN handles a site's articles in order, so once the genuine one has taken
effect everywhere the forged ones have been seen everywhere too."""
import base64
import hashlib
import os
import re
import time

import pytest

from conftest import multi_site_env

pytestmark = pytest.mark.mesh

USER = "carl.cancel@example.org"
PASSWORD = "cancel lock password"
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>) on")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def pair(inn_sites, tmp_path_factory):
    sites = inn_sites.mesh(2)
    env = multi_site_env(tmp_path_factory.mktemp("cancel"), sites)
    assert env(["authority", "init"]).returncode == 0
    r = env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    yield env, sites
    for s in sites:
        s.stop()


def deliver(env, subject):
    r = env(["deliver", "--verbose", "--to", USER], input=b"Subject: %s\n\nbody\n" % subject.encode())
    assert r.returncode == 0, out(r)
    return DELIVERED.search(out(r)).group(1)


def headers(c, msgid):
    """The article's header fields, folded lines unfolded (INN folds a long Cancel-Lock)."""
    _, lines = c.article(msgid)
    fields = []
    for line in lines:
        if not line:
            break
        line = line.decode()
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += " " + line.strip()
        else:
            fields.append(line)
    h = {}
    for f in fields:
        name, _, value = f.partition(":")
        h[name.lower()] = " ".join(value.split())
    return h


def admin_key(env, msgid):
    """docs/formats.md section 3: BLAKE2b-32(key = delivery secret; "postern cancel-lock admin
    v1" || 0 || Message-ID); the Cancel-Key is "sha256:" and its base64."""
    path = re.search(r"(?m)^delivery_secret = (.*)$", env.conf.read_text()).group(1).strip()
    secret = bytes.fromhex(open(path).read().strip())
    k = hashlib.blake2b(b"postern cancel-lock admin v1\0" + msgid.encode(), key=secret, digest_size=32).digest()
    return "sha256:" + base64.b64encode(k).decode()


def lock_of(key):
    ckey = key[len("sha256:"):]
    return "sha256:" + base64.b64encode(hashlib.sha256(ckey.encode()).digest()).decode()


def cancel(c, group, msgid, key=None, tag="x"):
    lines = ["From: someone <someone@example.net>", "Newsgroups: " + group,
             "Subject: cmsg cancel " + msgid, "Control: cancel " + msgid,
             "Message-ID: <cancel.%s.%d.%s@example.net>" % (tag, time.time_ns(), os.urandom(4).hex())]
    if key:
        lines.append("Cancel-Key: " + key)
    return c.post(("\r\n".join(lines) + "\r\n\r\ncancel\r\n").encode())


def wait_gone(sites, msgid, timeout=120):
    deadline = time.monotonic() + timeout
    for s in sites:
        with s.client() as c:
            while not c.stat(msgid).startswith("430"):
                assert time.monotonic() < deadline, "%s still at %s" % (msgid, s.name)
                time.sleep(0.2)


def wait_everywhere(sites, msgid, timeout=120):
    deadline = time.monotonic() + timeout
    for s in sites:
        with s.client() as c:
            while not c.stat(msgid).startswith("223"):
                assert time.monotonic() < deadline, "%s never reached %s" % (msgid, s.name)
                time.sleep(0.2)


def test_forged_cancels_remove_nothing_and_the_admin_key_removes_everywhere(pair):
    env, sites = pair
    victim, marker = deliver(env, "victim"), deliver(env, "marker")
    wait_everywhere(sites, victim)
    wait_everywhere(sites, marker)
    with sites[0].client() as c:
        h = headers(c, victim)
    group = h["newsgroups"]
    # postern's two locks first (the owner's, the admin's); the site's nnrpd appends its own
    locks = h.get("cancel-lock", "").split()
    assert len(locks) >= 2 and all(l.startswith(("sha256:", "sha1:")) for l in locks), h
    assert locks[1] == lock_of(admin_key(env, victim))  # the admin's lock is the documented one
    with sites[1].client() as c:
        assert headers(c, victim).get("cancel-lock", "").split()[:2] == locks[:2]  # the feed keeps it

    # forged at both sites, by anyone who has the posting account: no key, a made-up key,
    # the lock itself as a key, the admin key of another article
    for s in sites:
        with s.client() as c:
            cancel(c, group, victim, tag="nokey")
            cancel(c, group, victim, key="sha256:" + base64.b64encode(os.urandom(32)).decode(), tag="random")
            cancel(c, group, victim, key=locks[0], tag="lock")
            cancel(c, group, victim, key=admin_key(env, marker), tag="other")
    # a genuine cancel posted after them: once it has taken effect at every site, so have they
    with sites[0].client() as c:
        r = cancel(c, group, marker, key=admin_key(env, marker), tag="marker")
        assert r.startswith("240"), r
    wait_gone(sites, marker)
    for s in sites:
        with s.client() as c:
            assert c.stat(victim).startswith("223"), "a forged cancel removed %s at %s" % (victim, s.name)

    with sites[1].client() as c:  # the admin's key, at either site: gone at every site
        r = cancel(c, group, victim, key=admin_key(env, victim), tag="admin")
        assert r.startswith("240"), r
    wait_gone(sites, victim)
