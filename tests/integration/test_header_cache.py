"""The header cache (issue 17 item 2, issue 13's THREAD): Thunderbird's and mutt's
message-list header fetches and THREAD=REFERENCES are answered from the user's state once a
message has been read, byte for byte what the message itself gives, without decrypting it
again — also after the gateway restarts (the cache is in the state file). A fetch naming a
field outside the cached set, and a message whose listed fields are too big to cache, are
still decrypted, and answered right."""
import imaplib
import re
import subprocess
import time

import pytest

from conftest import _free_port, _GatewayFactory

USER = "hedda.headers@example.org"
PASSWORD = "header cache password"

THUNDERBIRD = ("From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
               "In-Reply-To Content-Type Reply-To Received")
MUTT = ("DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
        "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL")


def messages():
    """Header shapes a list fetch meets: folding, repeated and mixed-case fields, fields
    outside the set, bare LF, a field without a value, a header without a body."""
    out = [
        b"Received: from a.example by b.example; Mon, 2 Nov 2026 10:00:00 +0000\n"
        b"Received: from c.example\n\tby a.example; Mon, 2 Nov 2026 09:59:00 +0000\n"
        b"From: Alice <alice@example.net>\nTo: hedda.headers@example.org\n"
        b"Subject: root\nDate: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <root@example.net>\n"
        b"X-Spam-Score: 1.0\nContent-Type: text/plain; charset=utf-8\n\nroot body\n",
        b"From: Bob <bob@example.net>\nTo: hedda.headers@example.org\nSubject: Re: root\n"
        b"Date: Mon, 2 Nov 2026 11:00:00 +0000\nMessage-ID: <r1@example.net>\n"
        b"In-Reply-To: <root@example.net>\nreferences: <root@example.net>\n\nreply 1\n",
        b"From: Carol <carol@example.net>\nTo: hedda.headers@example.org\nSubject: Re: Re: root\n"
        b"Date: Mon, 2 Nov 2026 12:00:00 +0000\nMessage-ID: <r2@example.net>\n"
        b"References: <root@example.net>\n <r1@example.net>\nX-Priority: 1\nPriority: urgent\n"
        b"Reply-To: list@example.net\nList-Post: <mailto:list@example.net>\nLines: 1\n\nreply 2\n",
        b"From: Dan <dan@example.net>\nSubject: no date, no body separator\nCc:\n",
        b"From: Erin <erin@example.net>\r\nSubject: CRLF and  spaces \r\nX-Label: work\r\n"
        b"Content-Description: a note\r\nSender: erin@example.net\r\nMessage-ID: <e@example.net>\r\n"
        b"Subject: a second Subject\r\n\r\nbody\r\n",
    ]
    # listed fields far beyond the cache's 16 KiB: looked at, not kept
    out.append(b"From: Frank <frank@example.net>\nSubject: big\n" +
               b"".join(b"Received: from relay%d.example by relay%d.example; Mon, 2 Nov 2026 10:00:00 +0000\n"
                        % (i, i + 1) for i in range(400)) + b"Message-ID: <big@example.net>\n\nbig\n")
    return out


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def expected_fields(msg, names):
    """HEADER.FIELDS (names) of msg as RFC 3501 defines it: the named fields as they stand
    (folding kept), then a blank line."""
    head = crlf(msg).split(b"\r\n\r\n", 1)[0] + b"\r\n"
    want = {n.lower() for n in names.split()}
    fields, cur = [], None
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and cur is not None:
            cur.append(line)
            continue
        cur = [line]
        fields.append(cur)
    out = b""
    for f in fields:
        name = f[0].split(b":", 1)[0].strip().decode().lower() if b":" in f[0] else None
        if name in want:
            out += b"".join(l + b"\r\n" for l in f)
    return out + b"\r\n"


def header_fetch(c, names):
    typ, data = c.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)])" % names)
    assert typ == "OK", data
    got = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            got[uid] = item[1]
    return got


def decrypted(gw):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "http://%s:%d/metrics" % (gw.addr, gw.metrics_port)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(float(re.search(r"^postern_messages_decrypted_total (\S+)$", r.stdout, re.M).group(1)))


@pytest.fixture(scope="module")
def gw(postern_env, inn_site, tmp_path_factory):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for m in messages():
        r = postern_env(["deliver", "--to", USER], input=m)
        assert r.returncode == 0, r.stderr
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    addr = inn_site.addr
    g = factory.start(conf_extra="[metrics]\nlisten = %s:%d" % (addr, _free_port(addr)))
    g.metrics_port = int(re.search(r"^listen = .*:(\d+)$", g.conf.read_text(), re.M).group(1))
    yield g
    factory.close()


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(messages()), data
    return c


def wait_metrics(gw):
    deadline = time.monotonic() + 20
    while True:
        try:
            return decrypted(gw)
        except (AssertionError, AttributeError):
            assert time.monotonic() < deadline, "no metrics from the gateway"
            time.sleep(0.2)


def thread(c):
    typ, data = c.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK", data
    return data[0]


def test_list_fetches_and_thread_come_from_the_cache_after_a_restart(gw):
    msgs = messages()
    wait_metrics(gw)
    c = login(gw)
    first = header_fetch(c, THUNDERBIRD)  # fills the cache: every message decrypted once
    uids = sorted(first)
    assert [first[u] for u in uids] == [expected_fields(m, THUNDERBIRD) for m in msgs]
    threads = thread(c)
    c.logout()
    gw.stop()  # the state, with its cache, is written; the decrypted messages are gone
    gw.start()
    base = wait_metrics(gw)
    c = login(gw)
    again = header_fetch(c, THUNDERBIRD)
    assert again == first
    mutt = header_fetch(c, MUTT)
    assert [mutt[u] for u in uids] == [expected_fields(m, MUTT) for m in msgs]
    assert thread(c) == threads
    # only the message whose fields were too big to keep was decrypted (once: the session's
    # decrypted messages stay in memory for its next commands)
    assert decrypted(gw) - base == 1
    # a field outside the cached set: every message is read
    other = header_fetch(c, "From X-Spam-Score")
    assert [other[u] for u in uids] == [expected_fields(m, "From X-Spam-Score") for m in msgs]
    c.logout()
    assert decrypted(gw) - base == len(msgs)


def test_threads_from_the_cache_match_the_messages(gw):
    c = login(gw)
    header_fetch(c, THUNDERBIRD)
    uids = sorted(header_fetch(c, "Subject"))
    # root <- r1 <- r2, and three messages of their own (RFC 5256 REFERENCES: in date order,
    # messages without Date: by arrival)
    got = thread(c)
    c.logout()
    assert got.startswith(b"(%d %d %d)" % tuple(uids[:3])), got
    for u in uids[3:]:
        assert b"(%d)" % u in got, got


def test_search_on_cached_fields_decrypts_nothing(gw):
    """SEARCH FROM/SUBJECT/TO/SENT*/HEADER of a cached field answers from the header cache,
    the same as from the messages; a field outside the set reads the messages."""
    c = login(gw)
    header_fetch(c, THUNDERBIRD)  # every cache filled (already, from the tests above)
    uids = sorted(header_fetch(c, "Subject"))
    c.logout()
    gw.stop()
    gw.start()
    base = wait_metrics(gw)
    c = login(gw)
    want = {
        'FROM "carol"': [uids[2]],
        'SUBJECT "root"': uids[:3],
        'OR FROM "bob" FROM "erin"': [uids[1], uids[4]],
        "SENTSINCE 2-Nov-2026": uids[:3],
        "HEADER X-Priority 1": [uids[2]],
        'HEADER References "r1@example.net"': [uids[2]],
        'NOT HEADER Content-Type ""': uids[1:],
    }
    for criteria, expect in want.items():
        typ, data = c.uid("SEARCH", criteria)
        assert typ == "OK", (criteria, data)
        assert sorted(int(x) for x in data[0].split()) == expect, (criteria, data)
    # only the message whose fields were too big to keep was read (once: then it is in memory)
    assert decrypted(gw) - base == 1
    typ, data = c.uid("SEARCH", 'HEADER X-Spam-Score "1.0"')
    assert typ == "OK" and [int(x) for x in data[0].split()] == [uids[0]], data
    assert decrypted(gw) - base == len(messages())  # a field the cache does not hold
    c.logout()
