"""state_dir/gateway.status tells the truth about the news server: it says DOWN while no site
answers, also when no session is open, and which site is read from again once it answers
(issue 9, item 6). This module stops and restarts its own INN site."""
import imaplib
import time

USER, PASSWORD = "status@example.org", "correct horse battery"


def status_of(gw):
    p = gw.state_dir / "gateway.status"
    return p.read_text() if p.exists() else ""


def wait_status(gw, pred, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        text = status_of(gw)
        if pred(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_status_follows_the_news_server(postern_env, inn_site, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert postern_env(["deliver", "--to", USER], input=b"Subject: s\r\n\r\nbody\r\n").returncode == 0
    c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=30)
    c.login(USER, PASSWORD)
    c.select("INBOX", readonly=True)
    c.logout()
    up = "reading mailboxes from site %s " % inn_site.name
    text = wait_status(gateway, lambda t: up in t)
    assert up in text and "DOWN" not in text, text
    inn_site.stop()
    try:
        text = wait_status(gateway, lambda t: "DOWN" in t)
        assert text.startswith("DOWN: no news server answers since "), text
        assert inn_site.name in text, text  # which site was tried, and why it failed
        assert "no news server answers" in gateway.log_text()
    finally:
        inn_site.start()
    text = wait_status(gateway, lambda t: up in t)
    assert up in text and "DOWN" not in text, text
