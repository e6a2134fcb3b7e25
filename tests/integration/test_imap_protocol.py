"""RFC 3501 details found by imaptest and real clients (issue 9): \\Recent in exactly one
session, once (also across logouts and concurrent sessions); BAD for sequence numbers beyond
EXISTS; SEARCH over every occurrence of a header field and over parsed addresses; an untagged
FLAGS before a new keyword shows up in another session's FETCH; a login storm queued, not
refused; no password left in the gateway's memory after login (issue 9 item 4). Real
gateway, real INN site, mail through `postern deliver`."""
import base64
import imaplib
import os
import poplib
import pwd
import subprocess
import threading
import time

import pytest

from conftest import _free_port, read_until_tagged

PASSWORD = "protocol password 1"


def add_user(env, user):
    r = env(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr


def deliver(env, user, raw):
    r = env(["deliver", "--to", user], input=raw)
    assert r.returncode == 0, r.stderr


def msg(n):
    return b"From: a@example.net\nSubject: message %d\n\nbody %d\n" % (n, n)


def login(gw, user):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    c.login(user, PASSWORD)
    return c


def select(c, n=None):
    """SELECT INBOX: (EXISTS, RECENT), once the session has seen n messages (a fresh
    delivery may take a poll to show: the lead's issue 9 item 0)."""
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    if n is not None:
        wait_exists(c, n)
    return int(c.untagged_responses["EXISTS"][-1]), int(c.untagged_responses["RECENT"][-1])


def recent_uids(c):
    typ, data = c.uid("SEARCH", "RECENT")
    assert typ == "OK", data
    return data[0].split()


def wait_exists(c, want, timeout=20):
    """NOOP until the session has announced `want` messages (the poller runs each second)."""
    deadline = time.monotonic() + timeout
    while True:
        typ, data = c.noop()
        exists = c.untagged_responses.get("EXISTS")
        if exists and int(exists[-1]) >= want:
            return
        assert time.monotonic() < deadline, "EXISTS %s, wanted %d" % (exists, want)
        time.sleep(0.1)


def settle(gw, user, n):
    """Waits until the gateway shows the user n messages, through EXAMINE (which claims no
    \\Recent): a fresh delivery may take a poll to show (the lead's issue 9 item 0)."""
    c = login(gw, user)
    c.select("INBOX", readonly=True)
    wait_exists(c, n)
    c.logout()


def mailbox_with(env, gw, user, raws):
    """A new user whose INBOX holds raws, shown by the gateway."""
    add_user(env, user)
    for raw in raws:
        deliver(env, user, raw)
    settle(gw, user, len(raws))


def test_recent_in_one_session_once(postern_env, gateway):
    user = "rita.recent@example.org"
    mailbox_with(postern_env, gateway, user, [msg(n) for n in range(3)])

    # back to back: the first session gets all three, the next one none
    a = login(gateway, user)
    assert select(a, 3) == (3, 3)
    assert len(recent_uids(a)) == 3
    a.logout()
    b = login(gateway, user)
    assert select(b, 3) == (3, 0)
    assert recent_uids(b) == []
    typ, data = b.status("INBOX", "(RECENT)")
    assert b"RECENT 0" in data[0], data
    b.logout()

    # concurrent: a message arriving while two sessions are selected is recent in one
    a, b = login(gateway, user), login(gateway, user)
    select(a, 3), select(b, 3)
    deliver(postern_env, user, msg(3))
    wait_exists(a, 4)
    wait_exists(b, 4)
    got = recent_uids(a) + recent_uids(b)
    assert len(got) == 1, got
    a.logout()
    b.logout()

    # everyone logged out (the account's memory is gone): nothing is recent again
    settle(gateway, user, 4)
    c = login(gateway, user)
    assert select(c, 4) == (4, 0)
    assert recent_uids(c) == []
    c.logout()


def test_examine_shows_recent_and_leaves_it(postern_env, gateway):
    """A read-only session sees \\Recent but does not take it: the next SELECT still gets
    it (RFC 3501 2.3.2 and 6.3.2)."""
    user = "erin.examine@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0), msg(1)])
    e = login(gateway, user)
    e.select("INBOX", readonly=True)
    wait_exists(e, 2)
    assert e.untagged_responses["RECENT"][-1] == b"2"
    assert len(recent_uids(e)) == 2
    c = login(gateway, user)
    assert select(c, 2) == (2, 2)
    deliver(postern_env, user, msg(2))
    wait_exists(e, 3)
    assert len(recent_uids(e)) == 3  # the new one too: c has not looked yet
    wait_exists(c, 3)
    assert len(recent_uids(c)) == 3
    e.logout()
    c.logout()


def test_recent_survives_a_restart(postern_env, gateway):
    """The \\Recent mark is in the user's state file: a restarted gateway does not hand out
    \\Recent again (a gateway of its own, whose state starts empty)."""
    user = "rosa.restart@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0), msg(1)])
    gw = gateway.factory.start()
    settle(gw, user, 2)
    c = login(gw, user)
    assert select(c, 2) == (2, 2)
    c.logout()
    assert gw.stop() == 0
    gw.start()
    c = login(gw, user)
    assert select(c, 2) == (2, 0)
    c.logout()
    gw.stop()


def idle_until_exists(c, tag, want, timeout=20):
    """IDLE until the session hears "* want EXISTS", then DONE."""
    c.send(b"%s IDLE\r\n" % tag)
    assert c.readline().startswith(b"+")
    c.sock.settimeout(timeout)
    lines = []
    while b"* %d EXISTS\r\n" % want not in lines:
        line = c.readline()
        assert line, lines
        lines.append(line)
    c.send(b"DONE\r\n")
    read_until_tagged(c, tag + b" ")


def test_recent_kept_when_sessions_take_turns(postern_env, gateway):
    """A session keeps \\Recent on what it was given while another session takes the next
    message and it then takes a third: its recent messages are not one range any more."""
    user = "rhea.recent@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0)])
    a, b = login(gateway, user), login(gateway, user)
    assert select(a, 1) == (1, 1)
    assert select(b, 1) == (1, 0)
    deliver(postern_env, user, msg(1))
    idle_until_exists(b, b"B1", 2)  # b hears of it first: message 2 is b's
    deliver(postern_env, user, msg(2))
    idle_until_exists(a, b"A1", 3)  # a took message 2 late (not recent) and 3 at once
    typ, data = a.search(None, "RECENT")
    assert data[0].split() == [b"1", b"3"], data
    typ, data = b.search(None, "RECENT")
    assert data[0].split() == [b"2"], data
    a.logout()
    b.logout()


def test_sequence_numbers_beyond_exists_are_bad(postern_env, gateway):
    user = "seth.sequence@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0), msg(1)])
    c = login(gateway, user)
    select(c, 2)
    for args in (("FETCH", "99", "(FLAGS)"), ("FETCH", "1:99", "(FLAGS)"), ("FETCH", "2,3", "(FLAGS)"),
                 ("STORE", "99", "+FLAGS", "(\\Seen)"), ("SEARCH", "99"), ("SEARCH", "OR 1 3"),
                 ("COPY", "99", "Trash")):
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):  # imaplib raises on a tagged BAD
            c._simple_command(*args)
        assert c.untagged_responses.pop("FETCH", None) is None, args
    # in range, "*", and the UID forms (silent about missing UIDs, RFC 3501 6.4.8) are fine
    for args in (("FETCH", "1:*", "(FLAGS)"), ("FETCH", "2", "(FLAGS)"), ("SEARCH", "1:2"),
                 ("UID", "FETCH", "99", "(FLAGS)"), ("UID", "STORE", "99", "+FLAGS", "(\\Seen)"),
                 ("UID", "SEARCH", "UID", "99")):
        typ, data = c._simple_command(*args)
        assert typ == "OK", (args, typ, data)
    # an empty mailbox has no "*" either (RFC 3501 section 9); its UID forms are fine
    c.select("Trash", readonly=True)
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c._simple_command("FETCH", "1:*", "(FLAGS)")
    typ, data = c._simple_command("UID", "FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    c.logout()


ADDRESSES = (b"From: <user-from (comment)@ (comment) domain.org>\n"
             b"To: Some One <to-user@example.org>\n"
             b"Subject: comments in addresses\n"
             b"X-Extra: first value\n"
             b"X-Extra: another value\n"
             b"\n"
             b"body\n")


def test_search_addresses_and_repeated_fields(postern_env, gateway):
    user = "sara.search@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0), ADDRESSES])
    c = login(gateway, user)
    select(c, 2)
    for crit in (("FROM", "user-from@domain.org"), ("FROM", "user-from"), ("FROM", "comment"),
                 ("HEADER", "X-Extra", "another"), ("HEADER", "x-extra", "first"),
                 ("TO", "\"Some One <to-user@example.org>\""), ("HEADER", "X-Extra", "\"another value\"")):
        typ, data = c.search(None, *crit)
        assert typ == "OK" and data[0].split() == [b"2"], (crit, data)
    typ, data = c.search(None, "FROM", "user-from@domain.org.invalid")
    assert data[0].split() == [], data
    c.logout()


def test_new_keyword_is_announced_with_flags(postern_env, gateway):
    user = "kai.keyword@example.org"
    mailbox_with(postern_env, gateway, user, [msg(0)])
    a, b, idler = (login(gateway, user) for _ in range(3))
    for c in (a, b, idler):
        select(c, 1)
    idler.send(b"I1 IDLE\r\n")
    assert idler.readline().startswith(b"+")

    typ, data = a.store("1", "+FLAGS", "($Label1)")
    assert typ == "OK", data
    # the storing session itself hears FLAGS before its FETCH
    assert any(b"$Label1" in f for f in a.untagged_responses.get("FLAGS", [])), a.untagged_responses

    b.send(b"N1 NOOP\r\n")
    lines = read_until_tagged(b, b"N1 ")
    flags = [i for i, l in enumerate(lines) if l.startswith(b"* FLAGS ") and b"$Label1" in l]
    fetch = [i for i, l in enumerate(lines) if b" FETCH " in l and b"$Label1" in l]
    assert flags and fetch and flags[0] < fetch[0], lines
    assert any(b"PERMANENTFLAGS" in l for l in lines), lines

    idler.sock.settimeout(10)
    lines = []
    while not any(b" FETCH " in l for l in lines):
        lines.append(idler.readline())
    assert any(l.startswith(b"* FLAGS ") and b"$Label1" in l for l in lines), lines
    idler.send(b"DONE\r\n")
    read_until_tagged(idler, b"I1 ")
    for c in (a, b, idler):
        c.logout()


def test_login_storm_is_queued(postern_env, gateway):
    """100 logins at once on a freshly started gateway (nothing unlocked yet): all succeed.
    The users' key records take a costlier Argon2id than the other tests' (32 MiB, 8 passes),
    so that the logins pile up at the vault while it runs: before the queue, those beyond
    the vault's 64 got NO [UNAVAILABLE] Server busy."""
    users = ["lena.storm%d@example.org" % i for i in range(2)]
    conf = postern_env.dir / "storm.conf"
    conf.write_text(postern_env.conf.read_text().replace("kdf_opslimit = 1", "kdf_opslimit = 8")
                    .replace("kdf_memlimit = 8388608", "kdf_memlimit = 33554432"))
    conf.chmod(0o600)
    for u in users:
        r = subprocess.run([str(postern_env.bin), "-c", str(conf), "user", "add", u, "--password-stdin"],
                           input=(PASSWORD + "\n").encode(), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
    gw = gateway.factory.start()
    results, start = [], threading.Barrier(100)

    def one(i):
        try:
            c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=120)
            start.wait()
            try:
                typ, data = c.login(users[i % len(users)], PASSWORD)
                results.append((typ, data))
            except imaplib.IMAP4.error as e:
                results.append(("NO", str(e)))
            c.logout()
        except Exception as e:  # a dropped connection counts as a failure
            results.append(("ERR", repr(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    failed = [r for r in results if r[0] != "OK"]
    assert len(results) == 100 and not failed, (len(results), len(failed), failed[:3])
    gw.stop()


def process_memory(pid):
    """Every readable, writable mapping of a process (heap, anonymous, stacks), as bytes.
    Root reads /proc/PID/mem even of a process that made itself undumpable."""
    out = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if not parts[1].startswith("rw") or (len(parts) > 5 and parts[5].startswith("/")):
                continue  # code, read-only data, and the data of mapped files
            if hi - lo > 1 << 36:
                pytest.skip("a sanitizer build: its terabyte reservations cannot be read")
            try:
                mem.seek(lo)
                out.append(mem.read(hi - lo))
            except OSError:
                pass  # a guard page
    return b"".join(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
def test_passwords_are_not_left_in_gateway_memory(postern_env, gateway):
    """Right after LOGIN (quoted and as a literal), AUTHENTICATE PLAIN and POP3 PASS, with the sessions
    still open, no piece of any password is in the network process's writable memory. Over
    plain IMAP (allowed for this gateway), so no TLS library holds a copy the gateway cannot
    wipe."""
    user = "wanda.wipe@example.org"
    secrets_ = [b"Quoted-%s" % os.urandom(8).hex().encode(), b"Literal-%s" % os.urandom(8).hex().encode(),
                b"Sasl-%s" % os.urandom(8).hex().encode(), b"Pop-%s" % os.urandom(8).hex().encode()]
    pop3_port = _free_port(gateway.addr)
    gw = gateway.factory.start(allow_plaintext_auth="yes", pop3="%s:%d" % (gateway.addr, pop3_port))
    for i, pw in enumerate(secrets_):
        r = postern_env(["user", "add", "%d.%s" % (i, user), "--password-stdin"], input=pw + b"\n")
        assert r.returncode == 0, r.stderr
    conns = [imaplib.IMAP4(gw.addr, gw.imap_port, timeout=30) for _ in range(3)]
    assert conns[0]._simple_command("LOGIN", "0." + user, '"%s"' % secrets_[0].decode())[0] == "OK"
    conns[1].literal = secrets_[1]
    assert conns[1]._simple_command("LOGIN", "1." + user)[0] == "OK"
    sasl = b"\0" + b"2." + user.encode() + b"\0" + secrets_[2]
    assert conns[2].authenticate("PLAIN", lambda _: sasl)[0] == "OK"
    pop = poplib.POP3(gw.addr, pop3_port, timeout=30)
    pop.user("3." + user)
    assert pop.pass_(secrets_[3].decode()).startswith(b"+OK")
    uid = pwd.getpwnam(gw.user).pw_uid
    net = [pid for pid in gw.children() if "\nUid:\t%d\t" % uid in open("/proc/%d/status" % pid).read()]
    assert len(net) == 1, gw.children()
    memory = process_memory(net[0])
    assert user.encode() in memory, len(memory)  # the scan sees the process's data
    for pw in secrets_ + [base64.b64encode(sasl)]:
        pieces = [pw[i:i + 10] for i in range(len(pw) - 16, len(pw) - 9)]  # the random tail
        found = [p for p in pieces if p in memory]
        assert not found, (pw, memory[max(0, memory.find(found[0]) - 100):][:200] if found else None)
    for c in conns:
        c.logout()
    pop.quit()
    gw.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
def test_plaintext_is_not_left_in_gateway_memory_after_logout(postern_env, gateway):
    """Issue 14, item 10: a message's body and subject stayed in the network process's heap
    long after logout, in freed output buffers (libevent's and OpenSSL's). Now every buffer
    those libraries free is wiped first, and so is the gateway's own. Fetched over IMAPS and
    POP3S, so the TLS library's buffers are part of it."""
    user = "wally.wipe@example.org"
    password = "wipe the plaintext 1"
    r = postern_env(["user", "add", user, "--password-stdin"], input=password + "\n")
    assert r.returncode == 0, r.stderr
    subject = b"Subject-%s" % os.urandom(8).hex().encode()
    body_mark = b"Body-%s" % os.urandom(8).hex().encode()
    message = b"From: a@example.net\nSubject: " + subject + b"\n\n" + (body_mark + b" " + b"x" * 60 + b"\n") * 3000
    r = postern_env(["deliver", "--to", user], input=message)
    assert r.returncode == 0, r.stderr
    pop3s_port = _free_port(gateway.addr)
    gw = gateway.factory.start(login_grace="1", pop3s="%s:%d" % (gateway.addr, pop3s_port))
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(user, password)
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY[] BODY[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and body_mark in data[0][1], data[0][0]
    c.logout()
    p = poplib.POP3_SSL(gw.addr, pop3s_port, context=gw.ssl_context(), timeout=60)
    p.user(user)
    p.pass_(password)
    assert body_mark in b"\n".join(p.retr(1)[1])
    p.quit()
    time.sleep(4)  # past login_grace: the account and its caches are gone
    uid = pwd.getpwnam(gw.user).pw_uid
    net = [pid for pid in gw.children() if "\nUid:\t%d\t" % uid in open("/proc/%d/status" % pid).read()]
    assert len(net) == 1, gw.children()
    memory = process_memory(net[0])
    assert user.encode() in memory or b"wally" in memory or len(memory) > 0
    found = [m for m in (subject, body_mark) if m in memory]
    assert not found, [(m, memory.count(m), memory[max(0, memory.find(m) - 80):][:160]) for m in found]
    gw.stop()


def test_a_too_big_nonsynchronizing_literal_is_refused_and_the_session_goes_on(postern_env, gateway):
    """LITERAL+ (RFC 7888 4): an APPEND whose {n+} literal exceeds what the server takes is
    answered NO [TOOBIG] once its bytes are read and dropped, and the session goes on — mbsync
    got 'BAD [TOOBIG] Non-synchronizing literal too big' and a closed connection (issue 13)."""
    user = "lena.literal@example.org"
    add_user(postern_env, user)
    # APPEND takes up to max_message_size (APPENDLIMIT): a gateway with a small one
    gw = gateway.factory.start(conf_extra="[deliver]\nmax_message_size = 1048576")
    c = login(gw, user)
    c.select("INBOX")
    big = 3 * 1024 * 1024  # above the gateway's APPEND literal cap
    c.send(b"A1 APPEND INBOX (\\Seen) {%d+}\r\n" % big)
    chunk = (b"x" * 1023 + b"\n") * 64
    sent = 0
    while sent < big:
        n = min(len(chunk), big - sent)
        c.send(chunk[:n])
        sent += n
    c.send(b"\r\nA2 NOOP\r\n")
    lines = read_until_tagged(c, b"A2")
    assert any(line.startswith(b"A1 NO [TOOBIG]") for line in lines), lines
    assert lines[-1].startswith(b"A2 OK"), lines
    assert not any(b"BAD" in line or b"BYE" in line for line in lines), lines
    typ, data = c.noop()
    assert typ == "OK"
    c.logout()
    gw.stop()
