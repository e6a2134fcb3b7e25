"""APPEND and MULTIAPPEND (issue 13): a message a client files is sealed to the user's own key
as delivered mail is, posted to the user's group until min_copies sites show it, and filed in
the folder with its flags and date; APPENDUID (UIDPLUS), APPENDLIMIT, NO [TOOBIG] for a
literal over the limit (LITERAL+ read and dropped, the session goes on), NO [TRYCREATE]. The
command shapes are Thunderbird's (save draft, copy to Sent). Real gateway, real INN site."""
import imaplib
import os
import re
import time

import pytest

from conftest import read_until_tagged

PASSWORD = "append password 1"
LIMIT = 1024 * 1024  # the small gateway's max_message_size


def add_user(env, user):
    r = env(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr


def login(gw, user):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(user, PASSWORD)
    return c


def raw(c, tag, command, literals=()):
    """Sends one command whose literals are given (each b"{n+}" placeholder in command is
    followed by its bytes), reads to its tagged answer."""
    c.send(command)
    for lit in literals:
        c.send(lit)
    c.send(b"\r\n")
    return read_until_tagged(c, tag + b" ")


def message(size, subject, body=b"draft body"):
    """A Thunderbird-like message of exactly size bytes, CRLF lines."""
    head = (b"Message-ID: <%s@example.org>\r\nDate: Thu, 3 Dec 2026 15:00:00 +0100\r\nMIME-Version: 1.0\r\n"
            b"User-Agent: Mozilla Thunderbird\r\nFrom: Anna <anna@example.org>\r\nTo: bob@example.net\r\n"
            b"Subject: %s\r\nContent-Type: text/plain; charset=UTF-8; format=flowed\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n" % (os.urandom(6).hex().encode(), subject))
    tail = b"\r\n" + body + b"\r\n"
    pad = size - len(head) - len(tail) - len(b"X-Pad: \r\n")
    assert pad >= 0
    m = head + b"X-Pad: " + b"p" * pad + b"\r\n" + tail
    assert len(m) == size
    return m


def status(c, folder):
    typ, data = c.status(folder, "(MESSAGES UIDNEXT UIDVALIDITY)")
    assert typ == "OK", data
    m = re.search(rb"MESSAGES (\d+) UIDNEXT (\d+) UIDVALIDITY (\d+)", data[0])
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def appenduid(lines, tag):
    m = re.match(rb"%s OK \[APPENDUID (\d+) ([0-9:,]+)\] " % tag, lines[-1])
    assert m, lines
    return int(m.group(1)), m.group(2).decode()


@pytest.fixture(scope="module")
def small_gw(gateway):
    gw = gateway.factory.start(conf_extra="[deliver]\nmax_message_size = %d" % LIMIT)
    yield gw
    gw.stop()


def test_capabilities_advertise_append(postern_env, gateway, small_gw):
    user = "cap.append@example.org"
    add_user(postern_env, user)
    c = login(small_gw, user)
    typ, data = c.capability()
    caps = data[0].split()
    assert b"MULTIAPPEND" in caps and b"UIDPLUS" in caps and b"LITERAL+" in caps, caps
    assert b"APPENDLIMIT=%d" % LIMIT in caps, caps
    c.logout()
    c = login(gateway, user)
    assert b"APPENDLIMIT=104857600" in c.capability()[1][0].split()
    c.logout()


def test_thunderbird_save_draft_and_copy_to_sent(postern_env, gateway):
    """`append "Drafts" (\\Draft) {728+}` and `append "Sent" (\\Seen) {406+}`, as Thunderbird
    sends them; STATUS counts them; the APPENDUID is the folder's and matches UIDNEXT."""
    user = "thea.thunderbird@example.org"
    add_user(postern_env, user)
    c = login(gateway, user)
    n0, next0, uv = status(c, "Drafts")
    assert n0 == 0
    draft = message(728, b"draft 1")
    lines = raw(c, b"5", b'5 append "Drafts" (\\Draft) {728+}\r\n', [draft])
    v, uid = appenduid(lines, b"5")
    assert (v, int(uid)) == (uv, next0)  # the UIDNEXT announced before
    n1, next1, _ = status(c, "Drafts")
    assert (n1, next1) == (1, int(uid) + 1)
    # the next APPEND gets exactly the UIDNEXT announced before it
    lines = raw(c, b"6", b'6 append "Drafts" (\\Draft) {728+}\r\n', [message(728, b"draft 2")])
    assert appenduid(lines, b"6") == (uv, str(next1))
    assert status(c, "Drafts")[:2] == (2, next1 + 1)
    s0, snext, suv = status(c, "Sent")
    lines = raw(c, b"7", b'7 append "Sent" (\\Seen) {406+}\r\n', [message(406, b"sent 1")])
    v, uid = appenduid(lines, b"7")
    assert v == suv and int(uid) >= snext
    assert status(c, "Sent")[0] == s0 + 1
    # filed in Drafts and Sent only: the INBOX does not show them
    typ, data = c.select("INBOX")
    assert typ == "OK" and data[0] == b"0", data
    # the draft as Thunderbird reads it back, with its flag
    typ, data = c.select("Drafts")
    assert typ == "OK" and data[0] == b"2", data
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    bodies = [x[1] for x in data if isinstance(x, tuple)]
    assert bodies[0] == draft, bodies[0][:200]
    assert b"\\Draft" in data[0][0] or any(b"\\Draft" in x for x in data if isinstance(x, bytes)), data
    c.logout()
    # another session (and a new login) sees the same
    c = login(gateway, user)
    assert status(c, "Drafts")[:2] == (2, next1 + 1)
    c.logout()


def test_append_to_inbox_is_fetched_byte_identical_with_flags_and_date(postern_env, gateway):
    user = "ivo.inbox@example.org"
    add_user(postern_env, user)
    c = login(gateway, user)
    body = message(2000, b"appended to the INBOX", b"line\r\n" * 20 + b"end")
    date = '"05-Mar-2026 10:11:12 +0130"'
    typ, data = c.append("INBOX", r"(\Seen \Flagged $Label1)", date, body)
    assert typ == "OK", data
    m = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    uv, uid = int(m.group(1)), int(m.group(2))
    typ, data = c.select("INBOX")
    assert typ == "OK" and data[0] == b"1", data  # visible at once: no wait for a poll
    assert int(c.untagged_responses["UIDVALIDITY"][-1]) == uv
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[] FLAGS INTERNALDATE RFC822.SIZE)")
    assert typ == "OK" and data[0] is not None, data
    meta, fetched = data[0]
    meta += b" " + b" ".join(x for x in data[1:] if isinstance(x, bytes))  # items after the literal
    assert fetched == body
    assert b"UID %d" % uid in meta, meta
    flags = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split()
    assert set(flags) >= {b"\\Seen", b"\\Flagged", b"$Label1"}, flags
    assert b"\\Draft" not in flags
    # the date given, in its own zone (date-day-fixed: " 5", RFC 3501)
    assert b'INTERNALDATE " 5-Mar-2026 10:11:12 +0130"' in meta, meta
    assert b"RFC822.SIZE %d" % len(body) in meta, meta
    # appended without a date: now
    typ, data = c.append("INBOX", None, None, message(500, b"no date"))
    assert typ == "OK", data
    c.logout()


def test_multiappend(postern_env, gateway):
    user = "mia.multi@example.org"
    add_user(postern_env, user)
    c = login(gateway, user)
    n0, next0, uv = status(c, "Archive")
    a, b = message(600, b"one"), message(700, b"two")
    lines = raw(c, b"M1", b"M1 APPEND Archive (\\Seen) {600+}\r\n", [a, b" {700+}\r\n", b])
    v, uids = appenduid(lines, b"M1")
    lo, hi = (int(x) for x in uids.split(":"))
    assert v == uv and hi == lo + 1 and lo >= next0, uids
    assert status(c, "Archive")[:2] == (n0 + 2, hi + 1)
    # appended to the folder selected: its EXISTS comes before the tagged OK (RFC 3501 6.3.11)
    typ, data = c.select("Archive")
    assert typ == "OK" and data[0] == b"%d" % (n0 + 2), data
    lines = raw(c, b"M2", b"M2 APPEND Archive {600+}\r\n", [message(600, b"three")])
    assert b"* %d EXISTS\r\n" % (n0 + 3) in lines, lines
    assert lines[-1].startswith(b"M2 OK [APPENDUID %d %d]" % (uv, hi + 1)), lines
    c.logout()


def test_errors_answered_cleanly(postern_env, gateway, small_gw):
    user = "eve.errors@example.org"
    add_user(postern_env, user)
    c = login(small_gw, user)
    # a nonexistent folder: TRYCREATE, nothing stored
    lines = raw(c, b"E1", b'E1 APPEND "No/Such" {5+}\r\n', [b"hello"])
    assert lines[-1].startswith(b"E1 NO [TRYCREATE]"), lines
    # \Recent cannot be set; bad flags and dates are BAD
    for tag, args in ((b"E2", b"(\\Recent)"), (b"E3", b"(\\Bogus)"), (b"E4", b'"31-Feb-2026 99:00:00 +0000"')):
        lines = raw(c, tag, tag + b" APPEND INBOX " + args + b" {5+}\r\n", [b"hello"])
        assert lines[-1].startswith(tag + b" BAD"), lines
    # a LITERAL+ literal over APPENDLIMIT: read and dropped, NO [TOOBIG], the session goes on
    big = LIMIT + 1
    lines = raw(c, b"E5", b"E5 APPEND Drafts (\\Draft) {%d+}\r\n" % big, [b"y" * big])
    assert lines[-1].startswith(b"E5 NO [TOOBIG]"), lines
    assert not any(b"BAD" in line or b"BYE" in line for line in lines), lines
    typ, _ = c.noop()
    assert typ == "OK"
    # a synchronising one: refused before the data, without "+"
    c.send(b"E6 APPEND Drafts {%d}\r\n" % big)
    line = c.readline()
    assert line.startswith(b"E6 NO [TOOBIG]"), line
    typ, _ = c.noop()
    assert typ == "OK"
    # nothing of it was stored
    assert status(c, "Drafts")[0] == 0
    # exactly at the limit is taken
    lines = raw(c, b"E7", b"E7 APPEND Drafts {%d+}\r\n" % LIMIT, [message(LIMIT, b"at the limit")])
    assert lines[-1].startswith(b"E7 OK [APPENDUID"), lines
    assert status(c, "Drafts")[0] == 1
    c.logout()


def test_appended_article_shows_nothing_in_the_clear(postern_env, gateway, inn_site):
    user = "sam.secret@example.org"
    add_user(postern_env, user)
    secret_subject, secret_body = b"Subject-%s" % os.urandom(8).hex().encode(), b"Body-%s" % os.urandom(8).hex().encode()
    c = login(gateway, user)
    m = message(900, secret_subject, secret_body)
    lines = raw(c, b"S1", b'S1 append "Sent" (\\Seen) {900+}\r\n', [m])
    assert lines[-1].startswith(b"S1 OK"), lines
    c.logout()
    needles = [secret_subject, secret_body, b"anna@example.org", b"bob@example.net", b"Mozilla Thunderbird"]
    found = 0
    for root, _, files in os.walk(inn_site.dir / "spool"):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            for n in needles:
                assert n not in data, (n, root, f)
            found += 1
    assert found
    for f in os.listdir(inn_site.dir / "db"):
        data = open(inn_site.dir / "db" / f, "rb").read()
        for n in needles:
            assert n not in data, (n, f)
    # its outer headers are those of delivered mail: a mail Message-ID, two locks
    nn = inn_site.client()
    try:
        count, low, high, _ = nn.group(group_of(inn_site, user))
        over = nn.over("%d-%d" % (low, high))
        mail = [f for f in over if f[4].startswith("<m.")]
        assert mail, over
        for fields in mail:
            assert fields[1] == "postern mail"
            assert re.fullmatch(r"<m\.[0-9a-f]{40}@postern\.invalid>", fields[4])
        _, art = nn.article(mail[-1][0])
        head = b"\n".join(art[:art.index(b"")])
        lock = re.search(rb"Cancel-Lock: (sha256:\S+) (sha256:\S+)", head)
        assert lock, head
        assert b"Postern-Format: message 1" in head
    finally:
        nn.quit()


def group_of(site, user):
    local, domain = user.split("@")
    name = ".".join(reversed(domain.split("."))) + "." + local.replace(".", "_2e")
    return site.prefix + "." + name if site.prefix else name


def test_fewer_than_min_copies_files_nothing(postern_env, gateway):
    """min_copies 2 and the second site down: NO [UNAVAILABLE], nothing filed, and the copy
    the live site took is cancelled again (else a scan would show it in the INBOX)."""
    user = "uma.unavailable@example.org"
    add_user(postern_env, user)
    gw = gateway.factory.start(conf_extra="[deliver]\nmin_copies = 2\n\n[site closed]\nhost = 127.0.0.1\n"
                                          "port = 1\nconnect_timeout = 2\n")
    c = login(gw, user)
    before = status(c, "Drafts")
    lines = raw(c, b"U1", b'U1 APPEND "Drafts" (\\Draft) {728+}\r\n', [message(728, b"not stored")])
    assert lines[-1].startswith(b"U1 NO [UNAVAILABLE]"), lines
    assert status(c, "Drafts") == before
    lines = raw(c, b"U2", b"U2 APPEND INBOX {500+}\r\n", [message(500, b"not stored either")])
    assert lines[-1].startswith(b"U2 NO [UNAVAILABLE]"), lines
    typ, data = c.select("INBOX")  # waits for a scan that starts now
    assert typ == "OK" and data[0] == b"0", data
    typ, _ = c.noop()
    assert typ == "OK"
    c.logout()
    gw.stop()


def test_append_is_filed_when_the_client_leaves_at_once(postern_env, gateway):
    user = "leo.leaving@example.org"
    add_user(postern_env, user)
    c = login(gateway, user)
    m = message(5000, b"sent and gone")
    c.send(b'L1 APPEND "Sent" (\\Seen) {5000+}\r\n' + m + b"\r\n")
    c.shutdown()
    c = login(gateway, user)
    deadline = time.monotonic() + 20
    while status(c, "Sent")[0] != 1:
        assert time.monotonic() < deadline, "the APPEND was not filed"
        time.sleep(0.2)
    typ, data = c.select("Sent")
    assert typ == "OK" and data[0] == b"1", data
    typ, data = c.fetch("1", "(FLAGS BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == m, data
    c.logout()


def test_thunderbird_replaces_a_draft_and_the_old_article_is_cancelled(postern_env, gateway, inn_site):
    """Save draft, then save it again: Thunderbird APPENDs the new draft, then marks the old one
    \\Deleted and expunges it. The old article goes from the spool: its owner's Cancel-Lock,
    written at APPEND, is the one the user's gateway can open (RFC 8315)."""
    user = "dora.drafts@example.org"
    add_user(postern_env, user)
    c = login(gateway, user)
    lines = raw(c, b"D1", b'D1 append "Drafts" (\\Draft) {728+}\r\n', [message(728, b"draft v1")])
    _, old = appenduid(lines, b"D1")
    lines = raw(c, b"D2", b'D2 append "Drafts" (\\Draft) {728+}\r\n', [message(728, b"draft v2")])
    _, new = appenduid(lines, b"D2")
    nn = inn_site.client()
    try:
        group = group_of(inn_site, user)
        _, low, high, _ = nn.group(group)
        ids = [f[4] for f in nn.over("%d-%d" % (low, high)) if f[4].startswith("<m.")]
        assert len(ids) == 2, ids
    finally:
        nn.quit()
    typ, data = c.select("Drafts")
    assert typ == "OK" and data[0] == b"2", data
    typ, data = c.uid("STORE", old, "+FLAGS.SILENT", r"(\Deleted)")
    assert typ == "OK", data
    typ, data = c.uid("EXPUNGE", old)
    assert typ == "OK", data
    typ, data = c.uid("SEARCH", "ALL")
    assert typ == "OK" and data[0].split() == [new.encode()], data
    c.logout()
    deadline = time.monotonic() + 20
    while True:
        nn = inn_site.client()
        try:
            _, low, high, _ = nn.group(group)
            left = [f[4] for f in nn.over("%d-%d" % (low, high)) if f[4].startswith("<m.")] if high >= low else []
        finally:
            nn.quit()
        if len(left) == 1:
            break
        assert time.monotonic() < deadline, left
        time.sleep(0.3)
