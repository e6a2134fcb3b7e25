"""SORT, THREAD (RFC 5256) and ESEARCH (RFC 4731) against a real gateway and INN site, with
imaplib. The mail carries fixed Date: fields in several zones and known References; every
expected answer below was worked out by hand from RFC 5256's rules (the reasoning is beside
each). Nothing depends on today's date, the machine's zone or its speed: arrival times tie
or ascend with the sequence numbers whatever the clock says."""
import imaplib

import pytest

USER = "sorter.threads@example.org"
PASSWORD = "sort and thread 1"


def msg(mid, subject, date, frm, refs=None, irt=None):
    h = ["From: %s" % frm, "To: Sorter <sorter.threads@example.org>", "Subject: %s" % subject,
         "Date: %s" % date, "Message-ID: %s" % mid]
    if refs:
        h.append("References: %s" % refs)
    if irt:
        h.append("In-Reply-To: %s" % irt)
    return ("\n".join(h) + "\n\nbody of %s\n" % mid).encode()


# seq  Message-ID  base subject  Date in UTC       From   links
#  1   t1          PLAN          2 Nov 10:00       zed
#  2   t2          PLAN (Re:)    2 Nov 11:00 (+01) amy    References t1
#  3   t3          BUDGET        1 Nov 14:00 (-05) bob
#  4   t4          PLAN (Re:)    2 Nov 13:00       carl   References t1 t2, In-Reply-To t2
#  5   t5          BUDGET        3 Nov 08:00       dora   ([list] is a blob, not a reply)
#  6   t6          LUNCH (Re:)   2 Nov 11:30       amy    References <gone> (never delivered)
#  7   t7          BUDGET (Re:)  4 Nov 00:00       bob    In-Reply-To t3 only
MAIL = [
    msg("<t1@sort.example>", "Plan", "Mon, 2 Nov 2026 10:00:00 +0000", "Zed <zed@example.net>"),
    msg("<t2@sort.example>", "Re: Plan", "Mon, 2 Nov 2026 12:00:00 +0100", "Amy <amy@example.net>",
        refs="<t1@sort.example>"),
    msg("<t3@sort.example>", "Budget", "Sun, 1 Nov 2026 09:00:00 -0500", "bob@example.net"),
    msg("<t4@sort.example>", "Re: Re: Plan", "Mon, 2 Nov 2026 13:00:00 +0000", "Carl <carl@example.net>",
        refs="<t1@sort.example>\n <t2@sort.example>", irt="<t2@sort.example>"),
    msg("<t5@sort.example>", "[list] Budget", "Tue, 3 Nov 2026 08:00:00 +0000", "Dora <dora@example.net>"),
    msg("<t6@sort.example>", "Re: Lunch", "Mon, 2 Nov 2026 11:30:00 +0000", "amy@example.net",
        refs="<gone@sort.example>"),
    msg("<t7@sort.example>", "Re: Budget", "Wed, 4 Nov 2026 00:00:00 +0000", "Bob <bob@example.net>",
        irt="<t3@sort.example>"),
]


@pytest.fixture(scope="module")
def mailbox(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for raw in MAIL:
        r = postern_env(["deliver", "--to", USER], input=raw)
        assert r.returncode == 0, r.stderr
    return gateway


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK" and data == [str(len(MAIL)).encode()], data
    return c


def numbers(data):
    return [int(x) for x in data[0].split()] if data and data[0] else []


def seq_uids(c):
    typ, data = c.fetch("1:*", "(UID)")
    assert typ == "OK"
    return {int(d.split()[0]): int(d.split()[2].rstrip(b")")) for d in data}


def esearch(c, *args, uid=False):
    """The ESEARCH response's text after the tag's list, for SEARCH args."""
    name = "UID" if uid else "SEARCH"
    typ, data = c._simple_command(name, *((("SEARCH",) if uid else ()) + args))
    assert typ == "OK", data
    lines = c.untagged_responses.pop("ESEARCH", [])
    assert len(lines) == 1, lines
    line = lines[0].decode()
    assert line.startswith('(TAG "'), line
    return line[line.index(")") + 1:].strip()


SORTS = [
    # UTC, not the local time: 2 (12:00 +0100 = 11:00) comes before 6 (11:30)
    (("(DATE)", "UTF-8", "ALL"), [3, 1, 2, 6, 4, 5, 7]),
    (("(REVERSE DATE)", "UTF-8", "ALL"), [7, 5, 4, 6, 2, 1, 3]),
    # BUDGET (3 5 7), LUNCH (6), PLAN (1 2 4): ties in sequence order
    (("(SUBJECT)", "UTF-8", "ALL"), [3, 5, 7, 6, 1, 2, 4]),
    (("(SUBJECT REVERSE DATE)", "UTF-8", "ALL"), [7, 5, 3, 6, 4, 2, 1]),
    # the first From's mailbox: amy (2 6), bob (3 7), carl, dora, zed
    (("(FROM)", "UTF-8", "ALL"), [2, 6, 3, 7, 4, 5, 1]),
    # RFC 5957: the display name, else the address: AMY, AMY@EXAMPLE.NET, BOB, BOB@EXAMPLE.NET, ...
    (("(DISPLAYFROM)", "UTF-8", "ALL"), [2, 6, 7, 3, 4, 5, 1]),
    # arrival ties or ascends with the sequence numbers
    (("(ARRIVAL)", "UTF-8", "ALL"), [1, 2, 3, 4, 5, 6, 7]),
    (("(REVERSE SUBJECT)", "US-ASCII", "NOT", "SUBJECT", "plan"), [6, 3, 5, 7]),
    (("(DATE)", "UTF-8", "SUBJECT", "plan"), [1, 2, 4]),
]


def test_capabilities(mailbox):
    c = login(mailbox)
    for cap in ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ESEARCH"):
        assert cap in c.capabilities, c.capabilities
    c.logout()


def test_sort(mailbox):
    c = login(mailbox)
    # twice: the first run reads the messages (no envelope cached yet), the second the cache
    for _ in range(2):
        for args, want in SORTS:
            typ, data = c.sort(*args)
            assert typ == "OK" and numbers(data) == want, (args, data)
    to_uid = seq_uids(c)
    typ, data = c.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and numbers(data) == [to_uid[n] for n in [3, 5, 7, 6, 1, 2, 4]], data
    typ, data = c.uid("SORT", "(REVERSE DATE)", "UTF-8", "UID", "%d:*" % to_uid[4])
    assert typ == "OK" and numbers(data) == [to_uid[n] for n in [7, 5, 4, 6]], data
    typ, data = c.sort("(SIZE)", "UTF-8", "SUBJECT", "\"no such subject\"")
    assert typ == "OK" and numbers(data) == [], data
    c.logout()


def test_thread(mailbox):
    c = login(mailbox)
    # REFERENCES: 1 > 2 > 4; 3 > 7 (In-Reply-To); 6's parent was never delivered, so the
    # dummy for <gone> goes and 6 stands alone; 5 shares 3's base subject and neither is a
    # reply, so a dummy joins them (step 5). Roots by date: the dummy (as 3: 1 Nov), 1, 6.
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"((3 7)(5))(1 2 4)(6)"], data
    # ORDEREDSUBJECT: per base subject, by date under the first; threads by their first date
    typ, data = c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"(3 (5)(7))(1 (2)(4))(6)"], data
    typ, data = c.thread("REFERENCES", "UTF-8", "SUBJECT", "plan")
    assert typ == "OK" and data == [b"(1 2 4)"], data
    to_uid = seq_uids(c)
    typ, data = c.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")
    want = "(%d (%d)(%d))(%d (%d)(%d))(%d)" % tuple(to_uid[n] for n in (3, 5, 7, 1, 2, 4, 6))
    assert typ == "OK" and data == [want.encode()], data
    typ, data = c.thread("REFERENCES", "UTF-8", "SUBJECT", "\"no such subject\"")
    assert typ == "OK" and data in ([None], [b""]), data  # "* THREAD" alone
    c.logout()


def compress(ids):
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else "%d:%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(out)


def test_esearch(mailbox):
    c = login(mailbox)
    assert esearch(c, "RETURN", "(MIN MAX COUNT)", "SUBJECT", "plan") == "MIN 1 MAX 4 COUNT 3"
    assert esearch(c, "RETURN", "()", "ALL") == "ALL 1:7"
    assert esearch(c, "RETURN", "(ALL)", "SUBJECT", "budget") == "ALL 3,5,7"
    assert esearch(c, "RETURN", "(COUNT MIN)", "SUBJECT", "\"no such subject\"") == "COUNT 0"
    assert esearch(c, "RETURN", "(ALL)", "SUBJECT", "\"no such subject\"") == ""
    to_uid = seq_uids(c)
    budget = sorted(to_uid[n] for n in (3, 5, 7))
    assert esearch(c, "RETURN", "(COUNT ALL)", "SUBJECT", "budget", uid=True) == \
        "UID COUNT 3 ALL %s" % compress(budget)
    assert esearch(c, "RETURN", "(MAX)", "CHARSET", "UTF-8", "ALL", uid=True) == "UID MAX %d" % to_uid[7]
    # a plain SEARCH still answers SEARCH
    typ, data = c.search(None, "SUBJECT", "plan")
    assert typ == "OK" and numbers(data) == [1, 2, 4]
    assert "ESEARCH" not in c.untagged_responses
    c.logout()


BAD = [
    ("SORT", "(BOGUS)", "UTF-8", "ALL"),
    ("SORT", "DATE", "UTF-8", "ALL"),
    ("SORT", "(REVERSE)", "UTF-8", "ALL"),
    ("SORT", "()", "UTF-8", "ALL"),
    ("SORT", "(DATE)", "UTF-8", "NOSUCHKEY"),
    ("SORT", "(DATE)", "UTF-8", "CHARSET", "UTF-8", "ALL"),
    ("THREAD", "BOGUS", "UTF-8", "ALL"),
    ("THREAD", "(REFERENCES)", "UTF-8", "ALL"),
    ("SEARCH", "RETURN", "(SAVE)", "ALL"),
    ("SEARCH", "RETURN", "MIN", "ALL"),
    ("SEARCH", "RETURN", "(MIN)"),
]


def test_bad_syntax_keeps_the_session(mailbox):
    c = login(mailbox)
    for args in BAD:
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            c._simple_command(*args)
        assert c.noop()[0] == "OK"
    # too few arguments for the command table
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c._simple_command("SORT", "(DATE)", "UTF-8")
    typ, data = c._simple_command("SORT", "(DATE)", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0], data
    typ, data = c._simple_command("THREAD", "REFERENCES", "X-NONE", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0], data
    typ, data = c.sort("(DATE)", "UTF-8", "ALL")
    assert typ == "OK" and numbers(data) == [3, 1, 2, 6, 4, 5, 7]
    c.logout()


def test_needs_a_selected_mailbox(mailbox):
    c = imaplib.IMAP4_SSL(mailbox.addr, mailbox.imaps_port, ssl_context=mailbox.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    # imaplib refuses these itself before SELECT: send them by hand
    for line in (b"s1 SORT (DATE) UTF-8 ALL", b"s2 THREAD REFERENCES UTF-8 ALL"):
        c.send(line + b"\r\n")
        assert c.readline() == line[:3] + b"BAD No mailbox selected\r\n"
    c.send(b"s3 NOOP\r\n")
    assert c.readline() == b"s3 OK NOOP completed\r\n"
    c.logout()
