"""The replicated state over time (issue 12). After 30 days without a login INN has expired a user's mail and every state article with it
(issue 12): a site that never kept the user's state begins it anew, under the same UIDVALIDITY
(it derives from the user's key). Its UIDs must lie above every UID the earlier state gave, or
a client's cache (mbsync, Thunderbird) would take new mail for messages it already has: before
the fix the new numbering started at 1 again. The site that kept its local copy of the old state
agrees with the new numbering. And a cold login that changes nothing posts nothing: the local
copy restored at login goes out as a snapshot only when it holds what the group does not."""
import imaplib
import re
import time

USER = "ursula.expiry@example.org"
PASSWORD = "expiry password 1"


def deliver(env, subject):
    r = env(["deliver", "--to", USER], input=b"From: a@example.net\nSubject: %s\n\n%s body\n" % (subject, subject))
    assert r.returncode == 0, r.stderr


def mailbox(gw, want):
    """(UIDVALIDITY, [(uid, subject)]) once the mailbox shows want messages; the session stays
    (a site that is not the first numbers new mail only after uid_claim_delay)."""
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    deadline = time.monotonic() + 30
    while int(c.untagged_responses.get("EXISTS", [data[0]])[-1]) != want:
        assert time.monotonic() < deadline, "%s messages, not %d" % (c.untagged_responses.get("EXISTS"), want)
        time.sleep(0.3)
        c.noop()
    uv = int(c.untagged_responses["UIDVALIDITY"][-1])
    typ, data = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    got = []
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            got.append((uid, item[1].strip().decode()))
    c.logout()
    return uv, sorted(got)


def wait_for_log(gw, text, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in gw.log_text():
        assert time.monotonic() < deadline, "no %r in the gateway log:\n%s" % (text, gw.log_text()[-3000:])
        time.sleep(0.1)


def test_a_state_begun_anew_never_reuses_a_uid(postern_env, gateway, inn_site):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(3):
        deliver(postern_env, b"old %d" % i)
    uv_old, old = mailbox(gateway, 3)
    numbered = time.monotonic()
    wait_for_log(gateway, "state articles posted (all)")

    inn_site.expire(warp=31)  # the mail and every state article go; history keeps the IDs
    for i in range(2):
        deliver(postern_env, b"new %d" % i)
    # the new numbering counts seconds: it starts above the old one once more seconds have
    # passed than the old one gave UIDs (30 days in real life)
    time.sleep(max(0.0, numbered + len(old) + 1 - time.monotonic()))

    # another site's gateway, which never had this user's state (its own site_id, so its
    # state articles are its own)
    other = gateway.factory.start(site_id=2, uid_claim_delay=1)
    uv_new, new = mailbox(other, 2)
    assert uv_new == uv_old
    assert [s for _, s in new] == ["Subject: new 0", "Subject: new 1"], new
    assert min(u for u, _ in new) > max(u for u, _ in old), (old, new)
    assert len({u for u, _ in new}) == 2

    # the first gateway still has its local copy of the old state: it takes the new claims
    wait_for_log(other, "state articles posted (all)")
    assert mailbox(gateway, 2) == (uv_old, new)


def test_a_cold_login_that_changes_nothing_posts_no_snapshot(postern_env, gateway):
    user, pw = "colin.cold@example.org", "cold password 1"
    r = postern_env(["user", "add", user, "--password-stdin"], input=pw + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(3):
        r = postern_env(["deliver", "--to", user], input=b"Subject: cold %d\n\nbody\n" % i)
        assert r.returncode == 0, r.stderr

    def session(flag=None):
        closed = gateway.log_text().count("%s: account closed" % user)
        c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=20)
        c.login(user, pw)
        typ, data = c.select("INBOX")
        assert typ == "OK" and data == [b"3"], data
        if flag:
            assert c.store("1", "+FLAGS", flag)[0] == "OK"
        c.logout()
        # the account goes (a cold login next time), and what it still had to post is out: a
        # login while that is in flight sees a group without it (a snapshot then is due)
        deadline = time.monotonic() + 30
        while True:
            log = gateway.log_text()
            if (log.count("%s: account closed" % user) > closed and
                    log.count("%s: posting " % user) == log.count("%s: state articles posted (all) after close" % user)):
                break
            assert time.monotonic() < deadline, log[-3000:]
            time.sleep(0.1)

    def snapshots():
        return gateway.log_text().count("%s: state snapshot <s." % user)

    session("(\\Flagged)")  # numbers the mail, flags one: the first snapshot
    first = snapshots()
    assert first >= 1
    for _ in range(3):
        session()
    assert snapshots() == first, gateway.log_text()[-3000:]
    session("(\\Seen)")  # a change goes out as a delta, not a snapshot
    assert snapshots() == first, gateway.log_text()[-6000:]


def test_a_site_that_lost_its_state_numbers_its_deltas_anew(postern_env, gateway, inn_site):
    """A gateway whose state_dir is gone numbers its deltas from 1 again; INN still remembers
    the Message-IDs of the ones it posted before (after they expired), refuses the new ones as
    duplicates, and before the fix their changes never reached another site."""
    user, pw = "dora.delta@example.org", "delta password 1"
    r = postern_env(["user", "add", user, "--password-stdin"], input=pw + "\n")
    assert r.returncode == 0, r.stderr

    def login(gw):
        c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
        c.login(user, pw)
        return c

    def closed(gw, before):
        deadline = time.monotonic() + 30
        while gw.log_text().count("%s: account closed" % user) == before:
            assert time.monotonic() < deadline, gw.log_text()[-3000:]
            time.sleep(0.1)

    def changes(gw, n):
        """n separate deltas: the gateway batches what comes within 250 ms"""
        before = gw.log_text().count("%s: account closed" % user)
        c = login(gw)
        c.select("INBOX")
        for i in range(n):
            time.sleep(0.4)
            assert c.store("1", "+FLAGS" if i % 2 == 0 else "-FLAGS", "(\\Answered)")[0] == "OK"
        c.logout()
        closed(gw, before)

    for i in range(2):
        r = postern_env(["deliver", "--to", user], input=b"Subject: lost %d\n\nbody\n" % i)
        assert r.returncode == 0, r.stderr
    first = gateway.factory.start()
    changes(first, 4)  # deltas 1..5 of site 1 (the numbering, then four STOREs)
    inn_site.expire(warp=31)  # gone, but INN's history remembers their Message-IDs
    for i in range(2):
        r = postern_env(["deliver", "--to", user], input=b"Subject: new %d\n\nbody\n" % i)
        assert r.returncode == 0, r.stderr

    again = gateway.factory.start()  # site 1 with a new state_dir
    before = again.log_text().count("%s: account closed" % user)
    c = login(again)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"2"], data
    time.sleep(0.4)
    assert c.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    typ, data = c.fetch("1:*", "(UID FLAGS)")
    want = sorted(data)
    c.logout()
    closed(again, before)
    assert "delta number was used before" in again.log_text()

    other = gateway.factory.start(site_id=2, uid_claim_delay=30)  # numbers nothing itself here
    c = login(other)
    c.select("INBOX")
    deadline = time.monotonic() + 20
    while True:
        typ, data = c.fetch("1:*", "(UID FLAGS)")
        if typ == "OK" and sorted(d for d in data if d) == want:
            break
        assert time.monotonic() < deadline, (data, want)
        time.sleep(0.5)
        c.noop()
    c.logout()
