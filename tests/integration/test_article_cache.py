"""The gateway's article cache (state_dir/articles): it holds ciphertext only, a damaged
copy is dropped and the message read from the news server instead, files past the retention
time go at start, and `article_cache = 0` turns it off."""
import imaplib
import os
import re
import time

import pytest

USER = "erin.cache@example.org"
PASSWORD = "cache password 1"
MARKER = b"plaintext-marker-7f3a"


def message(i):
    return (b"From: sender@example.net\nTo: %s\nSubject: cached %d\nMessage-ID: <cache-%d@example.net>\n\n"
            b"%s number %d\n" % (USER.encode(), i, i, MARKER, i)) + b"filler line\n" * 200


def crlf(raw):
    return raw.replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def cache_user(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(3):
        r = postern_env(["deliver", "--to", USER], input=message(i))
        assert r.returncode == 0, r.stderr
    return USER


def pull(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK" and int(data[0]) == 3
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    c.logout()
    return sorted(d[1] for d in data if isinstance(d, tuple))


def cached(gw, want=None):
    """The cache's files; with want, waits (a few seconds) until there are that many: the
    gateway writes them in the background."""
    d = gw.state_dir / "articles"
    deadline = time.monotonic() + 5
    while True:
        files = sorted(d / f for f in os.listdir(d) if not f.startswith(".")) if d.exists() else []
        if want is None or len(files) >= want or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def test_cache_holds_ciphertext_and_survives_damage(gateway, cache_user):
    gw = gateway.factory.start()
    want = sorted(crlf(message(i)) for i in range(3))
    assert pull(gw) == want
    files = cached(gw, 3)
    assert len(files) == 3
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.name)
        assert f.stat().st_mode & 0o077 == 0
        body = f.read_bytes()
        assert MARKER not in body and b"cached" not in body and USER.encode() not in body
    # the first login numbered the mail: once its state articles are posted the account (and
    # its decrypted messages) is gone, so the next pull reads the cache
    deadline = time.monotonic() + 30
    while "state articles posted (all)" not in gw.log_text():
        assert time.monotonic() < deadline, gw.log_text()[-2000:]
        time.sleep(0.1)
    # damage every copy: the next pull still gets every message right, from the news server
    damaged = []
    for f in files:
        b = bytearray(f.read_bytes())
        b[-40] ^= 0xff  # inside the stream: fails authentication
        damaged.append(b[-40] ^ 0xff)  # the good byte
        f.write_bytes(bytes(b))
    assert pull(gw) == want
    assert gw.log_text().count("is damaged; reading it from the news server") == 3
    # ... and the damaged copies were replaced by good ones: a third pull logs nothing new
    deadline = time.monotonic() + 5
    def repaired(f, good):
        try:
            return f.read_bytes()[-40] == good
        except FileNotFoundError:  # dropped, the good copy not written yet
            return False
    while not all(repaired(f, g) for f, g in zip(files, damaged)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pull(gw) == want
    assert gw.log_text().count("is damaged; reading it from the news server") == 3
    gw.stop()


def test_expired_copies_go_at_start(gateway, cache_user):
    gw = gateway.factory.start()
    assert pull(gw) == sorted(crlf(message(i)) for i in range(3))
    files = cached(gw, 3)
    assert len(files) == 3
    gw.stop()
    old = time.time() - 31 * 86400  # past retention_days (30)
    os.utime(files[0], (old, old))
    stray = gw.state_dir / "articles" / ".tmp.0123456789abcdef"
    stray.write_bytes(b"half written")
    os.utime(stray, (old, old))
    gw.start()
    deadline = time.monotonic() + 10
    while (files[0].exists() or stray.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not files[0].exists() and not stray.exists()
    assert files[1].exists() and files[2].exists()
    assert "article cache: 2 expired" in gw.log_text()
    gw.stop()


def test_cache_off(gateway, cache_user):
    gw = gateway.factory.start(article_cache=0)
    assert pull(gw) == sorted(crlf(message(i)) for i in range(3))
    assert not (gw.state_dir / "articles").exists()
    gw.stop()
