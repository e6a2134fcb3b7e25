"""CONDSTORE and QRESYNC (RFC 7162, issue 13) against a real INN site and gateway, on raw lines
for the exact response shapes: ENABLE and every enabling command, HIGHESTMODSEQ on SELECT/EXAMINE and
in STATUS and LIST-STATUS, FETCH MODSEQ and (CHANGEDSINCE n) returning exactly what changed
(modseq_margin = 0) and, with a margin, nothing older than it, MODSEQ with another session's
change heard in IDLE and at NOOP, STORE (UNCHANGEDSINCE n) with [MODIFIED], SEARCH and ESEARCH
MODSEQ, a HIGHESTMODSEQ that a gateway restart does not lower; QRESYNC's SELECT with VANISHED
(EARLIER), UID FETCH (CHANGEDSINCE VANISHED), expunges as VANISHED and [CLOSED]."""
import imaplib
import re
import time

import pytest

USER = "cora.condstore@example.org"
PASSWORD = "condstore password 1"
N = 6


def message(n):
    return (b"From: Sender <s%d@example.net>\r\nTo: Cora <cora.condstore@example.org>\r\n"
            b"Subject: condstore %d\r\nMessage-ID: <condstore-%d@example.net>\r\n\r\nbody %d\r\n"
            % (n, n, n, n))


@pytest.fixture(scope="module")
def gw(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for n in range(1, N + 1):
        r = postern_env(["deliver", "--to", USER], input=message(n))
        assert r.returncode == 0, r.stderr
    # the module's own gateway, exact: CHANGEDSINCE and MODSEQ searches without a margin
    return gateway.factory.start(modseq_margin=0)


def login(g):
    c = imaplib.IMAP4_SSL(g.addr, g.imaps_port, ssl_context=g.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    return c


def read_line(c):
    """One response line; a literal in it reads as <literal>."""
    line = c.readline().decode().rstrip("\r\n")
    while True:
        m = re.search(r"\{(\d+)\}$", line)
        if not m:
            return line
        c.read(int(m.group(1)))
        line = line[:m.start()] + "<literal>" + c.readline().decode().rstrip("\r\n")


def raw(c, command):
    """One command on imaplib's connection: (untagged lines, tagged text)."""
    tag = c._new_tag().decode()
    c.send(("%s %s\r\n" % (tag, command)).encode())
    lines = []
    while True:
        line = read_line(c)
        if line.startswith(tag + " "):
            return lines, line[len(tag) + 1:]
        lines.append(line)


def ok(c, command):
    lines, tagged = raw(c, command)
    assert tagged.startswith("OK"), (command, lines, tagged)
    return lines


def highest(lines):
    found = [int(m.group(1)) for m in (re.match(r"\* OK \[HIGHESTMODSEQ (\d+)\]", l) for l in lines) if m]
    assert len(found) == 1, lines
    return found[0]


def fetches(lines):
    """{seq: the text inside the parentheses} of the untagged FETCH lines."""
    out = {}
    for l in lines:
        m = re.match(r"\* (\d+) FETCH \((.*)\)$", l)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def modseq_of(text):
    m = re.search(r"MODSEQ \((\d+)\)", text)
    return int(m.group(1)) if m else None


def select(c, cmd="SELECT INBOX"):
    lines = ok(c, cmd)
    assert any(re.match(r"\* %d EXISTS" % N, l) for l in lines) or "INBOX" not in cmd or "(" in cmd, lines
    return lines


def modseqs(c):
    """{seq: MODSEQ} of the INBOX (selected)."""
    got = fetches(ok(c, "FETCH 1:* (MODSEQ)"))
    assert all(re.fullmatch(r"MODSEQ \(\d+\)", t) for t in got.values()), got
    return {k: modseq_of(t) for k, t in got.items()}


def test_capability_and_enable(gw):
    c = login(gw)
    lines = ok(c, "CAPABILITY")
    caps = lines[0].split()
    assert "CONDSTORE" in caps and "QRESYNC" in caps, lines
    assert ok(c, "ENABLE CONDSTORE") == ["* ENABLED CONDSTORE"]
    assert ok(c, "ENABLE CONDSTORE") == ["* ENABLED"]  # enabled already: nothing new (RFC 5161)
    c.logout()
    c = login(gw)
    assert ok(c, "ENABLE X-NOTHING condstore") == ["* ENABLED CONDSTORE"]
    c.logout()


def test_select_examine_status_highestmodseq(gw):
    """Every SELECT and EXAMINE says HIGHESTMODSEQ, which is the highest MODSEQ of the
    messages; STATUS and LIST-STATUS give the same; an empty folder has one too (not 0)."""
    c = login(gw)
    h = highest(select(c))
    ms = modseqs(c)
    assert len(ms) == N and min(ms.values()) > 0 and max(ms.values()) == h, (ms, h)
    assert len(set(ms.values())) == N, ms  # each message's own filing stamp
    assert highest(ok(c, "EXAMINE INBOX")) == h
    assert highest(select(c, "SELECT INBOX (CONDSTORE)")) == h
    lines, tagged = raw(c, "SELECT INBOX (BOGUS)")
    assert tagged.startswith("BAD"), tagged
    junk = highest(ok(c, "SELECT Junk"))
    assert junk >= 1
    lines = ok(c, "STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
    assert lines == ["* STATUS INBOX (MESSAGES %d HIGHESTMODSEQ %d)" % (N, h)], lines
    lines = ok(c, "STATUS Junk (HIGHESTMODSEQ)")
    assert lines == ["* STATUS Junk (HIGHESTMODSEQ %d)" % junk], lines
    lines = ok(c, 'LIST "" "INBOX" RETURN (STATUS (UIDNEXT HIGHESTMODSEQ))')
    assert any(re.fullmatch(r"\* STATUS INBOX \(UIDNEXT \d+ HIGHESTMODSEQ %d\)" % h, l) for l in lines), lines
    c.logout()


def test_fetch_modseq_and_flags_once_enabled(gw):
    """FETCH FLAGS carries no MODSEQ until CONDSTORE is enabled; after (here by FETCH MODSEQ),
    every FETCH with FLAGS does, also the \\Seen a body fetch sets."""
    c = login(gw)
    select(c)
    got = fetches(ok(c, "FETCH 1 (FLAGS)"))
    assert "MODSEQ" not in got[1], got
    got = fetches(ok(c, "UID FETCH 1:* (MODSEQ)"))
    assert all(re.fullmatch(r"UID \d+ MODSEQ \(\d+\)", t) for t in got.values()), got
    got = fetches(ok(c, "FETCH 1:2 (FLAGS)"))
    assert all(re.fullmatch(r"FLAGS \([^)]*\) MODSEQ \(\d+\)", t) for t in got.values()), got
    before = modseqs(c)[6]
    got = fetches(ok(c, "FETCH 6 (BODY[TEXT])"))
    after = modseq_of(got[6])
    assert "\\Seen" in got[6] and after > before, got
    lines, tagged = raw(c, "FETCH 1 (FLAGS) (CHANGEDSINCE)")
    assert tagged.startswith("BAD"), tagged
    lines, tagged = raw(c, "FETCH 1 (FLAGS) (CHANGEDSINCE x)")
    assert tagged.startswith("BAD"), tagged
    lines, tagged = raw(c, "FETCH 1 (FLAGS) (VANISHED)")
    assert tagged.startswith("BAD"), tagged  # VANISHED: UID FETCH only, QRESYNC enabled, CHANGEDSINCE
    c.logout()


def test_changedsince_exactly_what_changed(gw):
    """modseq_margin = 0: CHANGEDSINCE h returns exactly the messages changed after h (by
    another session), each with its MODSEQ; CHANGEDSINCE of the new HIGHESTMODSEQ nothing."""
    a, b = login(gw), login(gw)
    h = highest(select(a))
    select(b)
    ok(b, "STORE 2 +FLAGS (\\Flagged)")
    ok(b, "STORE 4 +FLAGS (keyword1)")
    ok(b, "STORE 5 +FLAGS (\\Seen)")
    ok(b, "STORE 5 -FLAGS (\\Seen)")  # changed twice, back as it was: still changed
    ok(b, "STORE 3 +FLAGS ()")  # changes nothing: no new MODSEQ
    ok(a, "NOOP")  # the other session's changes heard first, so the FETCH below is all its own
    got = fetches(ok(a, "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h))
    assert sorted(got) == [2, 4, 5], got
    assert all(modseq_of(t) > h for t in got.values()), got
    assert "\\Flagged" in got[2] and "keyword1" in got[4], got
    got = fetches(ok(a, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h))
    assert sorted(got) == [2, 4, 5] and all(t.startswith("UID ") for t in got.values()), got
    h2 = highest(select(a))
    assert h2 == max(modseq_of(t) for t in got.values()), (h2, got)
    assert fetches(ok(a, "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h2)) == {}
    a.logout()
    b.logout()


def test_other_session_change_reaches_idle_and_noop_with_modseq(gw):
    a, b = login(gw), login(gw)
    ok(a, "ENABLE CONDSTORE")
    select(a)
    select(b)
    uid = int(re.search(r"UID (\d+)", fetches(ok(a, "FETCH 3 (UID)"))[3]).group(1))
    a.send(b"I1 IDLE\r\n")
    assert a.readline().startswith(b"+"), "no IDLE continuation"
    ok(b, "STORE 3 +FLAGS (\\Answered)")
    line = a.readline().decode().rstrip("\r\n")
    m = re.fullmatch(r"\* 3 FETCH \(UID %d FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)" % uid, line)
    assert m and "\\Answered" in m.group(1), line
    idle_modseq = int(m.group(2))
    a.send(b"DONE\r\n")
    assert a.readline().startswith(b"I1 OK"), "IDLE not ended"
    assert modseqs(a)[3] == idle_modseq
    ok(b, "STORE 3 -FLAGS (\\Answered)")
    lines = ok(a, "NOOP")
    got = fetches(lines)
    assert modseq_of(got[3]) > idle_modseq and "\\Answered" not in got[3], lines
    a.logout()
    b.logout()


def test_store_unchangedsince(gw):
    """A conditional STORE changes what did not change after n and names the rest in
    [MODIFIED] (sequence numbers, UIDs for UID STORE); UNCHANGEDSINCE 0 always fails; with
    CONDSTORE a .SILENT STORE still says the new MODSEQ."""
    c = login(gw)
    select(c)
    ms = modseqs(c)
    uids = {k: int(re.search(r"UID (\d+)", t).group(1)) for k, t in fetches(ok(c, "FETCH 1:* (UID)")).items()}
    lines, tagged = raw(c, "STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % ms[1])
    assert tagged == "OK STORE completed", (lines, tagged)
    got = fetches(lines)
    new1 = modseq_of(got[1])
    assert new1 > ms[1] and "\\Flagged" in got[1] and got[1].startswith("UID %d " % uids[1]), lines
    # message 1 changed after ms[1] (above); message 2 did not
    lines, tagged = raw(c, "STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Draft)" % max(ms[1], ms[2]))
    assert tagged == "OK [MODIFIED 1] Conditional STORE failed", (lines, tagged)
    got = fetches(lines)
    assert sorted(got) == [2] and "\\Draft" in got[2], lines
    lines, tagged = raw(c, "UID STORE %d,%d (UNCHANGEDSINCE %d) FLAGS.SILENT (\\Seen \\Answered)"
                        % (uids[1], uids[6], max(ms.values())))
    assert tagged == "OK [MODIFIED %d] Conditional STORE failed" % uids[1], (lines, tagged)
    got = fetches(lines)
    assert re.fullmatch(r"UID %d MODSEQ \(\d+\)" % uids[6], got[6]), lines  # .SILENT: MODSEQ only
    lines, tagged = raw(c, "STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Deleted)")
    assert tagged == "OK [MODIFIED 1:3] Conditional STORE failed" and fetches(lines) == {}, (lines, tagged)
    for bad in ("STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)", "STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)",
                "STORE 1 (BOGUS 5) +FLAGS (\\Seen)"):
        lines, tagged = raw(c, bad)
        assert tagged.startswith("BAD"), (bad, tagged)
    c.logout()


def test_search_modseq(gw):
    c = login(gw)
    h = highest(select(c))
    ok(c, "STORE 4 +FLAGS (\\Flagged)")
    ok(c, "STORE 6 -FLAGS (\\Seen)")
    ms = modseqs(c)
    top = max(ms[4], ms[6])
    assert ok(c, "SEARCH MODSEQ %d" % (h + 1)) == ["* SEARCH 4 6 (MODSEQ %d)" % top]
    assert ok(c, 'SEARCH MODSEQ "/flags/\\\\flagged" all %d' % (h + 1)) == ["* SEARCH 4 6 (MODSEQ %d)" % top]
    assert ok(c, "SEARCH MODSEQ %d FLAGGED" % (h + 1)) == ["* SEARCH 4 (MODSEQ %d)" % ms[4]]
    assert ok(c, "SEARCH MODSEQ %d" % (top + 1)) == ["* SEARCH"]
    lines, tagged = raw(c, "UID SEARCH RETURN (ALL) MODSEQ %d" % (h + 1))
    assert re.fullmatch(r'\* ESEARCH \(TAG "\w+"\) UID ALL \d+[,:]\d+ MODSEQ %d' % top, lines[0]), lines
    lines, tagged = raw(c, "SEARCH RETURN (MIN) MODSEQ %d" % (h + 1))
    assert re.fullmatch(r'\* ESEARCH \(TAG "\w+"\) MIN 4 MODSEQ %d' % ms[4], lines[0]), lines
    lines, tagged = raw(c, "SEARCH RETURN (COUNT) MODSEQ %d" % (top + 1))
    assert re.fullmatch(r'\* ESEARCH \(TAG "\w+"\) COUNT 0', lines[0]), lines
    lines, tagged = raw(c, 'SEARCH MODSEQ "/flags/\\\\seen" 5')
    assert tagged.startswith("BAD"), tagged
    c.logout()


def test_highestmodseq_survives_a_restart(gw):
    """The MODSEQs are the replicated state's: a restarted gateway (its local copy of the
    state) shows the same ones, and HIGHESTMODSEQ does not go down."""
    c = login(gw)
    h = highest(select(c))
    before = modseqs(c)
    c.logout()
    gw.stop()
    gw.start()
    c = login(gw)
    assert highest(select(c)) >= h
    assert modseqs(c) == before
    c.logout()


def test_margin_reports_late_changes(gw, gateway):
    """With modseq_margin = 2 (seconds) a CHANGEDSINCE h also returns what changed up to 2 s
    before h (a change that reached this site late looks like that), nothing older."""
    g = gateway.factory.start(modseq_margin=2, site_id=2, uid_claim_delay=60)
    try:
        c = login(g)
        select(c)
        ok(c, "STORE 1 -FLAGS (\\Flagged)")
        time.sleep(3)
        ok(c, "STORE 2 -FLAGS (\\Flagged)")
        ok(c, "STORE 3 +FLAGS (\\Flagged)")
        h = modseqs(c)[3]
        got = fetches(ok(c, "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h))
        assert sorted(got) == [2, 3], got
        lines = ok(c, "SEARCH MODSEQ %d" % (h + 1))
        assert lines[0].startswith("* SEARCH 2 3 (MODSEQ "), lines
        c.logout()
    finally:
        g.stop()


def in_set(text, uid):
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        if int(lo) <= uid <= int(hi or lo):
            return True
    return False


def uid_map(c):
    """{seq: UID} of the selected folder."""
    return {k: int(re.search(r"UID (\d+)", t).group(1)) for k, t in fetches(ok(c, "FETCH 1:* (UID)")).items()}


def test_qresync(gw):
    """QRESYNC (RFC 7162 3.2): ENABLE; SELECT (QRESYNC (uidvalidity modseq [known-uids])) says
    what vanished since (VANISHED (EARLIER), a superset without known UIDs, exact with them)
    and FETCHes exactly what changed (modseq_margin = 0); a wrong UIDVALIDITY gets neither;
    UID FETCH (CHANGEDSINCE n VANISHED); expunges as VANISHED; [CLOSED] on a second SELECT."""
    a = login(gw)
    lines, tagged = raw(a, "SELECT INBOX (QRESYNC (1 1))")
    assert tagged.startswith("BAD"), tagged  # not enabled
    assert ok(a, "ENABLE QRESYNC") == ["* ENABLED QRESYNC"]
    assert ok(a, "ENABLE CONDSTORE QRESYNC") == ["* ENABLED"]  # QRESYNC implies CONDSTORE
    lines = select(a)
    h = highest(lines)
    validity = int(re.search(r"UIDVALIDITY (\d+)", " ".join(lines)).group(1))
    uids = uid_map(a)
    known = ",".join(str(u) for u in sorted(uids.values()))
    a.logout()

    b = login(gw)
    select(b)
    ok(b, "STORE 2 +FLAGS (\\Seen)")
    ok(b, "STORE 5 +FLAGS (\\Deleted)")
    ok(b, "EXPUNGE")
    b.logout()

    c = login(gw)
    ok(c, "ENABLE QRESYNC")
    lines = ok(c, "SELECT INBOX (QRESYNC (%d %d %s))" % (validity, h, known))
    vanished = [l for l in lines if l.startswith("* VANISHED")]
    assert vanished == ["* VANISHED (EARLIER) %d" % uids[5]], lines
    got = fetches(lines)
    assert list(got) == [2] and re.fullmatch(r"UID %d FLAGS \([^)]*\\Seen[^)]*\) MODSEQ \(\d+\)" % uids[2], got[2]), lines
    assert lines.index(vanished[0]) > max(i for i, l in enumerate(lines) if "UIDNEXT" in l), lines
    # no known UIDs: every UID below UIDNEXT that is not here (a superset), the same FETCHes
    lines = ok(c, "SELECT INBOX (QRESYNC (%d %d))" % (validity, h))
    assert lines[0] == "* OK [CLOSED] Previous mailbox closed", lines
    vanished = [l for l in lines if l.startswith("* VANISHED (EARLIER) ")]
    assert len(vanished) == 1, lines
    gone = vanished[0][len("* VANISHED (EARLIER) "):]
    now = uid_map(c)
    assert in_set(gone, uids[5]) and not any(in_set(gone, u) for u in now.values()), (gone, now)
    assert list(fetches(lines)) == [2], lines
    # with sequence match data (checked, not needed)
    lines = ok(c, "EXAMINE INBOX (QRESYNC (%d %d %s (1:2 %d:%d)))" % (validity, h, known, uids[1], uids[2]))
    assert "* VANISHED (EARLIER) %d" % uids[5] in lines, lines
    # another UIDVALIDITY: the client's cache is void, nothing is reported
    lines = ok(c, "SELECT INBOX (QRESYNC (%d %d %s))" % (validity + 1, h, known))
    assert not fetches(lines) and not any(l.startswith("* VANISHED") for l in lines), lines
    for bad in ("SELECT INBOX (QRESYNC (%d))" % validity, "SELECT INBOX (QRESYNC (x 5))",
                "SELECT INBOX (QRESYNC (%d 5 1:x))" % validity, "SELECT INBOX (QRESYNC)"):
        lines, tagged = raw(c, bad)
        assert tagged.startswith("BAD"), (bad, tagged)
    ok(c, "SELECT INBOX")  # back to a plain SELECT: QRESYNC stays enabled
    # UID FETCH (CHANGEDSINCE VANISHED): VANISHED (EARLIER) of the set first, then the FETCHes
    lines = ok(c, "UID FETCH %s (FLAGS) (CHANGEDSINCE %d VANISHED)" % (known, h))
    assert lines[0] == "* VANISHED (EARLIER) %d" % uids[5], lines
    assert [re.search(r"UID (\d+)", t).group(1) for t in fetches(lines).values()] == [str(uids[2])], lines
    for bad in ("UID FETCH 1:* (FLAGS) (VANISHED)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"):
        lines, tagged = raw(c, bad)
        assert tagged.startswith("BAD"), (bad, tagged)
    # expunges, another session's and its own, as VANISHED
    d = login(gw)
    ok(d, "SELECT INBOX")
    now = uid_map(c)
    ok(d, "STORE 1 +FLAGS (\\Deleted)")
    ok(d, "EXPUNGE")
    d.logout()
    lines = ok(c, "NOOP")
    assert "* VANISHED %d" % now[1] in lines and not any("EXPUNGE" in l for l in lines), lines
    ok(c, "STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    lines = ok(c, "EXPUNGE")
    assert lines == ["* VANISHED %d:%d" % (now[2], now[3])] or lines == ["* VANISHED %d,%d" % (now[2], now[3])], lines
    c.logout()
