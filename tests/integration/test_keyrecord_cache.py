"""A login's key record serves the user's next logins (issue 14, item 7). Every login used to
fetch the record from the key group, throttled and hopeless ones included, so a flood of
guesses (or of junk in the group) cost a lookup each. The gateway now keeps a verified record
for [gateway] keyrecord_cache seconds; a wrong password against a cached record is checked
once more against a fresh one, so a password changed meanwhile works at once.

What shows that no lookup happens: after the record is cancelled on the news server, a fresh
lookup finds nothing (the login fails), a cached one still logs in."""
import imaplib
import os
import subprocess

import pytest

USER = "kim.keycache@example.org"
KEYGROUP = "postern.org.example.kim_2ekeycache.encrypt"
P1, P2 = "kim's first password", "kim's second password"


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def login(gw, password):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    try:
        typ, data = c.login(USER, password)
    except imaplib.IMAP4.error as e:
        return str(e)
    c.logout()
    return typ


def cancel_records(inn_site):
    """Removes every article of the key group (ctlinnd cancel): a lookup finds no record."""
    with inn_site.client() as c:
        c.group(KEYGROUP)
        ids = [fields[4] for fields in c.over("1-")]  # number, subject, from, date, message-id
    assert ids
    env = dict(os.environ, INNCONF=str(inn_site.innconf))
    for msgid in ids:
        r = subprocess.run(["/usr/lib/news/bin/ctlinnd", "-s", "cancel", msgid], env=env, capture_output=True)
        assert r.returncode == 0, out(r)
    with inn_site.client() as c:
        for msgid in ids:
            assert c.stat(msgid).startswith("430"), msgid


@pytest.fixture(scope="module")
def kim(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=P1 + "\n")
    assert r.returncode == 0, out(r)
    return USER


def test_password_change_works_at_once_against_a_cached_record(postern_env, gateway, kim):
    assert login(gateway, P1) == "OK"  # fetched and cached
    r = postern_env(["user", "passwd", USER, "--password-stdin"], input="%s\n%s\n" % (P1, P2))
    assert r.returncode == 0, out(r)
    assert login(gateway, P2) == "OK"  # the cached record says no; the fresh one yes
    assert "AUTHENTICATIONFAILED" in login(gateway, P1)
    assert login(gateway, P2) == "OK"


def test_cached_record_needs_no_lookup_and_the_setting_turns_it_off(postern_env, inn_site, gateway, kim):
    off = gateway.factory.start(keyrecord_cache=0)
    assert login(gateway, P2) == "OK"
    assert login(off, P2) == "OK"
    cancel_records(inn_site)
    assert login(gateway, P2) == "OK"  # from the cache
    assert "AUTHENTICATIONFAILED" in login(off, P2)  # looked up: no record any more
