"""Articles that are not the user's mail never lock the user out (issue 14, item 1). Anyone
with the posting account can post into a user's group an article with a postern-shaped
Message-ID that does not open: random bytes, or a real envelope re-posted under a new
Message-ID (its sealed Message-ID no longer matches), crossposted to several users' groups.
Before, POP3 login answered -ERR [SYS/TEMP] on every try and IMAP FETCH 1:* / SEARCH TEXT
answered NO [UNAVAILABLE] every time. Now such an article is skipped, logged, and removed from
the mailbox; the real mail is served as before."""
import base64
import imaplib
import os
import poplib
import re

import pytest

from conftest import _free_port, _GatewayFactory
from nntplib_min import make_article

USERS = ["jules.junk@example.org", "jana.junk@example.org"]
PASSWORD = "junk test password"
REAL = [b"From: a@example.net\nSubject: real %d\n\nthe real body %d\n" % (i, i) for i in range(3)]


def group_of(address):
    local, domain = address.split("@")
    return "postern." + ".".join(reversed(domain.split("."))) + "." + local.replace(".", "_2e")


def fake_msgid():
    return "<m.%s@postern.invalid>" % os.urandom(20).hex()


@pytest.fixture(scope="module")
def poisoned(postern_env, inn_site, tmp_path_factory):
    for u in USERS:
        r = postern_env(["user", "add", u, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
        for m in REAL:
            r = postern_env(["deliver", "--to", u], input=m)
            assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    groups = [group_of(u) for u in USERS]
    with inn_site.client() as c:
        # random bytes, crossposted to both users' groups
        junk = base64.encodebytes(os.urandom(600))
        c.post(make_article(",".join(groups), fake_msgid(), junk))
        # a real envelope of the first user, re-posted under a new Message-ID
        c.group(groups[0])
        _, body = c.body("1")  # the body lines of her first message
        c.post(make_article(groups[0], fake_msgid(), b"\n".join(body) + b"\n"))
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    addr = inn_site.addr
    gw = factory.start(pop3s="%s:%d" % (addr, _free_port(addr)))
    gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
    yield gw
    factory.close()


def pop3_subjects(gw, user):
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=60)
    p.user(user)
    p.pass_(PASSWORD)
    n, _ = p.stat()
    subjects = set()
    for i in range(1, n + 1):
        lines = p.top(i, 0)[1]
        subjects |= {l.decode()[len("Subject: "):] for l in lines if l.startswith(b"Subject: ")}
    p.quit()
    return n, subjects


def test_pop3_login_works_and_serves_only_the_real_mail(poisoned):
    for user in USERS:
        n, subjects = pop3_subjects(poisoned, user)
        assert n == len(REAL) and subjects == {"real %d" % i for i in range(len(REAL))}, (user, n, subjects)


def test_imap_fetch_and_search_are_not_failed_by_junk(poisoned):
    c = imaplib.IMAP4_SSL(poisoned.addr, poisoned.imaps_port, ssl_context=poisoned.ssl_context(), timeout=60)
    c.login(USERS[0], PASSWORD)
    c.select("INBOX")
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    subjects = {item[1].decode().strip() for item in data if isinstance(item, tuple)}
    assert subjects == {"Subject: real %d" % i for i in range(len(REAL))}, subjects
    typ, data = c.search(None, "TEXT", '"the real body"')
    assert typ == "OK" and len(data[0].split()) == len(REAL), data
    # the junk left the mailbox for good: a new SELECT counts only the real mail
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(REAL), data
    c.logout()
    log = poisoned.log_text()
    assert log.count("is not this user's mail") >= 3, log[-3000:]  # two junk articles for jules, one for jana
