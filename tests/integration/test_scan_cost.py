"""A scan after new mail reads only the new articles, also in a group with a cancelled one.
INN's GROUP count goes on counting a cancelled article until expireover runs; the scan took
that for "articles vanished" and read the whole group, twice (a stale-nnrpd guard), after
every expunge or state snapshot: at 10,000 messages APPEND went from 24 to 8 messages/s."""
import imaplib
import re
import time

USER = "scott.scan@example.org"
PASSWORD = "scan test password"


def msg(i):
    return b"From: a@example.net\nSubject: scan %d\n\nbody %d\n" % (i, i)


def wait_exists(c, n):
    deadline = time.monotonic() + 30
    while True:
        c.noop()
        typ, data = c.search(None, "ALL")
        if len(data[0].split()) == n:
            return
        assert time.monotonic() < deadline, (n, data)
        time.sleep(0.2)


def test_new_mail_after_an_expunge_is_an_incremental_scan(postern_env, gateway, inn_site):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(5):
        assert postern_env(["deliver", "--to", USER], input=msg(i)).returncode == 0
    c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    c.select("INBOX")
    assert c.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert c.expunge()[0] == "OK"  # the article is cancelled at the site; GROUP still counts it
    wait_exists(c, 4)
    for i in range(5, 8):  # the first scan after the cancel learns the gap; the others are cheap
        assert postern_env(["deliver", "--to", USER], input=msg(i)).returncode == 0
        wait_exists(c, i)
    c.logout()
    scans = re.findall(r"%s: (full|new-article) scan" % re.escape(USER), gateway.log_text())
    assert scans[-2:] == ["new-article", "new-article"], scans
