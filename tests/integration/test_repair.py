"""postern repair: a peer whose feed never carried a user's articles is made whole (issue 10).
Two sites that do not peer stand for a feed that dropped a group: with min_copies 1 every
message goes to site A only, so site B lacks all of them; repair copies them (ciphertext, the
same Message-ID), a second pass finds nothing to do, and a message cancelled at B is not
brought back there (B's history remembers it). --user compares by Message-ID whatever
the counts say."""
import os
import re
import subprocess

import pytest

from conftest import multi_site_env
from nntplib_min import NNTPError

USER = "rita.repair@example.org"
OTHER = "otto.repair@example.org"
PASSWORD = "repair password 1"
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>) on 1 site")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def header_lines(lines):
    """The header block's fields, folded lines unfolded (INN folds a long Cancel-Lock)."""
    out = []
    for line in lines:
        if not line:
            break
        line = line.decode(errors="replace")
        if line[:1] in (" ", "\t") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def cancel_lock(c, msgid):
    _, lines = c.article(msgid)
    for line in header_lines(lines):
        if line.lower().startswith("cancel-lock:"):
            return " ".join(line.split(":", 1)[1].split())
    return None


@pytest.fixture(scope="module")
def pair(inn_sites, tmp_path_factory):
    a, b = inn_sites(name="repair-a"), inn_sites(name="repair-b")  # no peering between them
    env = multi_site_env(tmp_path_factory.mktemp("repair"), [a, b])
    env.conf.write_text(env.conf.read_text().replace("min_copies = 2", "min_copies = 1"))
    assert env(["authority", "init"]).returncode == 0
    for u in (USER, OTHER):
        r = env(["user", "add", u, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 0, out(r)
    yield env, a, b
    a.stop()
    b.stop()


def test_a_site_that_never_got_the_articles_is_made_whole(pair):
    env, a, b = pair
    ids = []
    for i in range(6):
        r = env(["deliver", "--verbose", "--to", USER], input=b"Subject: %d\n\nonly at A\n" % i)
        assert r.returncode == 0, out(r)
        ids.append(DELIVERED.search(out(r)).group(1))
    r = env(["deliver", "--to", OTHER], input=b"Subject: other\n\nonly at A too\n")
    assert r.returncode == 0, out(r)
    with b.client() as c:
        assert all(c.stat(m).startswith("430") for m in ids)  # B lacks them: the test means something

    r = env(["repair", "--dry-run"])
    assert r.returncode == 0, out(r)
    assert "site repair-b: 7 missing" in out(r), out(r)
    with b.client() as c:
        assert all(c.stat(m).startswith("430") for m in ids)  # a dry run copies nothing

    r = env(["repair"])
    assert r.returncode == 0, out(r)
    text = out(r)
    assert re.search(r"^%s: repair-a 6 repair-b 0 messages$" % re.escape(USER), text, re.M), text
    assert "site repair-b: 7 missing, 7 copied" in text and "site repair-a: nothing missing" in text, text
    with b.client() as c:
        assert all(c.stat(m).startswith("223") for m in ids)
    # the copy keeps postern's two locks (the first two; each site's nnrpd appends two of its
    # own admin's): its owner can cancel it at B too
    with a.client() as ca, b.client() as cb:
        for m in ids:
            lock_a, lock_b = cancel_lock(ca, m), cancel_lock(cb, m)
            assert lock_a and lock_b and lock_b.split()[:2] == lock_a.split()[:2], (m, lock_a, lock_b)
    # the copy is the same envelope: the user reads it at B
    (env.dir / "b-only").mkdir()
    b_only = multi_site_env(env.dir / "b-only", [b], shared=env)
    b_only.conf.write_text(b_only.conf.read_text().replace("min_copies = 2", "min_copies = 1"))
    r = b_only(["mailbox", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0 and len(re.findall(r"only at A", out(r))) == 0, out(r)  # a listing: subjects
    assert all(("%d" % i) in out(r) for i in range(6)), out(r)

    r = env(["repair"])  # nothing to do now: counts are equal everywhere
    assert r.returncode == 0, out(r)
    assert "0 compared by Message-ID" in out(r) and "7 missing" not in out(r), out(r)


def test_quiet_when_nothing_is_missing(pair):
    """-q, as from a timer every 2 minutes: no output at all unless something was missing."""
    env, a, b = pair
    r = env(["-q", "repair"])
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", out(r)


def test_a_message_cancelled_at_one_site_is_not_brought_back(pair):
    """B's history remembers a cancelled Message-ID: repair must not put the article back
    (whether B's overview still lists it, or repair posts and B refuses the duplicate)."""
    env, a, b = pair
    r = env(["deliver", "--verbose", "--to", USER], input=b"Subject: cancel me\n\nx\n")
    assert r.returncode == 0, out(r)
    m = DELIVERED.search(out(r)).group(1)
    assert env(["repair"]).returncode == 0
    subprocess.run(["/usr/lib/news/bin/ctlinnd", "cancel", m], env=dict(os.environ, INNCONF=str(b.innconf)),
                   check=True, capture_output=True)
    r = env(["repair", "--user", USER])
    assert r.returncode in (0, 75), out(r)
    with b.client() as c:
        assert c.stat(m).startswith("430")



def test_a_site_set_up_again_gets_key_records_state_and_mail(inn_sites, tmp_path_factory):
    """A site dies and a new, empty INN takes its place (its admin makes the users' groups
    there). Repair must bring everything: mail, the key records (else nobody logs in or gets
    mail delivered there) and the replicated state (else its gateway numbers every message
    afresh and flags and folders are lost) — and a gateway that reads only the new site then
    shows the same UIDs, flags and folders as the old one."""
    from conftest import _GatewayFactory
    import imaplib
    import time
    a = inn_sites(name="rebuilt-a")
    env = multi_site_env(tmp_path_factory.mktemp("rebuild"), [a])
    env.conf.write_text(env.conf.read_text().replace("min_copies = 2", "min_copies = 1"))
    assert env(["authority", "init"]).returncode == 0
    user = "sam.rebuild@example.org"
    assert env(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n").returncode == 0
    for s in ("keep flagged", "filed in Kept"):
        r = env(["deliver", "--to", user], input=b"Subject: %s\n\nbody\n" % s.encode())
        assert r.returncode == 0, out(r)

    def login(gw):
        c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
        c.login(user, PASSWORD)
        return c

    def seen(c, folder):
        typ, data = c.select(folder, readonly=True)
        assert typ == "OK", data
        typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted((int(re.search(rb"UID (\d+)", d[0]).group(1)), b"\\Flagged" in d[0], d[1].strip())
                      for d in data if isinstance(d, tuple))

    fa = _GatewayFactory(env, tmp_path_factory, a.addr)
    try:
        ga = fa.start(site_id=1)
        c = login(ga)
        c.select("INBOX")
        before = seen(c, "INBOX")
        assert len(before) == 2, before
        c.select("INBOX")
        c.uid("STORE", str(before[0][0]), "+FLAGS", "(\\Flagged)")
        assert c.create("Kept")[0] == "OK"
        assert c.uid("COPY", str(before[1][0]), "Kept")[0] == "OK"
        want_inbox, want_kept = seen(c, "INBOX"), seen(c, "Kept")
        c.logout()
        time.sleep(2)  # the state articles are posted (their flush waits 250 ms)
    finally:
        fa.close()

    b = inn_sites(name="rebuilt-b")  # the new, empty site
    with a.client() as nn:
        groups = [g for g, *_ in nn.list_active("postern.org.example.*") if "sam" in g]
    assert len(groups) == 2, groups
    b.newgroup(*groups)
    both = multi_site_env(tmp_path_factory.mktemp("rebuild-both"), [a, b], shared=env)
    r = both(["repair"])
    assert r.returncode == 0, out(r)
    def ids(nn, g):
        nn.group(g)
        try:
            return sorted(o[4] for o in nn.over("1-"))
        except NNTPError:  # 423: an empty group
            return []
    with a.client() as na, b.client() as nb:
        for g in groups:
            ids_a, ids_b = ids(na, g), ids(nb, g)
            assert ids_a and ids_a == ids_b, (g, ids_a, ids_b)  # mail, state articles, the key record
    only_b = multi_site_env(tmp_path_factory.mktemp("rebuild-b"), [b], shared=env)
    only_b.conf.write_text(only_b.conf.read_text().replace("min_copies = 2", "min_copies = 1"))
    fb = _GatewayFactory(only_b, tmp_path_factory, b.addr)
    try:
        gb = fb.start(site_id=2)
        c = login(gb)
        assert seen(c, "INBOX") == want_inbox
        assert seen(c, "Kept") == want_kept
        c.logout()
    finally:
        fb.close()
    a.stop()
    b.stop()
