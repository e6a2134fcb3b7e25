"""A dead site costs one timeout, not one per message (issue 10). A destroyed site usually
drops packets rather than refusing connections; here it is a listener that takes the
connection and never says a word, which costs a client the same: its whole connect timeout.
Before, every `deliver` (and every LMTP message, and every gateway reconnect) paid the 30 s
I/O timeout for it again. Now a site gets `connect_timeout` (here 2 s) and one that ran into
it is skipped for a while, by every process of the host (state_dir/site-health)."""
import imaplib
import re
import socket
import threading

import pytest

from test_lmtp import Server, message, transaction

USER = "dirk.deadsite@example.org"
PASSWORD = "dead site password 1"


class SilentSite:
    """Accepts NNTP connections and never answers; counts them."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.addr, self.port = addr, self.sock.getsockname()[1]
        self.accepted, self.held = 0, []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(c)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def hole(inn_site):
    h = SilentSite(inn_site.addr)
    yield h
    h.close()


@pytest.fixture(scope="module")
def env(postern_env, hole):
    """postern.conf with the silent site first (preferred), the real one second."""
    # the user exists before the site dies (user add wants its groups on every site)
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    text = postern_env.conf.read_text()
    i = text.index("[site ")
    text = text[:i] + "[site hole]\nhost = %s\nport = %d\nconnect_timeout = 2\n\n" % (hole.addr, hole.port) + text[i:]
    postern_env.conf.write_text(text)
    return postern_env


def test_deliver_pays_for_a_silent_site_once(env, hole, inn_site):
    before = hole.accepted
    for i in range(4):
        r = env(["deliver", "--verbose", "--to", USER], input=b"Subject: %d\n\nthrough the survivor\n" % i)
        assert r.returncode == 0, out(r)
        assert re.search(r"on 1 site \(%s\)" % re.escape(inn_site.name), out(r)), out(r)
    # the first deliver tried it and waited 2 s; the other three knew (state_dir/site-health)
    assert hole.accepted - before == 1, hole.accepted - before
    assert "hole" in (env.state_dir / "site-health").read_text() or hole.addr in (env.state_dir / "site-health").read_text()


def test_lmtp_skips_a_site_known_to_be_silent(env, hole, tmp_path):
    before = hole.accepted
    srv = Server(env, tmp_path / "lmtp.sock")
    try:
        c = srv.connect()
        for i in range(3):
            _, replies = transaction(c, [USER], message("lmtp %d" % i))
            assert replies[0][0] == 250, replies
        c.quit()
    finally:
        srv.stop()
    assert hole.accepted == before


def test_gateway_falls_back_once(env, hole, gateway):
    """The gateway's workers connect to the preferred site first: a silent one costs each of
    them one timeout at most, then logins go straight to the survivor."""
    def session():
        c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=60)
        c.login(USER, PASSWORD)
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) >= 4, data
        c.logout()

    session()
    after_first = hole.accepted
    for _ in range(3):
        session()
    assert hole.accepted == after_first
