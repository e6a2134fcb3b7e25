"""Password guessing against a real gateway (issue 14, item 3): 60 different wrong passwords
sent at once to one user are not all checked (a guess counts when the vault accepts it, not
when Argon2id is done with it), and during that attack the user, at another IP, still logs
in with the right password. The attacker and the user connect from different loopback
addresses."""
import imaplib
import socket
import threading

USER = "gina.guess@example.org"
PASSWORD = "gina's real password"
GUESSES = 60


class SourceIMAP(imaplib.IMAP4_SSL):
    """IMAPS from a chosen local address."""

    def __init__(self, gw, source, timeout=60):
        self._source = source
        super().__init__(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def attempt(gw, source, password):
    c = SourceIMAP(gw, source)
    try:
        c.login(USER, password)
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            c.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass


def test_parallel_guesses_are_not_all_checked_and_the_user_gets_in(gateway, postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    attacker, home = "127.0.0.77", "127.0.0.78"

    def burst(n, tag):
        results = [None] * n

        def guess(i):
            results[i] = attempt(gateway, attacker, "guess %s %d" % (tag, i))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        checked = sum("AUTHENTICATIONFAILED" in (x or "") for x in results)
        throttled = sum("Too many failed logins" in (x or "") for x in results)
        assert "OK" not in results
        assert checked + throttled == n, results
        return checked

    checked = burst(GUESSES, "a")
    assert checked <= 5, "%d of %d parallel guesses were checked" % (checked, GUESSES)
    # in back-off, once it has passed: one guess at a time, however many are sent
    checked = burst(20, "b")
    assert checked <= 1, "%d of 20 parallel guesses were checked in back-off" % checked
    # the user, elsewhere, is not locked out by the attacker's failures
    assert attempt(gateway, home, PASSWORD) == "OK"


def test_an_unknown_user_is_throttled_as_a_known_one(gateway, postern_env):
    """Issue 14, item 5: answers must not tell which names exist. Wrong passwords for a user
    who exists and for one who does not get the same answers in the same order — including
    the throttle's, which unknown users never got before."""
    known = "hugo.known@example.org"
    r = postern_env(["user", "add", known, "--password-stdin"], input="hugo's password 1\n")
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")

    def answers(address, source):
        out = []
        for i in range(7):
            c = SourceIMAP(gateway, source)
            try:
                c.login(address, "wrong guess %d" % i)
                out.append("OK")
            except imaplib.IMAP4.error as e:
                out.append("throttled" if "Too many failed logins" in str(e) else
                           "failed" if "AUTHENTICATIONFAILED" in str(e) else str(e))
            finally:
                try:
                    c.logout()
                except (imaplib.IMAP4.abort, OSError):
                    pass
        return out

    for_known = answers(known, "127.0.0.81")
    for_unknown = answers("nobody.at.all@example.org", "127.0.0.82")
    assert for_known[:5] == ["failed"] * 5 and "throttled" in for_known[5:], for_known
    assert for_unknown == for_known
