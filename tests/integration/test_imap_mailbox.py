"""The IMAP mailbox against a real INN site: SELECT/EXAMINE/STATUS, FETCH of every item,
STORE, EXPUNGE, IDLE, sessions seeing each other's changes, persistence across a gateway
restart — with Python's imaplib and a raw socket. Messages arrive through `postern deliver`."""
import imaplib
import os
import re
import subprocess
import time

import pytest

from imapdate import imap_date_time

USER = "dana.mailbox@example.org"
PASSWORD = "mailbox password 1"

SIMPLE = (b"From: Alice Sender <alice@example.net>\n"
          b"To: Dana <dana.mailbox@example.org>\n"
          b"Subject: first message\n"
          b"Date: Mon, 2 Nov 2026 10:00:00 +0100\n"
          b"Message-ID: <first@example.net>\n"
          b"\n"
          b"Hello Dana,\n.leading dot line\nbye\n")

MULTIPART = (b"From: =?UTF-8?B?SsO8cmdlbg==?= <juergen@example.de>\r\n"
             b"To: dana.mailbox@example.org\r\n"
             b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= with attachment\r\n"
             b"Date: Tue, 3 Nov 2026 11:00:00 +0000\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
             b"\r\n"
             b"preamble\r\n"
             b"--XYZ\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n"
             b"\r\n"
             b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, needle-in-body\r\n"
             b"--XYZ\r\n"
             b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
             b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
             b"Content-Transfer-Encoding: base64\r\n"
             b"\r\n"
             b"AAECAwQFBgcICQ==\r\n"
             b"--XYZ--\r\n")

THIRD = (b"From: bob@example.com\nTo: dana.mailbox@example.org\nSubject: third\n"
         b"Date: Wed, 4 Nov 2026 12:00:00 +0000\n\nthird body\n")


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def mailbox(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    gateway.delivered_between = (int(time.time()), None)
    for raw in (SIMPLE, MULTIPART, THIRD):
        r = postern_env(["deliver", "--to", USER], input=raw)
        assert r.returncode == 0, r.stderr
    gateway.delivered_between = (gateway.delivered_between[0], int(time.time()) + 1)
    return gateway


def deliver(env, raw):
    r = env(["deliver", "--to", USER], input=raw)
    assert r.returncode == 0, r.stderr


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    return c


def fetch_one(c, uid, items):
    typ, data = c.uid("FETCH", str(uid), items)
    assert typ == "OK", data
    return data


def uids(c):
    typ, data = c.uid("SEARCH", "ALL") if False else c.uid("FETCH", "1:*", "(UID)")
    assert typ == "OK"
    return [int(re.search(rb"UID (\d+)", d if isinstance(d, bytes) else d[0]).group(1)) for d in data if d]


def test_select_examine_status(mailbox):
    c = login(mailbox)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    assert c.untagged_responses.get("UIDVALIDITY") and int(c.untagged_responses["UIDVALIDITY"][0]) > 0
    assert "READ-WRITE" in c.untagged_responses
    typ, data = c.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
    assert typ == "OK"
    m = re.search(rb"MESSAGES (\d+).*UIDNEXT (\d+).*UNSEEN (\d+)", data[0])
    assert m and int(m.group(1)) == 3 and int(m.group(3)) == 3, data
    typ, data = c.status("Sent", "(MESSAGES UIDNEXT)")
    assert typ == "OK" and b"MESSAGES 0" in data[0]
    typ, data = c.select("Nope")
    assert typ == "NO"
    c.logout()
    c = login(mailbox)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK" and data == [b"3"] and "READ-ONLY" in c.untagged_responses
    c.logout()


def test_imap_date_time_checker():
    """The checker itself, on the days 1-9 that a two-digit regex refused (RFC 3501 date-day-fixed)."""
    assert imap_date_time(b'" 1-Dec-2026 20:58:29 +0000"') == 1796158709
    assert imap_date_time(b'" 9-Mar-2026 01:30:00 +0530"') == 1773000000  # 8 Mar 20:00 UTC
    assert imap_date_time(b'"31-Dec-1999 23:59:59 -0800"') == 946713599
    for bad in (b'"01-Dec-2026 20:58:29 +0000"', b'"1-Dec-2026 20:58:29 +0000"', b'" 1-dec-2026 20:58:29 +0000"',
                b'"32-Dec-2026 20:58:29 +0000"'):
        with pytest.raises(AssertionError):
            imap_date_time(bad)


def test_fetch_every_item(mailbox):
    c = login(mailbox)
    c.select("INBOX", readonly=True)
    all_uids = uids(c)
    assert len(all_uids) == 3
    u1, u2, u3 = all_uids
    # whole message, byte-identical up to CRLF line ends
    data = fetch_one(c, u1, "(RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[])")
    head, body = data[0]
    assert body == crlf(SIMPLE)
    assert int(re.search(rb"RFC822.SIZE (\d+)", head).group(1)) == len(crlf(SIMPLE))
    # the arrival time, in whatever zone deliver ran: the same instant whatever the date or TZ
    start, end = mailbox.delivered_between
    assert start <= imap_date_time(re.search(rb'INTERNALDATE ("[^"]*")', head).group(1)) <= end, head
    assert b"FLAGS ()" in head
    data = fetch_one(c, u2, "(BODY.PEEK[HEADER.FIELDS (Subject From)])")
    assert data[0][1].lower().startswith(b"from: ") and b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=" in data[0][1]
    assert data[0][1].endswith(b"\r\n\r\n")
    data = fetch_one(c, u2, "(BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Date MIME-Version)])")
    assert data[0][1].startswith(b"Content-Type: multipart/mixed")
    data = fetch_one(c, u2, "(BODY.PEEK[1])")
    assert data[0][1] == b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, needle-in-body"
    data = fetch_one(c, u2, "(BODY.PEEK[1.MIME])")
    assert data[0][1].startswith(b"Content-Type: text/plain; charset=utf-8\r\n")
    data = fetch_one(c, u2, "(BODY.PEEK[2])")
    assert data[0][1] == b"AAECAwQFBgcICQ=="
    data = fetch_one(c, u2, "(BODY.PEEK[TEXT]<0.8>)")
    assert b"BODY[TEXT]<0>" in data[0][0] and data[0][1] == b"preamble"
    data = fetch_one(c, u2, "(BODYSTRUCTURE ENVELOPE BODY)")
    text = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in text
    assert b'"mixed" ("boundary" "XYZ")' in text
    assert b'ENVELOPE ("Tue, 3 Nov 2026 11:00:00 +0000"' in text
    data = fetch_one(c, u1, "(RFC822.HEADER)")
    assert data[0][1] == crlf(SIMPLE).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    # FAST, ALL, FULL macros
    for macro in ("FAST", "ALL", "FULL"):
        typ, data = c.uid("FETCH", str(u3), macro)
        assert typ == "OK" and b"RFC822.SIZE" in (data[0] if isinstance(data[0], bytes) else data[0][0])
    # read-only: nothing became \Seen
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert all(b"\\Seen" not in d for d in data)
    with pytest.raises(imaplib.IMAP4.error, match="Unknown fetch attribute"):
        c.uid("FETCH", "1:*", "(FROB)")
    c.logout()


def test_body_fetch_sets_seen_and_store(mailbox):
    c = login(mailbox)
    c.select("INBOX")
    u1, u2, u3 = uids(c)
    typ, data = c.uid("FETCH", str(u3), "(BODY[TEXT])")
    assert typ == "OK"
    assert any(b"\\Seen" in (d[0] if isinstance(d, tuple) else d) for d in data), data
    typ, data = c.uid("STORE", str(u1), "+FLAGS", "(\\Flagged $Important)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Important" in data[0]
    typ, data = c.uid("STORE", str(u1), "-FLAGS.SILENT", "(\\Flagged)")
    assert typ == "OK" and data == [None]
    typ, data = c.uid("FETCH", str(u1), "(FLAGS)")
    assert b"$Important" in data[0] and b"\\Flagged" not in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="Unknown system flag"):
        c.store("1", "FLAGS", "(\\Bogus)")
    c.logout()
    # flags persist into a new session
    c = login(mailbox)
    c.select("INBOX")
    typ, data = c.uid("FETCH", "%d:%d" % (u1, u3), "(FLAGS)")
    flags = b" ".join(data)
    assert b"$Important" in flags and b"\\Seen" in flags
    c.logout()


def test_two_sessions_see_each_others_changes(mailbox):
    a, b = login(mailbox), login(mailbox)
    a.select("INBOX")
    b.select("INBOX")
    u1 = uids(a)[0]
    a.uid("STORE", str(u1), "+FLAGS", "(\\Answered)")
    typ, data = b.noop()
    fetches = b.untagged_responses.get("FETCH", [])
    assert any(b"\\Answered" in f for f in fetches), (b.untagged_responses)
    a.logout()
    b.logout()


def test_idle_reports_new_mail_within_two_seconds(mailbox, postern_env):
    c = login(mailbox)
    typ, data = c.select("INBOX")
    before = int(data[0])
    tag = c._new_tag().decode()
    c.send(("%s IDLE\r\n" % tag).encode())
    assert c.readline().startswith(b"+")
    t0 = time.monotonic()
    deliver(postern_env, b"From: x@example.net\nSubject: while idling\n\nidle body\n")
    delivered = time.monotonic()
    c.sock.settimeout(10)
    line = c.readline()
    arrived = time.monotonic()
    assert line.strip() == b"* %d EXISTS" % (before + 1), line
    assert arrived - delivered < 2.5, (arrived - delivered, delivered - t0)
    c.send(b"DONE\r\n")
    while True:
        line = c.readline()
        if line.startswith(tag.encode()):
            assert b"OK" in line
            break
    c.logout()


def test_expunge_and_persistence_across_restart(mailbox, postern_env):
    c = login(mailbox)
    typ, data = c.select("INBOX")
    n = int(data[0])
    all_uids = uids(c)
    victim = all_uids[-1]
    c.uid("STORE", str(victim), "+FLAGS", "(\\Deleted)")
    typ, data = c.expunge()
    assert typ == "OK" and data == [str(n).encode()], data
    c.logout()
    mailbox.stop()
    mailbox.start()
    c = login(mailbox)
    typ, data = c.select("INBOX")
    assert int(data[0]) == n - 1
    assert victim not in uids(c)
    typ, data = c.uid("FETCH", str(all_uids[0]), "(FLAGS)")
    assert b"$Important" in data[0]  # stored by an earlier test, kept across the restart
    c.logout()


def test_expunge_right_before_logout_cancels_the_article(mailbox, postern_env, inn_site):
    """What mbsync does: EXPUNGE of a message this gateway never opened, then LOGOUT at once.
    The article's cancel key needs the vault to open the message's prefix, after the session
    (whose vault session that was) has gone: the article must still be cancelled."""
    deliver(postern_env, b"From: x@example.net\nSubject: expunged unread\n\nnever opened\n")
    with inn_site.client() as nn:
        group = [g for g, *_ in nn.list_active("postern.org.example.*")
                 if "dana" in g and not g.endswith(".encrypt")]
        nn.group(group[0])
        msgid = [o[4] for o in nn.over("1-") if o[4].startswith("<m.")][-1]
    c = login(mailbox)
    c.select("INBOX")
    victim = uids(c)[-1]
    typ, data = c.uid("STORE", str(victim), "+FLAGS.SILENT", "(\\Deleted)")
    assert typ == "OK", data
    typ, data = c.expunge()
    assert typ == "OK", data
    c.logout()
    deadline = time.monotonic() + 30
    with inn_site.client() as nn:
        while not nn.stat(msgid).startswith("430"):
            assert time.monotonic() < deadline, "%s not cancelled" % msgid
            time.sleep(0.2)


def test_close_unselect_and_refusals(mailbox):
    c = login(mailbox)
    c.select("INBOX")
    typ, data = c.append("Nowhere", None, None, b"From: me\r\n\r\nx\r\n")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]"), data
    typ, data = c.create("Archive")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    for bad in ("a//b", "/lead", "x*y"):
        typ, data = c.create(bad)
        assert typ == "NO" and b"[CANNOT] Invalid mailbox name" in data[0], (bad, data)
    typ, data = c.delete("INBOX")
    assert typ == "NO" and b"[CANNOT]" in data[0]
    typ, data = c.rename("Nowhere", "Elsewhere")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    typ, data = c.copy("1", "Nowhere")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]"), data
    typ, _ = c._simple_command("UNSELECT")
    assert typ == "OK"
    typ, data = c.select("Drafts", readonly=True)
    assert typ == "OK" and data == [b"0"]
    typ, data = c.close()
    assert typ == "OK"
    c.logout()


def test_search(mailbox):
    c = login(mailbox)
    c.select("INBOX", readonly=True)
    u = uids(c)
    u1, u2 = u[0], u[1]

    def search(*keys, charset=None):
        typ, data = c.uid("SEARCH", *keys) if charset is None else c.uid("SEARCH", "CHARSET", charset, *keys)
        assert typ == "OK", data
        return [int(x) for x in data[0].split()]

    assert search("ALL") == u
    assert search("SUBJECT", "first") == [u1]
    assert search("FROM", "alice@example.net") == [u1]
    assert search("BODY", "needle-in-body") == [u2]
    assert search("TEXT", "NEEDLE-IN-BODY") == [u2]
    assert search("HEADER", "Message-ID", "<first@") == [u1]
    assert search("NOT", "SUBJECT", "first") == u[1:]
    assert search("OR", "SUBJECT", "first", "BODY", "needle") == [u1, u2]
    assert search("SENTBEFORE", "3-Nov-2026") == [u1]
    assert search("SENTON", "3-Nov-2026") == [u2]
    assert search("LARGER", "500") == [u2]
    assert search("SMALLER", "212") == [u1] + u[2:]
    assert search("UID", "%d" % u2) == [u2]
    assert search("KEYWORD", "$Important") == [u1]
    # RFC 2047-decoded, case-folded, sent as a UTF-8 literal
    c.literal = "GRÜSSE".replace("SS", "ß").encode()
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT")
    assert typ == "OK" and [int(x) for x in data[0].split()] == [u2], data
    c.literal = "jürgen".encode()
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "FROM")
    assert [int(x) for x in data[0].split()] == [u2], data
    typ, data = c.search("KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c.search(None, "FROBNICATE")
    typ, data = c.search(None, "1:2")
    assert data == [b"1 2"]
    c.logout()


def test_cancelled_article_is_expunged(mailbox, postern_env, inn_site):
    deliver(postern_env, b"From: x@example.net\nSubject: will be cancelled\n\nsoon gone\n")
    c = login(mailbox)
    typ, data = c.select("INBOX")
    seq = int(data[0])  # the newest; not read yet, so not in the gateway's plaintext cache
    # the news server's admin cancels it: gone from the spool (INN keeps its overview line)
    with inn_site.client() as nn:
        group = [g for g, *_ in nn.list_active("postern.org.example.*")
                 if "dana" in g and not g.endswith(".encrypt")]
        nn.group(group[0])
        # the newest mail article (the group also holds the mailbox's state articles, <s.…>)
        msgid = [o[4] for o in nn.over("1-") if o[4].startswith("<m.")][-1]
    subprocess.run(["/usr/lib/news/bin/ctlinnd", "-s", "cancel", msgid], check=True,
                   env=dict(os.environ, INNCONF=str(inn_site.innconf)), timeout=30)
    typ, data = c.fetch(str(seq), "(BODY.PEEK[TEXT])")
    assert typ == "NO" and b"UNAVAILABLE" in data[0], (typ, data)
    deadline = time.monotonic() + 5
    while True:
        typ, data = c.noop()
        if c.untagged_responses.get("EXPUNGE"):
            assert c.untagged_responses["EXPUNGE"] == [str(seq).encode()]
            break
        assert time.monotonic() < deadline, "no EXPUNGE for the cancelled article"
        time.sleep(0.2)
    c.logout()


def test_mailbox_over_starttls(mailbox):
    c = imaplib.IMAP4(mailbox.addr, mailbox.imap_port, timeout=20)
    c.starttls(ssl_context=mailbox.ssl_context())
    c.login(USER, PASSWORD)
    typ, data = c.examine("INBOX") if hasattr(c, "examine") else c.select("INBOX", readonly=True)
    assert typ == "OK" and int(data[0]) >= 3
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and data[0][1].startswith(b"Subject: first message")
    c.logout()


def test_user_added_while_the_gateway_runs(mailbox, postern_env):
    """nnrpd (INN 2.7) keeps the group list it started with: the gateway's long-lived news
    connections must still find a user created after they opened."""
    login(mailbox).logout()  # the workers' connections are open now
    late = "late.user@example.org"
    r = postern_env(["user", "add", late, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    c = imaplib.IMAP4_SSL(mailbox.addr, mailbox.imaps_port, ssl_context=mailbox.ssl_context(), timeout=20)
    c.login(late, PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"0"], data
    # the first article of a group that was empty when the news connection looked at it
    r = postern_env(["deliver", "--to", late], input=b"From: x@example.net\nSubject: late\n\nhi\n")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while not c.untagged_responses.get("EXISTS") or c.untagged_responses["EXISTS"][-1] != b"1":
        assert time.monotonic() < deadline, "the new user's first message did not show up"
        time.sleep(0.3)
        c.noop()
    c.logout()


def test_expired_articles_are_expunged_in_idle(mailbox, inn_site):
    """Last in the module: INN expires every mail article (30 days pass), idling clients see
    EXPUNGE for each within seconds."""
    c = login(mailbox)
    typ, data = c.select("INBOX")
    n = int(data[0])
    assert n > 0
    tag = c._new_tag().decode()
    c.send(("%s IDLE\r\n" % tag).encode())
    assert c.readline().startswith(b"+")
    inn_site.expire(warp=31)
    c.sock.settimeout(15)
    got = [c.readline().strip() for _ in range(n)]
    assert got == [b"* 1 EXPUNGE"] * n, got
    c.send(b"DONE\r\n")
    while not c.readline().startswith(tag.encode()):
        pass
    typ, data = c.noop()
    typ, data = c.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0], data
    c.logout()


def test_numbering_across_gaps(mailbox, postern_env):
    """Sequence numbers and UIDs stay right once expunges leave gaps in the UIDs (a view keeps
    runs of consecutive UIDs), for this session and for another one that idles meanwhile."""
    user, pw = "gaps.mailbox@example.org", "gaps password 1"
    r = postern_env(["user", "add", user, "--password-stdin"], input=pw + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(8):
        r = postern_env(["deliver", "--to", user], input=b"Subject: gap %d\n\nbody %d\n" % (i, i))
        assert r.returncode == 0, r.stderr

    def session():
        c = imaplib.IMAP4_SSL(mailbox.addr, mailbox.imaps_port, ssl_context=mailbox.ssl_context(), timeout=20)
        c.login(user, pw)
        typ, data = c.select("INBOX")
        assert typ == "OK" and int(data[0]) == 8
        return c

    def numbering(c):
        typ, data = c.fetch("1:*", "(UID)")
        assert typ == "OK"
        return [tuple(int(x) for x in re.match(rb"(\d+) \(UID (\d+)\)", d).groups()) for d in data]

    c, watcher = session(), session()
    u = [uid for _, uid in numbering(c)]
    watcher.send(b"W1 IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    # expunge the 2nd, 3rd and 6th: the rest are three runs
    c.uid("STORE", "%d,%d,%d" % (u[1], u[2], u[5]), "+FLAGS.SILENT", "(\\Deleted)")
    typ, data = c.expunge()
    assert typ == "OK" and data == [b"2", b"2", b"4"], data
    left = [u[0], u[3], u[4], u[6], u[7]]
    assert numbering(c) == list(enumerate(left, 1))
    typ, data = c.uid("FETCH", "%d:%d" % (u[1], u[6]), "(UID)")
    assert [int(re.search(rb"UID (\d+)", d).group(1)) for d in data] == [u[3], u[4], u[6]]
    typ, data = c.uid("SEARCH", "UID", "%d:*" % u[4])
    assert [int(x) for x in data[0].split()] == [u[4], u[6], u[7]]
    typ, data = c.search(None, "3:4")
    assert data == [b"3 4"]
    # the idling session heard the same expunges, numbered in its own terms
    seen, deadline = [], time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        line = watcher.readline()
        m = re.match(rb"\* (\d+) EXPUNGE", line)
        if m:
            seen.append(int(m.group(1)))
    assert seen == [2, 2, 4]
    watcher.send(b"DONE\r\n")
    assert watcher.readline().startswith(b"W1 OK")
    assert numbering(watcher) == list(enumerate(left, 1))
    # new mail after a gap extends the last run; both sessions number it 6
    r = postern_env(["deliver", "--to", user], input=b"Subject: after the gaps\n\nlate\n")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while len(numbering(c)) < 6 and time.monotonic() < deadline:
        c.noop()
        time.sleep(0.2)
    n = numbering(c)
    assert len(n) == 6 and n[:5] == list(enumerate(left, 1)) and n[5][1] > u[7]
    assert numbering(watcher) == n or (watcher.noop() and numbering(watcher) == n)
    c.logout()
    watcher.logout()


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_flags_survive_a_crash(mailbox, postern_env):
    """Changed states are written every state_save_interval while users stay logged in, so a
    crash (every gateway process killed) loses at most that interval."""
    user, pw = "crash.mailbox@example.org", "crash password 1"
    r = postern_env(["user", "add", user, "--password-stdin"], input=pw + "\n")
    assert r.returncode == 0, r.stderr
    r = postern_env(["deliver", "--to", user], input=b"Subject: keep my flags\n\nplease\n")
    assert r.returncode == 0, r.stderr
    gw = mailbox.factory.start(state_save_interval=1)
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(user, pw)
    c.select("INBOX")
    first = uids(c)[0]
    typ, _ = c.uid("STORE", str(first), "+FLAGS", "(\\Flagged $Crashproof)")
    assert typ == "OK"
    time.sleep(2.5)  # a save round or two, with the session still open
    pids = gw.children() + [gw.proc.pid]
    for pid in pids:
        os.kill(pid, 9)
    gw.proc.wait()
    # as a service manager would, start again once every old process is gone (a process in
    # the middle of an fsync dies only when it returns, and keeps its sockets until then)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.02)
    gw.stop()
    gw.start()
    # Right after this restart a connection is now and then reset before the new network
    # process sees it (cause not found yet; see the issue note): a client retries, so do we.
    for attempt in range(50):
        try:
            c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
            break
        except (ConnectionResetError, ConnectionRefusedError):
            time.sleep(0.1)
    c.login(user, pw)
    c.select("INBOX", readonly=True)
    typ, data = c.uid("FETCH", str(first), "(FLAGS)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Crashproof" in data[0], data
    c.logout()
    gw.stop()
