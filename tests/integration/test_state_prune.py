"""A user's state (flags, expunge tombstones, cached ENVELOPEs) forgets the messages INN has
expired, so the file does not grow with every message ever received (issue 9: nothing ever
called the prune), and keeps every message that is still there."""
import imaplib
import time

USER = "petra.prune@example.org"
PASSWORD = "prune password 1"


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    return c


def deliver(env, subject):
    r = env(["deliver", "--to", USER], input=b"From: a@example.net\nSubject: %s\n\n%s body\n" % (subject, subject))
    assert r.returncode == 0, r.stderr


def state_file(gw):
    files = list((gw.state_dir / "users").glob("*.state"))
    assert len(files) == 1, files
    return files[0]


def wait_for_log(gw, text, timeout=20):
    deadline = time.monotonic() + timeout
    while text not in gw.log_text():
        assert time.monotonic() < deadline, "no %r in the gateway log:\n%s" % (text, gw.log_text()[-3000:])
        time.sleep(0.1)


def test_expired_messages_leave_the_state(postern_env, gateway, inn_site):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(30):
        deliver(postern_env, b"old %d" % i)
    c = login(gateway)
    c.select("INBOX")
    typ, _ = c.store("1:*", "+FLAGS", "(\\Flagged $Old)")
    assert typ == "OK"
    c.fetch("1:*", "(ENVELOPE)")  # cached in the state too
    c.logout()
    inn_site.expire(warp=31)  # INN drops all 30
    deliver(postern_env, b"new")

    # the next logout finds 30 entries of messages no site has: they go
    c = login(gateway)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"], data
    c.store("1", "+FLAGS", "(\\Seen $New)")
    big = state_file(gateway).stat().st_size  # the first logout's save: login waited for it
    c.logout()
    wait_for_log(gateway, "state of %s: forgot 30 messages gone from every site" % USER)
    deadline = time.monotonic() + 20
    while state_file(gateway).stat().st_size >= big:
        assert time.monotonic() < deadline, "the state file did not shrink from %d bytes" % big
        time.sleep(0.1)

    # what is still there kept its flags, and the unused keyword is gone
    c = login(gateway)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"], data
    typ, data = c.fetch("1", "(FLAGS)")
    flags = data[0].split(b"FLAGS (")[1].split(b")")[0].split()
    assert set(flags) - {b"\\Recent"} == {b"\\Seen", b"$New"}, data
    assert b"$Old" not in b" ".join(c.untagged_responses.get("FLAGS", [b""]))
    c.logout()
