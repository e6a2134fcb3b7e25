"""Mail arriving while clients read: `postern deliver` posts message after message while
new sessions log in, SELECT and `FETCH 1:* (BODY.PEEK[])` in a loop and one long session
keeps fetching everything. Found with imaptest (issue 9): the network process crashed in the
first second after a delivery (a message that looked gone when its load was issued came back
before it was written), and successive sessions saw the count flap 16 -> 0 -> 16 under one
UIDVALIDITY, which makes a syncing client (mbsync `Expunge Both`) delete its copies.

What must hold, whatever the timing: the gateway never dies; a new session shows every message
acknowledged before it logged in, and never fewer than any session saw before (nothing is
expunged or expired here); a session's own count never goes down; every FETCH answers OK with
every message it names; UIDVALIDITY never changes. Run it under ASan too
(POSTERN_BIN=build-asan/cli/postern): the gateway fixture fails on any sanitizer report."""
import imaplib
import re
import threading
import time

import pytest

USER = "stella.stress@example.org"
PASSWORD = "stress password 1"
DELIVERIES = 40
READERS = 3


def message(i):
    return (b"From: sender%d@example.net\nTo: %s\nSubject: stress %d\n"
            b"Message-ID: <stress.%d@example.net>\n\nbody %d\n" % (i, USER.encode(), i, i, i)) + b"x" * (i * 97) + b"\n"


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(USER, PASSWORD)
    return c


class Watch:
    """What every session saw, checked against what was acknowledged and seen before."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = 0          # deliveries `postern deliver` acknowledged (exit 0)
        self.max_seen = 0       # most messages any finished look showed
        self.uidvalidity = None
        self.errors = []
        self.looks = 0

    def fail(self, text):
        with self.lock:
            self.errors.append(text)

    def saw(self, what, exists, floor):
        with self.lock:
            self.looks += 1
            if exists < floor:
                self.errors.append("%s: %d messages, but %d were seen before it started" % (what, exists, floor))
            self.max_seen = max(self.max_seen, exists)

    def check_uidvalidity(self, c):
        v = int(c.untagged_responses["UIDVALIDITY"][-1])
        with self.lock:
            if self.uidvalidity is None:
                self.uidvalidity = v
            elif v != self.uidvalidity:
                self.errors.append("UIDVALIDITY changed: %d -> %d" % (self.uidvalidity, v))


def fetch_all(c, watch, what, floor):
    """FETCH 1:* (BODY.PEEK[]): OK, one response per message, none fewer than seen before."""
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    if typ != "OK":
        watch.fail("%s: FETCH 1:* answered %s %r" % (what, typ, data))
        return
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    if not all(re.search(rb"\nbody \d+\n", b.replace(b"\r\n", b"\n")) for b in bodies):
        watch.fail("%s: a FETCH returned a body that is not a delivered message" % what)
    watch.saw(what + " FETCH", len(bodies), floor)
    return len(bodies)


def new_sessions(gw, watch, stop, n):
    while not stop.is_set():
        with watch.lock:  # a new session shows what was acknowledged or seen before it began
            floor = max(watch.acked, watch.max_seen)
        try:
            c = login(gw)
            typ, data = c.select("INBOX", readonly=True)
            if typ != "OK":
                watch.fail("reader %d: SELECT answered %s %r" % (n, typ, data))
                continue
            watch.check_uidvalidity(c)
            watch.saw("reader %d SELECT" % n, int(data[0]), floor)
            fetch_all(c, watch, "reader %d" % n, floor)
            c.logout()
        except (imaplib.IMAP4.error, OSError) as e:
            watch.fail("reader %d: %r" % (n, e))
            return


def long_session(gw, watch, stop):
    try:
        c = login(gw)
        c.select("INBOX", readonly=True)
        watch.check_uidvalidity(c)
        floor = 0  # its own count never goes down (new mail reaches it within a poll)
        while not stop.is_set():
            c.noop()
            floor = max(floor, fetch_all(c, watch, "long session", floor) or 0)
        c.logout()
    except (imaplib.IMAP4.error, OSError) as e:
        watch.fail("long session: %r" % (e,))


def test_deliver_while_sessions_fetch_everything(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    watch = Watch()
    stop = threading.Event()
    # the first message before anyone looks, so that the account exists on the news server
    r = postern_env(["deliver", "--to", USER], input=message(0))
    assert r.returncode == 0, r.stderr
    threads = [threading.Thread(target=new_sessions, args=(gateway, watch, stop, n)) for n in range(READERS)]
    threads.append(threading.Thread(target=long_session, args=(gateway, watch, stop)))
    for t in threads:
        t.start()
    try:
        for i in range(1, DELIVERIES):
            r = postern_env(["deliver", "--to", USER], input=message(i))
            assert r.returncode == 0, r.stderr
            with watch.lock:
                watch.acked = i + 1
            assert gateway.proc.poll() is None, "the gateway died:\n" + gateway.log_text()[-3000:]
        # the readers go on until every acknowledged message has been seen, or give up
        deadline = time.monotonic() + 60
        while watch.max_seen < DELIVERIES and time.monotonic() < deadline and not watch.errors:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert gateway.proc.poll() is None, "the gateway died:\n" + gateway.log_text()[-3000:]
    assert not watch.errors, "%d problems in %d looks, first ones:\n%s" % (
        len(watch.errors), watch.looks, "\n".join(watch.errors[:10]))
    assert watch.max_seen == DELIVERIES
    # and one more session afterwards sees them all, byte for byte
    c = login(gateway)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK" and int(data[0]) == DELIVERIES, data
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    got = sorted(d[1] for d in data if isinstance(d, tuple))
    assert got == sorted(message(i).replace(b"\n", b"\r\n") for i in range(DELIVERIES))
    c.logout()
