"""postern watch-maildir against a real INN site: every Maildir message is posted exactly once,
across moves to cur/, flag changes and restarts, and the Maildir is never changed."""
import hashlib
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

POSTED = re.compile(r"^posted ((?:new|cur)/\S+) as (<[^>]+>)", re.M)


def err(r):
    return r.stderr.decode(errors="replace")


def message(subject, body="hello\n"):
    return ("From: Sender <sender@example.net>\r\nTo: someone@example.org\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n%s" % (
                subject, secrets.token_hex(8), body)).encode()


class Maildir:
    """A Maildir written the way an MDA does it: the file in tmp/, then renamed into new/."""

    def __init__(self, path):
        self.path = Path(path)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self.seq = 0

    def deliver(self, data):
        self.seq += 1
        # unique like an MDA's: time, a per-delivery part, the host (here a random token)
        name = "%d.M%dP%d.%s" % (time.time(), self.seq, os.getpid(), secrets.token_hex(4))
        tmp = self.path / "tmp" / name
        tmp.write_bytes(data)
        os.rename(tmp, self.path / "new" / name)
        return name

    def read(self, name):
        """What a mail reader does when it reads a message: new/NAME -> cur/NAME:2,S."""
        os.rename(self.path / "new" / name, self.path / "cur" / (name + ":2,S"))

    def snapshot(self):
        """Every file and directory with content hash, mode and mtime."""
        snap = {}
        for p in sorted(self.path.rglob("*")):
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            snap[str(p.relative_to(self.path))] = (digest, st.st_mode, st.st_mtime_ns, st.st_size)
        return snap


@pytest.fixture(scope="module")
def user(postern_env, tmp_path_factory):
    """Factory: a fresh provisioned address per test (tests share one INN site)."""
    pwfile = tmp_path_factory.mktemp("pw") / "password"
    pwfile.write_text("watch-test-password-%s\n" % secrets.token_hex(4))
    pwfile.chmod(0o600)

    def make(local):
        addr = "%s-%s@example.org" % (local, secrets.token_hex(3))
        r = postern_env(["user", "add", addr, "--password-file", pwfile])
        assert r.returncode == 0, err(r)
        return addr

    return make


def watch_once(env, *pairs, retry=1):
    return env(["watch-maildir", "--once", "--retry", str(retry), *map(str, pairs)], timeout=600)


def posted(r):
    return POSTED.findall(err(r))


def journal_lines(env, md, suffix):
    """The lines of md's journal (suffix ".journal") or rejected journal (".rejected"),
    found by the NAME.path file that names the Maildir of NAME.journal."""
    for f in (env.state_dir / "watch").glob("*.path"):
        if f.read_text().strip() == str(md.path.resolve()):
            j = f.with_suffix(suffix)
            return j.read_text().splitlines() if j.exists() else []
    raise AssertionError("no journal for %s" % md.path)


def assert_on_server(site, msgids):
    c = site.client()
    try:
        for m in msgids:
            assert c.stat(m).startswith("223"), m
    finally:
        c.quit()


def test_new_messages_posted_once_and_maildir_untouched(postern_env, user, tmp_path, inn_site):
    addr = user("alice")
    md = Maildir(tmp_path / "Maildir")
    names = [md.deliver(message("one")), md.deliver(message("two")), md.deliver(message("three"))]
    before = md.snapshot()

    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert "checking 1 Maildir, 0 already posted, 3 pending" in err(r)
    got = posted(r)
    assert sorted(f for f, _ in got) == sorted("new/" + n for n in names)
    assert len({m for _, m in got}) == 3
    assert_on_server(inn_site, [m for _, m in got])
    assert sorted(journal_lines(postern_env, md, ".journal")) == sorted(names)
    assert md.snapshot() == before

    # a restart posts nothing
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert posted(r) == []
    assert "3 already posted, 0 pending" in err(r)
    assert md.snapshot() == before


def test_the_same_message_as_deliver_gives_is_one_article(postern_env, user, tmp_path):
    """watch-maildir seals with the delivery secret as `deliver` does: its Message-IDs are
    keyed by it (so no one without it can confirm a guessed message, and the admin's
    Cancel-Lock comes from it). It used to seal with no key at all (the secret was loaded
    and never handed over): the same message gave another Message-ID than `deliver`."""
    addr = user("same")
    data = message("one article")
    r = postern_env(["deliver", "--to", addr, "--verbose"], input=data)
    assert r.returncode == 0, err(r)
    delivered = re.search(r"as (<m\.[0-9a-f]+@postern\.invalid>)", err(r) + r.stdout.decode())
    assert delivered, err(r)
    md = Maildir(tmp_path / "Maildir")
    md.deliver(data)
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert [m for _, m in posted(r)] == [delivered.group(1)], err(r)


def test_moved_to_cur_with_flags_is_not_reposted(postern_env, user, tmp_path):
    addr = user("bob")
    md = Maildir(tmp_path / "Maildir")
    name = md.deliver(message("read me"))
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert [f for f, _ in posted(r)] == ["new/" + name]

    md.read(name)
    os.rename(md.path / "cur" / (name + ":2,S"), md.path / "cur" / (name + ":2,RS"))
    fresh = md.deliver(message("second"))
    before = md.snapshot()
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert [f for f, _ in posted(r)] == ["new/" + fresh]
    assert md.snapshot() == before


def test_message_moved_before_it_is_posted_is_posted_from_cur(postern_env, user, tmp_path):
    addr = user("carol")
    md = Maildir(tmp_path / "Maildir")
    name = md.deliver(message("early reader"))
    md.read(name)
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert [f for f, _ in posted(r)] == ["cur/%s:2,S" % name]


def test_any_message_posted_too_big_and_unknown_recipient_rejected_once(postern_env, user, tmp_path):
    """Every shape an MTA accepted is posted as it is (a header-less message was once rejected
    as "malformed"); only a message over max_message_size and an unknown recipient are
    refused for good."""
    conf = tmp_path / "small.conf"
    conf.write_text(postern_env.conf.read_text().replace("min_copies = 1\n", "min_copies = 1\nmax_message_size = 4096\n", 1))
    conf.chmod(0o600)

    def small(args, timeout=600):
        return subprocess.run([str(postern_env.bin), "-c", str(conf), *map(str, args)], capture_output=True,
                              timeout=timeout)

    addr = user("dave")
    md = Maildir(tmp_path / "Maildir")
    odd = md.deliver(b"this is not a header line\n\nbody\x00with NUL\rbare CR\n")
    big = md.deliver(message("too big", "y" * 5000 + "\n"))
    good = md.deliver(message("fine"))
    nouser = Maildir(tmp_path / "Nobody")
    lost = nouser.deliver(message("for nobody"))
    nobody = "nobody-%s@example.org" % secrets.token_hex(3)
    before = md.snapshot(), nouser.snapshot()
    pairs = ("%s=%s" % (md.path, addr), "%s=%s" % (nouser.path, nobody))

    r = watch_once(small, *pairs)
    assert r.returncode == 0, err(r)
    e = err(r)
    assert sorted(f for f, _ in posted(r)) == sorted(["new/" + odd, "new/" + good])
    assert re.search(r"rejected \S+/new/%s for %s: message too big: larger than max_message_size \(4096 bytes\)"
                     % (re.escape(big), re.escape(addr)), e), e
    assert re.search(r"rejected \S+/new/%s for %s: unknown recipient" % (re.escape(lost), re.escape(nobody)), e), e
    assert journal_lines(postern_env, md, ".rejected") == [big]
    assert journal_lines(postern_env, nouser, ".rejected") == [lost]
    assert sorted(journal_lines(postern_env, md, ".journal")) == sorted([odd, good])

    r = watch_once(small, *pairs)
    assert r.returncode == 0, err(r)
    assert not re.search(r"^postern: rejected ", err(r), re.M), err(r)
    assert "2 rejected earlier, 0 pending" in err(r)
    assert (md.snapshot(), nouser.snapshot()) == before


def test_server_down_exits_75_then_posts_after_restart(postern_env, user, tmp_path, inn_site):
    addr = user("erin")
    md = Maildir(tmp_path / "Maildir")
    names = [md.deliver(message("while down %d" % i)) for i in range(2)]
    before = md.snapshot()
    inn_site.stop()
    try:
        r = watch_once(postern_env, "%s=%s" % (md.path, addr))
        assert r.returncode == 75, err(r)
        assert posted(r) == []
        assert "giving up for now" in err(r)
        assert "2 still pending" in err(r)
        assert journal_lines(postern_env, md, ".journal") == []
    finally:
        inn_site.start()
    r = watch_once(postern_env, "%s=%s" % (md.path, addr))
    assert r.returncode == 0, err(r)
    assert sorted(f for f, _ in posted(r)) == sorted("new/" + n for n in names)
    assert md.snapshot() == before


def wait_for(path, pattern, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = path.read_text(errors="replace")
        m = re.findall(pattern, text, re.M)
        if m:
            return text, m
        time.sleep(0.1)
    raise AssertionError("no %r within %d s in:\n%s" % (pattern, timeout, path.read_text()))


def test_watching_posts_new_arrivals_once_and_stops_cleanly(postern_env, user, tmp_path):
    addr = user("frank")
    md = Maildir(tmp_path / "Maildir")
    old = md.deliver(message("before start"))
    log = tmp_path / "watch.log"
    with open(log, "wb") as logf:
        p = subprocess.Popen([str(postern_env.bin), "-c", str(postern_env.conf), "watch-maildir",
                              "--rescan", "600", "%s=%s" % (md.path, addr)],
                             stdout=subprocess.DEVNULL, stderr=logf)
    try:
        wait_for(log, r"^posted new/%s as " % re.escape(old))
        assert "watching 1 Maildir, 0 already posted, 1 pending" in log.read_text()
        # inotify, not the (10 minute) rescan, must see these
        new = md.deliver(message("while watching"))
        wait_for(log, r"^posted new/%s as " % re.escape(new))
        md.read(new)
        md.read(old)
        late = md.deliver(message("after the moves"))
        text, _ = wait_for(log, r"^posted new/%s as " % re.escape(late))
        before = md.snapshot()
        time.sleep(1)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = log.read_text()
    assert len(POSTED.findall(text)) == 3, text
    assert md.snapshot() == before
    assert journal_lines(postern_env, md, ".journal") == [old, new, late]


def test_bad_arguments(postern_env, user, tmp_path):
    md = Maildir(tmp_path / "Maildir")
    r = postern_env(["watch-maildir", "--once", str(md.path)])
    assert r.returncode == 64 and "MAILDIR=ADDRESS" in err(r)
    r = postern_env(["watch-maildir", "--once", "%s=not an address" % md.path])
    assert r.returncode == 64, err(r)
    (tmp_path / "plain").mkdir()
    r = postern_env(["watch-maildir", "--once", "%s=x@example.org" % (tmp_path / "plain")])
    assert r.returncode == 78 and "not a Maildir" in err(r)
    r = postern_env(["watch-maildir", "--once", "--retry", "0", "%s=x@example.org" % md.path])
    assert r.returncode == 64
