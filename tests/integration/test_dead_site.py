"""A dead site costs one timeout, not one per message (issue 10). A destroyed site usually
drops packets rather than refusing connections; here it is a listener whose accept queue is
full, so the kernel drops the SYNs and a client waits its whole connect timeout.
Before, every `deliver` (and every LMTP message, and every gateway reconnect) paid the 30 s
I/O timeout for it again. Now a site gets `connect_timeout` (here 2 s) and one that ran into
it is skipped for a while, by every process of the host (state_dir/site-health)."""
import imaplib
import re
import socket

import pytest

from test_lmtp import Server, message, transaction

USER = "dirk.deadsite@example.org"
PASSWORD = "dead site password 1"


class BlackHole:
    """A listening socket whose accept queue is full and never drained: the kernel drops
    every further SYN, as a destroyed site's network does, so connecting hangs until the
    client gives up. (A refused connection would cost nothing.)"""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.bind((addr, 0))
        self.sock.listen(0)
        self.addr, self.port = addr, self.sock.getsockname()[1]
        self.filler = socket.create_connection((addr, self.port), timeout=5)  # takes the one slot

    def close(self):
        self.filler.close()
        self.sock.close()


def timeouts(state_dir):
    """How many connection attempts to the hole ran into the timeout, by site-health."""
    f = state_dir / "site-health"
    if not f.exists():
        return 0
    return sum(int(line.split()[3]) for line in f.read_text().splitlines() if line.split()[1:2] == [str(HOLE.port)])


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def hole(inn_site):
    global HOLE
    HOLE = BlackHole(inn_site.addr)
    yield HOLE
    HOLE.close()


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


def test_deliver_pays_for_a_dead_site_once(env, hole, inn_site):
    for i in range(4):
        r = env(["deliver", "--verbose", "--to", USER], input=b"Subject: %d\n\nthrough the survivor\n" % i)
        assert r.returncode == 0, out(r)
        assert re.search(r"on 1 site \(%s\)" % re.escape(inn_site.name), out(r)), out(r)
    # the first deliver tried it and waited 2 s; the other three knew (state_dir/site-health)
    assert timeouts(env.state_dir) == 1, (env.state_dir / "site-health").read_text()
    assert "not tried" not in out(r)  # it went on to the next site without a word of failure


def test_lmtp_skips_a_site_known_to_be_dead(env, hole, tmp_path):
    srv = Server(env, tmp_path / "lmtp.sock")
    try:
        c = srv.connect()
        for i in range(3):
            _, replies = transaction(c, [USER], message("lmtp %d" % i))
            assert replies[0][0] == 250, replies
        c.quit()
    finally:
        srv.stop()
    assert timeouts(env.state_dir) == 1


def test_gateway_falls_back_once(env, hole, gateway):
    """The gateway's workers connect to the preferred site first: a dead one costs each of
    them one timeout at most (it has its own state_dir), then logins go straight to the
    survivor."""
    def session():
        c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=60)
        c.login(USER, PASSWORD)
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) >= 4, data
        c.logout()

    session()
    after_first = timeouts(gateway.state_dir)
    assert 1 <= after_first <= 4, after_first  # at most once per worker
    for _ in range(3):
        session()
    assert timeouts(gateway.state_dir) == after_first
