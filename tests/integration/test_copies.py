"""A copy counts only when the site shows it (issue 10). An answer to the POST proves nothing:
nnrpd answers 240 for an article it parks because innd cannot take it, and INN answers
"441 435 Duplicate" for a Message-ID it remembers although the article is gone (cancelled,
or still in flight from a peer). Before, `deliver` exited 0 on either, and a site that
then died took the only "copy" with it."""
import os
import re
import subprocess
import time

from test_lmtp import Server, message, transaction

USER = "cora.copies@example.org"
PASSWORD = "copies password 1"
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>) on 1 site")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def ctlinnd(site, *args):
    r = subprocess.run(["/usr/lib/news/bin/ctlinnd", *args], env=dict(os.environ, INNCONF=str(site.innconf)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def parked(site):
    return [f for f in (site.dir / "spool" / "incoming").iterdir() if f.is_file()]


def setup_module_env(env):
    # a short confirmation wait keeps the test quick; the default is 5 s
    if "confirm_timeout" not in env.conf.read_text():
        env.conf.write_text(env.conf.read_text() + "\n[deliver]\nconfirm_timeout = 2\n")
    r = env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0 or "already" in out(r), out(r)


def test_an_article_nnrpd_parked_is_not_a_copy(postern_env, inn_site, tmp_path):
    """postern lmtp keeps its NNTP connection across messages, so one that opened before innd
    paused goes on to an nnrpd that parks what it cannot hand to innd and answers 240."""
    setup_module_env(postern_env)
    srv = Server(postern_env, tmp_path / "lmtp.sock")
    try:
        c = srv.connect()
        _, replies = transaction(c, [USER], message("before the pause"))
        assert replies[0][0] == 250, replies
        raw = message("parked")
        ctlinnd(inn_site, "pause", "test")
        try:
            t0 = time.monotonic()
            _, replies = transaction(c, [USER], raw)
            took = time.monotonic() - t0
            assert parked(inn_site), "nnrpd did not park the article: the test proves nothing"
        finally:
            ctlinnd(inn_site, "go", "test")
        code, text = replies[0]
        assert code == 451, replies  # the MTA keeps the message and retries
        # the reply says only "try again later" (it may reach the sender); the why is logged
        assert b"try again later" in text, text
        assert any("answered 240 but did not show" in l for l in srv.lines), srv.lines
        assert took < 60, took
        # the MTA's retry, with innd back: stored once, whichever copy gets there first
        _, replies = transaction(c, [USER], raw)
        assert replies[0][0] == 250, replies
        msgid = DELIVERED.search(replies[0][1].decode()).group(1)
        c.quit()
    finally:
        srv.stop()
    deadline = time.monotonic() + 60
    while parked(inn_site):  # the site's keeper runs rnews -U: the parked copy is a duplicate
        assert time.monotonic() < deadline, "spool/incoming never emptied"
        time.sleep(0.2)
    with inn_site.client() as c:
        assert c.stat(msgid).startswith("223")


def test_a_remembered_message_id_is_not_a_copy(postern_env, inn_site):
    setup_module_env(postern_env)
    raw = b"From: a@example.net\nSubject: cancelled\n\ngone but remembered\n"
    r = postern_env(["deliver", "--verbose", "--to", USER], input=raw)
    assert r.returncode == 0, out(r)
    msgid = DELIVERED.search(out(r)).group(1)
    ctlinnd(inn_site, "cancel", msgid)  # the article goes; history keeps the Message-ID
    with inn_site.client() as c:
        assert c.stat(msgid).startswith("430")
    r = postern_env(["deliver", "--verbose", "--to", USER], input=raw)
    assert r.returncode == 75, out(r)
    assert "duplicate but did not show" in out(r), out(r)


def test_inn_stopped_in_the_middle_of_an_lmtp_burst(postern_env, inn_site, tmp_path):
    """The Postfix drill of issue 10: while an LMTP burst flows, innd is throttled for a while
    (nnrpd parks what it gets and answers 240), then stopped and started again. Every message
    that got 250 must be in the spool by itself; what got 451 the MTA sends again and it is
    stored. Before, the parked ones got 250 and stayed parked."""
    setup_module_env(postern_env)
    srv = Server(postern_env, tmp_path / "burst.sock")
    replies, stop_at = {}, 15
    try:
        c = srv.connect()
        n = 0
        while n < 60:
            raw = message("burst %02d" % n)
            _, r = transaction(c, [USER], raw)
            replies[n] = (raw, r[0])
            n += 1
            if n == stop_at:
                ctlinnd(inn_site, "throttle", "drill")  # as innd does itself on a full disk: nnrpd parks
            if n == stop_at + 5:
                ctlinnd(inn_site, "go", "drill")
            if n == stop_at + 20:
                inn_site.stop()  # ctlinnd shutdown, then every nnrpd ends
            if n == stop_at + 25:
                inn_site.start()  # its keeper feeds in what nnrpd parked
        # the MTA's retries of everything told 451, until stored
        deadline = time.monotonic() + 120
        for k, (raw, (code, text)) in sorted(replies.items()):
            while code != 250:
                assert code == 451, (k, code, text)  # never a bounce
                assert time.monotonic() < deadline, "burst %02d is never stored: %s" % (k, text)
                time.sleep(0.5)
                _, r = transaction(c, [USER], raw)
                code, text = r[0]
            replies[k] = (raw, (code, text))
        c.quit()
    finally:
        srv.stop()
        if not inn_site.status():
            inn_site.start()
    ids = {k: DELIVERED.search(text.decode()).group(1) for k, (raw, (code, text)) in replies.items()}
    deadline = time.monotonic() + 60
    while parked(inn_site):
        assert time.monotonic() < deadline, "spool/incoming never emptied"
        time.sleep(0.2)
    with inn_site.client() as c:
        missing = [k for k, m in ids.items() if not c.stat(m).startswith("223")]
    assert not missing, "acknowledged but not stored: %s" % missing
