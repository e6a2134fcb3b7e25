"""postern serve: connection, TLS (implicit and STARTTLS) and login, against a real INN site,
with Python's imaplib, raw sockets and curl. Tests share one gateway and one user."""
import base64
import imaplib
import os
import pwd
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

USER = "Carol.Gateway@Example.ORG"
CANON = "carol.gateway@example.org"
PASSWORD = "correct horse battery"
BASE_CAPS = ["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "NAMESPACE", "IDLE", "UIDPLUS", "UNSELECT",
             "CHILDREN", "SPECIAL-USE", "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
             "ESEARCH", "LIST-EXTENDED", "LIST-STATUS", "MOVE", "MULTIAPPEND", "CONDSTORE", "QRESYNC"]
LIMIT = ["APPENDLIMIT=104857600"]  # [deliver] max_message_size, after the login capabilities


@pytest.fixture(scope="module")
def user(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    return USER


def plain(gw, timeout=10):
    return imaplib.IMAP4(gw.addr, gw.imap_port, timeout=timeout)


def tls(gw, timeout=10):
    return imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=timeout)


class Raw:
    """A line-oriented raw IMAP connection (plain or TLS)."""

    def __init__(self, gw, implicit_tls=True, timeout=10, source=None):
        self.gw = gw
        sock = socket.create_connection((gw.addr, gw.imaps_port if implicit_tls else gw.imap_port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        if implicit_tls:
            sock = gw.ssl_context().wrap_socket(sock)
        self.sock, self.buf = sock, b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def until_tagged(self, tag):
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + " "):
                return lines

    def starttls(self):
        self.sock = self.gw.ssl_context().wrap_socket(self.sock)

    def close(self):
        self.sock.close()


def caps_of(text):
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", text)
    assert m, text
    return m.group(1).split()


def plain_ir(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def test_greeting_over_imaps(gateway):
    c = tls(gateway)
    welcome = c.welcome.decode()
    assert welcome.startswith("* OK [CAPABILITY ") and welcome.endswith("] postern ready")
    assert caps_of(welcome) == BASE_CAPS + ["AUTH=PLAIN"] + LIMIT
    typ, data = c.capability()
    assert typ == "OK" and data[0].decode().split() == BASE_CAPS + ["AUTH=PLAIN"] + LIMIT
    c.logout()


def test_plain_port_refuses_login_before_tls(gateway, user):
    c = plain(gateway)
    caps = caps_of(c.welcome.decode())
    assert caps == BASE_CAPS + ["STARTTLS", "LOGINDISABLED"] + LIMIT
    assert "AUTH=PLAIN" not in caps
    with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
        c.login(USER, PASSWORD)
    typ, data = c._simple_command("AUTHENTICATE", "PLAIN", plain_ir(USER, PASSWORD))
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[0]
    c.logout()


def test_starttls_then_login(gateway, user):
    c = plain(gateway)
    c.starttls(ssl_context=gateway.ssl_context())
    assert sorted(c.capabilities) == sorted(x.upper() for x in BASE_CAPS + ["AUTH=PLAIN"] + LIMIT)
    typ, data = c.login(USER, PASSWORD)
    assert typ == "OK"
    assert caps_of(data[0].decode()) == BASE_CAPS + LIMIT
    assert data[0].decode().endswith("Logged in")
    c.logout()
    

def test_authenticate_plain_by_continuation(gateway, user):
    c = tls(gateway)
    typ, data = c.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (USER, PASSWORD)).encode())
    assert typ == "OK" and caps_of(data[0].decode()) == BASE_CAPS + LIMIT
    assert c.state == "AUTH"
    c.logout()


def test_authenticate_plain_sasl_ir(gateway, user):
    r = Raw(gateway)
    r.line()
    r.send("a AUTHENTICATE PLAIN %s\r\n" % plain_ir(USER, PASSWORD, authzid=USER))
    lines = r.until_tagged("a")
    assert lines == ["a OK [CAPABILITY %s] Logged in" % " ".join(BASE_CAPS + LIMIT)], lines
    r.send("b NAMESPACE\r\nc ID NIL\r\nd ENABLE UTF8=ACCEPT\r\n")
    assert r.until_tagged("b") == ['* NAMESPACE (("" "/")) NIL NIL', "b OK Namespace completed"]
    assert r.until_tagged("c") == ['* ID ("name" "postern")', "c OK ID completed"]
    assert r.until_tagged("d") == ["* ENABLED", "d OK ENABLE completed"]
    r.close()


def test_authenticate_cancel_and_malformed(gateway, user):
    r = Raw(gateway)
    r.line()
    r.send("a AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send("*\r\n")
    assert r.until_tagged("a") == ["a BAD Authentication cancelled"]
    r.send("b AUTHENTICATE PLAIN =\r\n")
    assert r.until_tagged("b")[-1].startswith("b BAD ")
    r.send("c AUTHENTICATE PLAIN !!!!\r\n")
    assert r.until_tagged("c")[-1].startswith("c BAD ")
    r.send("d AUTHENTICATE CRAM-MD5\r\n")
    assert r.until_tagged("d")[-1].startswith("d NO ")
    r.send("e AUTHENTICATE PLAIN %s\r\n" % plain_ir(USER, PASSWORD, authzid="someone@example.org"))
    assert r.until_tagged("e")[-1].startswith("e NO [AUTHORIZATIONFAILED]")
    # the session is still usable
    r.send("f AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send(plain_ir(USER, PASSWORD) + "\r\n")
    assert r.until_tagged("f")[-1].startswith("f OK [CAPABILITY")
    r.close()


def test_wrong_password_and_unknown_user_look_the_same(gateway, user):
    answers = []
    for who, pw in ((USER, "wrong password!"), ("nobody.here@example.org", PASSWORD), ("no_domain", "x")):
        c = tls(gateway)
        t0 = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error) as e:
            c.login(who, pw)
        answers.append((str(e.value), time.monotonic() - t0))
        c.logout()
    texts = {a for a, _ in answers}
    assert texts == {"b'[AUTHENTICATIONFAILED] Authentication failed.'"} or \
        texts == {"[AUTHENTICATIONFAILED] Authentication failed."}, answers
    for _, took in answers:
        assert took >= 0.9, answers  # the vault's delay, and the same for unknown users


def test_parallel_logins_use_the_key_cache(gateway, user):
    c = tls(gateway)
    c.login(USER, PASSWORD)  # the first login may run Argon2id
    results = []

    def one():
        t = tls(gateway)
        results.append(t.login(USER, PASSWORD)[0])
        t.logout()

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    c.logout()
    assert results == ["OK"] * 5
    assert took < 2.0, took


def test_logout_says_bye_with_text(gateway):
    r = Raw(gateway)
    r.line()
    r.send("a LOGOUT\r\n")
    assert r.until_tagged("a") == ["* BYE Logging out", "a OK Logout completed"]
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        r.line()


def test_logout_is_logged_with_duration_and_bytes(gateway, user):
    """issue 16, item 3: every "logged in" line has its "logged out" counterpart, with how long
    the session lasted and the bytes it moved (the protocol's, inside TLS)."""
    r = Raw(gateway)
    me = "%s:%d: " % r.sock.getsockname()[:2]  # the log names the client's address and port
    r.line()
    sent = "a LOGIN %s \"%s\"\r\nb NOOP\r\nc LOGOUT\r\n" % (USER, PASSWORD)
    r.send(sent)
    got = r.until_tagged("c")
    assert got[-1] == "c OK Logout completed", got
    r.close()
    pat = re.escape(me) + r".* logged out \(IMAP\) after (\d+\.\d) s: (\d+) bytes in, (\d+) out"
    deadline = time.monotonic() + 10
    while not re.search(pat, gateway.log_text()):
        assert time.monotonic() < deadline, gateway.log_text()[-2000:]
        time.sleep(0.1)
    line = [ln for ln in gateway.log_text().splitlines() if re.search(pat, ln)][-1]
    assert CANON in line and PASSWORD not in line, line
    m = re.search(pat, line)
    assert int(m.group(2)) == len(sent), line  # every byte the client sent, the password's too
    assert int(m.group(3)) > len("* BYE Logging out\r\nc OK Logout completed\r\n"), line


def test_bytes_pipelined_after_starttls_are_discarded(gateway):
    r = Raw(gateway, implicit_tls=False)
    r.line()
    r.send("a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line() == "a OK Begin TLS negotiation now"
    assert r.buf == b""
    r.starttls()
    r.send("c NOOP\r\n")
    assert r.until_tagged("c") == ["c OK NOOP completed"]  # no answer to b, before or after
    r.send("d CAPABILITY\r\n")
    assert r.until_tagged("d") == ["* CAPABILITY %s AUTH=PLAIN %s" % (" ".join(BASE_CAPS), LIMIT[0]), "d OK Capability completed"]
    r.close()
    assert "dropped 14 bytes sent after STARTTLS" in gateway.log_text()


def test_commands_and_states(gateway, user):
    r = Raw(gateway)
    r.line()
    r.send("a FROB\r\nb SELECT INBOX\r\nc NAMESPACE\r\nd STARTTLS\r\ne NOOP\r\n")
    assert r.until_tagged("a") == ["a BAD Unknown command"]
    assert r.until_tagged("b") == ["b BAD Log in first"]
    assert r.until_tagged("c") == ["c BAD Log in first"]
    assert r.until_tagged("d") == ["d BAD TLS is already active"]
    assert r.until_tagged("e") == ["e OK NOOP completed"]
    r.send("f LOGIN %s {%d}\r\n" % (USER, len(PASSWORD)))
    assert r.line().startswith("+ ")
    r.send(PASSWORD + "\r\n")
    assert r.until_tagged("f")[-1].startswith("f OK [CAPABILITY")
    r.send("g LOGIN x y\r\nh FETCH 1 FLAGS\r\ni UID FETCH 1 FLAGS\r\nj SELECT Nowhere\r\nk UID FROB\r\n")
    assert r.until_tagged("g") == ["g BAD Already logged in"]
    assert r.until_tagged("h") == ["h BAD No mailbox selected"]
    assert r.until_tagged("i") == ["i BAD No mailbox selected"]
    assert r.until_tagged("j") == ["j NO [NONEXISTENT] No such mailbox"]
    assert r.until_tagged("k") == ["k BAD Unknown command"]
    r.send('l LIST "" "*"\r\nm LIST "" ""\r\nn LSUB "" "%"\r\no LIST "" inbox\r\np LIST "" "T*"\r\n')
    assert r.until_tagged("l") == ['* LIST (\\HasNoChildren) "/" INBOX', '* LIST (\\HasNoChildren \\Sent) "/" Sent',
                                   '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
                                   '* LIST (\\HasNoChildren \\Trash) "/" Trash',
                                   '* LIST (\\HasNoChildren \\Junk) "/" Junk',
                                   '* LIST (\\HasNoChildren \\Archive) "/" Archive',
                                   "l OK LIST completed"]
    assert r.until_tagged("m") == ['* LIST (\\Noselect) "/" ""', "m OK LIST completed"]
    assert len(r.until_tagged("n")) == 7
    assert r.until_tagged("o") == ['* LIST (\\HasNoChildren) "/" INBOX', "o OK LIST completed"]
    assert r.until_tagged("p") == ['* LIST (\\HasNoChildren \\Trash) "/" Trash', "p OK LIST completed"]
    r.close()


def test_list_extended_and_list_status(gateway, user):
    """RFC 5258 selection and return options, several patterns, RFC 5819 STATUS in LIST."""
    r = Raw(gateway)
    r.line()
    r.send("a LOGIN %s \"%s\"\r\n" % (USER, PASSWORD))
    assert r.until_tagged("a")[-1].startswith("a OK")
    r.send("b CREATE Lists/Work\r\nc SUBSCRIBE Lists/Work\r\nd UNSUBSCRIBE Junk\r\n")
    for t in "bcd":
        assert r.until_tagged(t)[-1] == "%s OK %s completed" % (t, {"b": "CREATE", "c": "SUBSCRIBE",
                                                                    "d": "UNSUBSCRIBE"}[t])
    r.send('e LIST (SUBSCRIBED) "" "*"\r\n')
    got = r.until_tagged("e")
    assert '* LIST (\\HasNoChildren \\Subscribed) "/" Lists/Work' in got, got
    assert not any("Junk" in line for line in got) and not any('"/" Lists\r' in line for line in got), got
    assert '* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash' in got, got
    r.send('f LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"\r\n')
    got = r.until_tagged("f")
    assert '* LIST (\\HasChildren) "/" Lists ("CHILDINFO" ("SUBSCRIBED"))' in got, got
    r.send('g LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)\r\n')
    got = r.until_tagged("g")
    assert len(got) == 6 and '* LIST (\\HasNoChildren \\Junk) "/" Junk' in got, got
    r.send('h LIST "" ("INBOX" "Lists/*") RETURN (CHILDREN STATUS (MESSAGES UIDVALIDITY))\r\n')
    got = r.until_tagged("h")
    assert got[0] == '* LIST (\\HasNoChildren) "/" INBOX' and got[1].startswith("* STATUS INBOX (MESSAGES "), got
    assert got[2] == '* LIST (\\HasNoChildren) "/" Lists/Work', got
    assert re.match(r"\* STATUS Lists/Work \(MESSAGES 0 UIDVALIDITY \d+\)$", got[3]) and got[4] == "h OK LIST completed", got
    r.send('i LIST (RECURSIVEMATCH) "" "*"\r\nj LIST "" "*" RETURN (FROB)\r\nk LIST "" "*" RETURN (STATUS (FROB))\r\n')
    assert r.until_tagged("i")[-1].startswith("i BAD")
    assert r.until_tagged("j")[-1].startswith("j BAD")
    assert r.until_tagged("k")[-1].startswith("k BAD")
    r.send("l DELETE Lists/Work\r\nm DELETE Lists\r\nn SUBSCRIBE Junk\r\n")
    for t in "lmn":
        assert " OK " in r.until_tagged(t)[-1]
    r.close()


def test_curl_lists_over_imaps(gateway, user):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(gateway.cert),
                        "imaps://%s:%d/" % (gateway.addr, gateway.imaps_port), "-u", "%s:%s" % (USER, PASSWORD)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '* LIST (\\HasNoChildren) "/" INBOX' in r.stdout and "\\Sent" in r.stdout, r.stdout


def test_processes_drop_privileges(gateway):
    kids = gateway.children()
    assert len(kids) == 2, kids
    users = {subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
             for pid in kids}
    if os.geteuid() == 0:
        assert users == {"nobody", "daemon"}, users
        assert subprocess.run(["ps", "-o", "user=", "-p", str(gateway.proc.pid)], capture_output=True,
                              text=True).stdout.strip() == "root"
    # confined too (issue 14, item 12): no_new_privs and a seccomp filter in both
    for pid in kids:
        status = open("/proc/%d/status" % pid).read()
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp:\s+2$", status, re.M), status
    log = gateway.log_text()
    assert "vault process ready" in log and "network process ready" in log
    assert PASSWORD not in log


def test_children_see_only_their_own_files(gateway, postern_env):
    """Each child has its own file system view (issue 14, item 12): the network process sees
    state_dir and the libraries, not the secrets in the config's directory (delivery secret,
    writer key, authority key, NNTP passwords) nor the rest of the host; the vault sees
    next to nothing. Read through /proc/PID/root, which is the child's own root."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the gateway makes the views before it drops privileges")
    kids = gateway.children()
    uid_of = {pid: int(re.search(r"^Uid:\s+(\d+)", open("/proc/%d/status" % pid).read(), re.M).group(1))
              for pid in kids}
    net = [pid for pid in kids if uid_of[pid] == pwd.getpwnam("nobody").pw_uid]
    vault = [pid for pid in kids if uid_of[pid] == pwd.getpwnam("daemon").pw_uid]
    assert len(net) == 1 and len(vault) == 1, uid_of
    secrets = [postern_env.delivery_secret, postern_env.writer_key, postern_env.authority_secret,
               postern_env.conf, gateway.conf, gateway.key]
    for path in secrets:
        assert os.path.exists(path), path  # on the host
    root = "/proc/%d/root" % net[0]
    for path in secrets:
        assert not os.path.exists(root + str(path)), "the network process sees %s" % path
    assert os.path.isdir(root + str(gateway.state_dir)) and os.path.isdir(root + "/usr/lib")
    assert not os.path.exists(root + "/root") and not os.path.exists(root + "/etc/passwd")
    vroot = "/proc/%d/root" % vault[0]
    assert not os.path.exists(vroot + str(gateway.state_dir)) and not os.path.exists(vroot + "/usr")
    assert "no private file system view" not in gateway.log_text()


def test_sighup_reloads_the_certificate(gateway):
    from conftest import make_cert
    before = tls(gateway)
    old = before.sock.getpeercert(binary_form=True)
    new_cert, new_key = make_cert(gateway.dir, gateway.addr, name="cert2")
    os.replace(new_key, gateway.key)
    os.replace(new_cert, gateway.cert)  # ssl_context() now trusts only the new one
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "certificate reloaded" not in gateway.log_text():
        assert time.monotonic() < deadline, gateway.log_text()
        time.sleep(0.05)
    after = tls(gateway)
    assert after.sock.getpeercert(binary_form=True) != old
    before.noop()  # the open session keeps working on the old certificate
    before.logout()
    after.logout()


def test_preauth_timeout_and_connection_limit(gateway):
    gw = gateway.factory.start(preauth_timeout=2, max_connections=2)
    time.sleep(0.5)  # the fixture's probe connections are gone by then
    a, b = Raw(gw), Raw(gw)
    assert a.line().startswith("* OK") and b.line().startswith("* OK")
    c = Raw(gw)
    assert c.line() == "* BYE Too many connections"
    c.close()
    t0 = time.monotonic()
    assert a.line() == "* BYE Disconnected for inactivity"
    assert 1.5 < time.monotonic() - t0 < 5
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        a.line()
    b.close()
    assert gw.stop() == 0


def test_one_address_cannot_take_every_slot(gateway):
    """Issue 14, item 9: 300 connections from one address locked everybody else out. Now an
    address holds at most max_connections_per_ip; others still get in."""
    gw = gateway.factory.start(max_connections=10, max_connections_per_ip=3)
    time.sleep(0.5)  # the fixture's probe connections are gone by then
    mine = [Raw(gw, source="127.0.0.91") for _ in range(3)]
    assert all(c.line().startswith("* OK") for c in mine)
    extra = Raw(gw, source="127.0.0.91")
    assert extra.line() == "* BYE Too many connections from your address"
    extra.close()
    other = Raw(gw, source="127.0.0.92")
    assert other.line().startswith("* OK")
    mine[0].close()  # a slot freed is a slot the address gets again
    time.sleep(0.5)
    again = Raw(gw, source="127.0.0.91")
    assert again.line().startswith("* OK")
    for c in mine[1:] + [other, again]:
        c.close()
    assert gw.stop() == 0


def test_noop_does_not_extend_the_login_deadline(gateway):
    """Before login, NOOP used to reset the timer, so a connection could hold its slot for ever.
    preauth_deadline bounds the time from connect to login whatever is sent."""
    gw = gateway.factory.start(preauth_deadline=3)
    c = Raw(gw)
    assert c.line().startswith("* OK")
    t0 = time.monotonic()
    lines = []
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError, socket.timeout)):
        for i in range(200):  # a NOOP every 0.25 s: far more often than preauth_timeout
            c.send("n%d NOOP\r\n" % i)
            lines += c.until_tagged("n%d" % i)
            time.sleep(0.25)
    took = time.monotonic() - t0
    assert any(l.startswith("* BYE") for l in lines) or took >= 2.5, lines[-3:]
    assert 2.5 <= took < 30, took
    c.close()
    assert gw.stop() == 0


def _ready_pids(gw, role, count, timeout=30):
    """pids of the first `count` '<role> process ready' lines in the log, once there are that many."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in re.findall(r"postern\[(\d+)\]: info: %s process ready" % role, gw.log_text())]
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, "no %d '%s process ready' lines:\n%s" % (count, role, gw.log_text())
        time.sleep(0.05)


def _login_works(gw):
    c = tls(gw, timeout=30)
    try:
        return c.login(USER, PASSWORD)[0] == "OK"
    finally:
        c.logout()


def test_a_dying_child_is_restarted_and_clients_are_told(gateway, user):
    """Issue 14, item 8: kill -9 of the vault or the network process used to stop the whole
    gateway. Now the parent starts both again; a session open when the vault died is told
    (BYE [UNAVAILABLE]) and the next login works."""
    gw = gateway.factory.start()
    vault = _ready_pids(gw, "vault", 1)[-1]
    _ready_pids(gw, "network", 1)
    open_session = Raw(gw)
    open_session.line()  # greeting
    open_session.send("a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(USER), USER, len(PASSWORD), PASSWORD))
    assert open_session.until_tagged("a")[-1].startswith("a OK")
    os.kill(vault, signal.SIGKILL)
    bye = open_session.line()
    assert bye.startswith("* BYE [UNAVAILABLE]"), bye
    open_session.close()
    _ready_pids(gw, "network", 2)
    _ready_pids(gw, "vault", 2)
    assert _login_works(gw)
    assert "the vault process (pid %d) was killed by signal 9" % vault in gw.log_text()

    net = _ready_pids(gw, "network", 2)[-1]
    os.kill(net, signal.SIGKILL)
    _ready_pids(gw, "network", 3)
    assert _login_works(gw)
    assert gw.proc.poll() is None, gw.log_text()
    assert "the network process (pid %d) was killed by signal 9" % net in gw.log_text()
    assert gw.log_text().count("restarting the vault and network processes") == 2, gw.log_text()
    assert gw.stop() == 0


def test_a_child_that_keeps_dying_stops_the_gateway(gateway):
    """Three deaths in a row within 10 s of a start: restarting does not help; exit non-zero."""
    gw = gateway.factory.start()
    for n in range(1, 4):
        net = _ready_pids(gw, "network", n)[-1]
        os.kill(net, signal.SIGKILL)
    assert gw.proc.wait(timeout=60) != 0
    assert "died 3 times within 10 s of starting; giving up" in gw.log_text()


def test_check_and_clear_startup_errors(gateway):
    """serve --check, and what an administrator sees for a bad certificate or port."""
    env = dict(os.environ)
    run = lambda conf: subprocess.run([str(gateway.env.bin), "-c", str(conf), "serve", "--check"],
                                      capture_output=True, text=True, timeout=30, env=env)
    r = run(gateway.conf)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    text = gateway.conf.read_text()
    bad = gateway.dir / "bad.conf"
    bad.write_text(text.replace("tls_key = %s" % gateway.key, "tls_key = %s" % (gateway.dir / "missing.key")))
    r = run(bad)
    assert r.returncode == 78 and "missing.key: No such file or directory" in r.stderr, r.stderr
    other_key = gateway.dir / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-out", str(other_key)], check=True, capture_output=True)
    bad.write_text(text.replace("tls_key = %s" % gateway.key, "tls_key = %s" % other_key))
    r = run(bad)
    assert r.returncode == 78 and "tls_key does not match the certificate" in r.stderr, r.stderr
    bad.write_text(text + "user = no-such-user-here\n")
    if os.geteuid() == 0:
        r = run(bad)
        assert r.returncode == 78 and "no such user 'no-such-user-here'" in r.stderr, r.stderr


def test_stops_cleanly_and_logs_no_secrets(gateway):
    """Last: SIGTERM stops every process with status 0; no sanitizer report, no password."""
    assert gateway.stop() == 0, gateway.log_text()
    for gw in gateway.factory.made:
        log = gw.log_text()
        for bad in ("Sanitizer", "runtime error:", PASSWORD):
            assert bad not in log, log


def test_sighup_reloads_what_it_can_and_names_the_rest(gateway):
    """issue 16, item 3: SIGHUP re-reads postern.conf. A connection limit applies to the next
    connection at once; a listener change is named as needing a restart and left as it is; a
    configuration that does not load changes nothing and the gateway serves on."""
    gw = gateway.factory.start(max_connections=10, max_connections_per_ip=2)
    time.sleep(0.5)
    mine = [Raw(gw, source="127.0.0.93") for _ in range(2)]
    assert all(c.line().startswith("* OK") for c in mine)
    extra = Raw(gw, source="127.0.0.93")
    assert extra.line() == "* BYE Too many connections from your address"
    extra.close()

    def sighup_and_wait(pattern):
        start = len(gw.log_text())
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not re.search(pattern, gw.log_text()[start:]):
            assert time.monotonic() < deadline, gw.log_text()[start:]
            time.sleep(0.1)
        return gw.log_text()[start:]

    text = gw.conf.read_text()
    new = re.sub(r"(?m)^max_connections_per_ip = 2$", "max_connections_per_ip = 4", text)
    assert new != text
    port = re.search(r"(?m)^imaps = (.*):(\d+)$", new)
    new = new.replace(port.group(0), "imaps = %s:%d" % (port.group(1), int(port.group(2)) + 1))
    gw.conf.write_text(new)
    log = sighup_and_wait(r"settings reloaded")
    assert "configuration reloaded: max_connections_per_ip 2 -> 4" in log, log
    assert re.search(r"not applied until postern serve restarts: gateway imaps", log), log
    more = [Raw(gw, source="127.0.0.93") for _ in range(2)]  # the old listener, the new limit
    assert all(c.line().startswith("* OK") for c in more)

    gw.conf.write_text(new + "\n[gateway]\nmax_connections = lots\n")
    log = sighup_and_wait(r"the configuration stays as it was")
    assert "max_connections" in log, log
    probe = Raw(gw, source="127.0.0.94")
    assert probe.line().startswith("* OK")
    for c in mine + more + [probe]:
        c.close()
    gw.conf.write_text(text)
    assert gw.stop() == 0
