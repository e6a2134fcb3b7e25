"""postern lmtp against a real INN site, driven with Python's smtplib.LMTP over a Unix socket
and over --stdio: per-recipient replies, byte-identical read-back, dot-stuffing, limits,
pipelining, a news server outage, idempotence and many messages over one connection.

What is stored: exactly the bytes DATA carried after dot-unstuffing, CRLF line ends included
(the CRLF before the final "." belongs to the message). `postern deliver` given those same bytes
derives the same Message-ID, so both paths store one article."""
import os
import re
import secrets
import signal
import smtplib
import socket
import stat
import subprocess
import threading
import time

import pytest

ALICE = "alice.lmtp@example.org"
BOB = "Bob.LMTP@Example.ORG"
BOB_CANON = "bob.lmtp@example.org"
CAROL = "carol.lmtp@example.org"
PASSWORD = "lmtp test password"
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>)")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def message(subject, body="hello\r\n"):
    """A CRLF message, as LMTP carries it."""
    return ("From: Sender <sender@example.net>\r\nTo: someone@example.org\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n%s" % (
                subject, secrets.token_hex(8), body)).encode()


def show(env, address, msgid):
    r = env(["mailbox", address, "--password-stdin", "--show", msgid], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    return r.stdout


def group_count(site, address):
    local, domain = address.lower().split("@")
    group = "postern." + ".".join(reversed(domain.split("."))) + "." + local.replace(".", "_2e")
    c = site.client()
    try:
        return c.group(group)[0]
    finally:
        c.quit()


class Server:
    """postern lmtp --listen unix:PATH in the background. Its stderr is read by a thread as it
    comes (lmtp logs every failed delivery there, and a pipe nobody reads stops it after
    64 KB); the lines are in self.lines, all of them in self.stderr after stop()."""

    def __init__(self, env, path, conf=None, extra=()):
        self.path = str(path)
        conf = conf or env.conf
        self.proc = subprocess.Popen([str(env.bin), "-c", str(conf), "lmtp", "--listen", "unix:" + self.path,
                                      *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = []
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        deadline = time.time() + 10
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.time() > deadline:
                self.drain.join(timeout=5)
                raise AssertionError("postern lmtp did not start: %s" % "".join(self.lines))
            time.sleep(0.02)

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))

    def connect(self):
        c = smtplib.LMTP(self.path, timeout=120)
        code, _ = c.ehlo("test.example")
        assert code == 250
        return c

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.drain.join(timeout=10)
        self.stderr = "".join(self.lines)
        return rc


def transaction(c, rcpts, raw, mail_from="sender@example.net"):
    """MAIL, RCPTs, DATA with raw already dot-stuffed and CRLF-terminated; returns the RCPT
    replies and one DATA reply per accepted recipient."""
    code, msg = c.mail(mail_from)
    assert code == 250, msg
    rcpt_replies = [c.rcpt(r) for r in rcpts]
    accepted = [r for r, (code, _) in zip(rcpts, rcpt_replies) if code == 250]
    if not accepted:
        return rcpt_replies, []
    c.putcmd("data")
    code, msg = c.getreply()
    assert code == 354, msg
    c.send(raw + b".\r\n")
    return rcpt_replies, [c.getreply() for _ in accepted]


def stuff(data):
    """RFC 5321 dot-stuffing of a CRLF message that ends with CRLF."""
    assert data.endswith(b"\r\n")
    return re.sub(rb"(?m)^\.", b"..", data)


def msgid_of(reply):
    return DELIVERED.search(reply[1].decode()).group(1)


@pytest.fixture(scope="module")
def users(postern_env):
    for a in (ALICE, BOB, CAROL):
        r = postern_env(["user", "add", a, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 0, out(r)


@pytest.fixture(scope="module")
def server(postern_env, users, tmp_path_factory):
    s = Server(postern_env, tmp_path_factory.mktemp("lmtp") / "lmtp.sock")
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0, s.stderr


def test_socket_is_0660(server):
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


def test_lhlo_advertises_extensions(server, postern_env):
    c = server.connect()
    try:
        for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "size"):
            assert c.has_extn(ext), ext
        assert c.esmtp_features["size"] == str(100 << 20)
        assert c.noop()[0] == 250
        assert c.verify(ALICE)[0] == 252
        assert c.rset()[0] == 250
        assert c.docmd("HELO x")[0] == 500
        assert c.docmd("BOGUS")[0] == 500
        assert c.docmd("RCPT TO:<%s>" % ALICE)[0] == 503       # no MAIL yet
        assert c.docmd("DATA")[0] == 503
    finally:
        c.quit()


def test_single_recipient_read_back_identical(server, postern_env):
    data = message("single", "line one\r\nline two\r\n")
    c = server.connect()
    try:
        rcpt, replies = transaction(c, [ALICE], stuff(data))
    finally:
        c.quit()
    assert rcpt[0][0] == 250
    assert len(replies) == 1 and replies[0][0] == 250, replies
    assert replies[0][1].startswith(b"2.0.0 ")
    assert show(postern_env, ALICE, msgid_of(replies[0])) == data


def test_smtplib_sendmail(server, postern_env):
    """smtplib's own sendmail (LF in, CRLF on the wire, one recipient)."""
    c = server.connect()
    try:
        refused = c.sendmail("x@example.net", [ALICE], b"From: x@example.net\nSubject: via sendmail\n\nbody\n")
    finally:
        c.quit()
    assert refused == {}


def test_smtputf8_mail_is_accepted(server, postern_env):
    """Postfix bounces mail with UTF-8 addresses or headers (5.6.7) to a server that does not
    offer SMTPUTF8; postern stores it like any other bytes."""
    data = "From: Jürgen <jürgen@example.net>\r\nSubject: Grüße\r\n\r\nü\r\n".encode()
    c = server.connect()
    try:
        c.command_encoding = "utf-8"  # what smtplib itself does for SMTPUTF8
        code, msg = c.docmd("MAIL FROM:<jürgen@example.net> BODY=8BITMIME SMTPUTF8")
        assert code == 250, msg
        assert c.rcpt(ALICE)[0] == 250
        c.putcmd("data")
        assert c.getreply()[0] == 354
        c.send(stuff(data) + b".\r\n")
        reply = c.getreply()
    finally:
        c.quit()
    assert reply[0] == 250, reply
    assert show(postern_env, ALICE, msgid_of(reply)) == data


def test_multi_recipient_unknown_in_the_middle(server, postern_env):
    data = message("three recipients", "for alice and bob\r\n")
    c = server.connect()
    try:
        rcpt, replies = transaction(c, [ALICE, "nobody.lmtp@example.org", BOB, '"bad address'], stuff(data))
    finally:
        c.quit()
    assert rcpt[0][0] == 250
    assert rcpt[1][0] == 550 and rcpt[1][1].startswith(b"5.1.1"), rcpt[1]
    assert rcpt[2][0] == 250
    assert rcpt[3][0] in (501, 550), rcpt[3]
    # one reply per accepted recipient, in RCPT order
    assert [code for code, _ in replies] == [250, 250], replies
    assert b"<%s>" % ALICE.encode() in replies[0][1]
    assert b"<%s>" % BOB.encode() in replies[1][1]
    ids = [msgid_of(r) for r in replies]
    assert ids[0] != ids[1]        # sealed separately, one article per recipient
    assert show(postern_env, ALICE, ids[0]) == data
    assert show(postern_env, BOB_CANON, ids[1]) == data


def test_dot_stuffed_lines(server, postern_env):
    body = b".\r\n..\r\n.hidden\r\n...three\r\nmiddle . dot\r\n.\r\nend\r\n"
    data = message("dots").replace(b"hello\r\n", body)
    raw = stuff(data)
    assert b"\r\n..hidden\r\n" in raw and b"\r\n..\r\n" in raw
    c = server.connect()
    try:
        _, replies = transaction(c, [ALICE], raw)
    finally:
        c.quit()
    assert replies[0][0] == 250, replies
    assert show(postern_env, ALICE, msgid_of(replies[0])) == data


def test_same_message_id_as_deliver(server, postern_env, inn_site):
    """The stored bytes are DATA after unstuffing; `deliver` of those bytes is the same article."""
    data = message("lmtp then deliver")
    before = group_count(inn_site, CAROL)
    c = server.connect()
    try:
        _, replies = transaction(c, [CAROL], stuff(data))
    finally:
        c.quit()
    assert replies[0][0] == 250, replies
    r = postern_env(["deliver", "--verbose", "--to", CAROL], input=data)
    assert r.returncode == 0, out(r)
    assert DELIVERED.search(out(r)).group(1) == msgid_of(replies[0])
    assert group_count(inn_site, CAROL) == before + 1


def test_idempotent(server, postern_env, inn_site):
    data = message("twice")
    before = group_count(inn_site, ALICE)
    ids = set()
    c = server.connect()
    try:
        for _ in range(2):
            _, replies = transaction(c, [ALICE], stuff(data))
            assert replies[0][0] == 250, replies
            ids.add(msgid_of(replies[0]))
    finally:
        c.quit()
    assert len(ids) == 1
    assert group_count(inn_site, ALICE) == before + 1


def test_any_message_is_stored_as_sent(server, postern_env):
    """What the MTA accepted is kept, byte for byte: no header (once 554 5.6.0), bare LF and CR,
    NUL, 8-bit, a 2 MiB line (once 554 "a line longer than 1 MiB"), and a first line starting
    with "From " (an LMTP message has no mbox envelope line to drop)."""
    shapes = [b"this is not a header\r\n\r\nbody\r\n",
              b"From the desk of nobody\r\nno header\r\n",
              b"Sub\x00ject: nul\nbare LF\nbare\rCR\r\n\xff\xfe 8-bit\r\n",
              b"X-Long: " + b"h" * (2 << 20) + b"\r\n\r\nbody\r\n"]
    c = server.connect()
    try:
        for data in shapes:
            _, replies = transaction(c, [ALICE], stuff(data))
            assert [code for code, _ in replies] == [250], (data[:40], replies)
            assert show(postern_env, ALICE, msgid_of(replies[0])) == data
    finally:
        c.quit()


@pytest.fixture(scope="module")
def small_server(postern_env, users, tmp_path_factory):
    d = tmp_path_factory.mktemp("lmtp-small")
    conf = d / "postern.conf"
    text = postern_env.conf.read_text().replace("min_copies = 1\n", "min_copies = 1\nmax_message_size = 4096\n", 1)
    conf.write_text(text)
    conf.chmod(0o600)
    s = Server(postern_env, d / "lmtp.sock", conf=conf)
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0, s.stderr


def test_oversized_message_552(small_server):
    c = small_server.connect()
    try:
        assert c.esmtp_features["size"] == "4096"
        code, msg = c.docmd("MAIL FROM:<x@example.net> SIZE=5000")
        assert code == 552 and msg.startswith(b"5.3.4"), msg
        assert c.docmd("MAIL FROM:<x@example.net> FROB=1")[0] == 555
        # no SIZE given: the limit is found while reading DATA, after which the session goes on
        big = message("too big", "x" * 70 + "\r\n") + b"y" * 70 * 100 + b"\r\n"
        _, replies = transaction(c, [ALICE, BOB], stuff(big))
        assert [code for code, _ in replies] == [552, 552], replies
        assert all(msg.startswith(b"5.3.4") for _, msg in replies)
        _, replies = transaction(c, [ALICE], stuff(message("small enough")))
        assert replies[0][0] == 250, replies
    finally:
        c.quit()


def test_pipelining(server, postern_env):
    """Everything up to DATA in one write, the message and QUIT in another: replies in order."""
    data = message("pipelined")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(server.path)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    s.sendall(("LHLO x\r\nMAIL FROM:<p@example.net>\r\nRCPT TO:<%s>\r\nRCPT TO:<nobody.lmtp@example.org>\r\n"
               "RCPT TO:<%s>\r\nDATA\r\n" % (ALICE, BOB)).encode())
    lines = []
    while not lines or not lines[-1].startswith(b"354"):
        lines.append(f.readline())
    codes = [l[:4] for l in lines]
    assert codes == [b"250-"] * 5 + [b"250 ", b"250 ", b"250 ", b"550 ", b"250 ", b"354 "], lines
    s.sendall(stuff(data) + b".\r\nNOOP\r\nQUIT\r\n")
    finals = [f.readline() for _ in range(4)]
    assert [l[:4] for l in finals] == [b"250 ", b"250 ", b"250 ", b"221 "], finals
    s.close()
    m = DELIVERED.search(finals[1].decode())
    assert show(postern_env, BOB_CANON, m.group(1)) == data


def test_fifty_messages_over_one_connection(server, postern_env, inn_site):
    before = group_count(inn_site, BOB)
    c = server.connect()
    t0 = time.perf_counter()
    try:
        for i in range(50):
            _, replies = transaction(c, [BOB], stuff(message("bulk %d" % i, "body %d\r\n" % i)))
            assert replies[0][0] == 250, (i, replies)
    finally:
        c.quit()
    elapsed = time.perf_counter() - t0
    assert group_count(inn_site, BOB) == before + 50
    print("50 messages over one LMTP connection: %.2f s" % elapsed)


def test_stdio(postern_env, users):
    data = message("over stdio")
    script = ("LHLO x\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE).encode() + \
        stuff(data) + b".\r\nQUIT\r\n"
    r = postern_env(["lmtp", "--stdio"], input=script)
    assert r.returncode == 0, out(r)
    lines = r.stdout.split(b"\r\n")
    assert lines[0].startswith(b"220 ")
    assert [l[:4] for l in lines[1:]] == [b"250-"] * 5 + [b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"221 ", b""], lines
    assert show(postern_env, ALICE, DELIVERED.search(lines[-3].decode()).group(1)) == data


def test_news_server_down_then_retry(server, postern_env, inn_site):
    data = message("while the news server was down")
    # a session that already holds the key record and an NNTP connection when INN goes away
    warm = server.connect()
    try:
        _, replies = transaction(warm, [ALICE], stuff(message("warm-up")))
        assert replies[0][0] == 250, replies
        inn_site.stop()
        try:
            # a new session must look the recipient up: 451 at RCPT
            cold = server.connect()
            try:
                rcpt, replies = transaction(cold, [BOB], stuff(data))
                assert rcpt[0][0] == 451 and rcpt[0][1].startswith(b"4.4.1"), rcpt
                assert replies == []
            finally:
                cold.quit()
            # the warm session has the record cached: 451 at DATA
            _, replies = transaction(warm, [ALICE], stuff(data))
            assert replies[0][0] == 451 and replies[0][1].startswith(b"4.4.1"), replies
        finally:
            inn_site.start()
        # the same session retries: the dead NNTP connection is replaced transparently
        _, replies = transaction(warm, [ALICE], stuff(data))
        assert replies[0][0] == 250, replies
    finally:
        warm.quit()
    assert show(postern_env, ALICE, msgid_of(replies[0])) == data


def test_sigterm_finishes_and_exits(postern_env, users, tmp_path):
    s = Server(postern_env, tmp_path / "lmtp.sock")
    c = s.connect()
    c.mail("x@example.net")
    assert c.rcpt(ALICE)[0] == 250
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    # the open transaction still completes, then the idle session is told 421
    c.putcmd("data")
    assert c.getreply()[0] == 354
    c.send(stuff(message("during shutdown")) + b".\r\n")
    assert c.getreply()[0] == 250
    assert c.getreply()[0] == 421
    rc = s.proc.wait(timeout=30)
    s.drain.join(timeout=10)
    assert rc == 0, "".join(s.lines)
    assert not os.path.exists(s.path)
