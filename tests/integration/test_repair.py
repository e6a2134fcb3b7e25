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

