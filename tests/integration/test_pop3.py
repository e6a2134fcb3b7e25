"""POP3 (STLS on the plain port, POP3S) in the same `postern serve` as IMAP, against a real INN
site: every RFC 1939 command, CAPA, AUTH PLAIN, [IN-USE], DELE+QUIT removing from the IMAP
INBOX too, UIDLs from Message-IDs, and fetchmail and curl as real clients."""
import base64
import imaplib
import os
import poplib
import re
import socket
import subprocess
import time

import pytest

from conftest import _free_port

USER = "erin.pop@example.org"
PASSWORD = "pop3 password 12"
MESSAGES = [
    b"From: a@example.net\nTo: erin.pop@example.org\nSubject: pop one\n\nfirst body\n.dot line\n",
    b"From: b@example.net\r\nSubject: pop two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
    b"From: c@example.net\nSubject: pop three\n\n" + (b"y" * 70 + b"\n") * 70,
]


@pytest.fixture(scope="module")
def pop(postern_env, inn_site, tmp_path_factory):
    from conftest import _GatewayFactory
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for m in MESSAGES:
        r = postern_env(["deliver", "--to", USER], input=m)
        assert r.returncode == 0, r.stderr
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    addr = inn_site.addr
    gw = factory.start(pop3="%s:%d" % (addr, _free_port(addr)), pop3s="%s:%d" % (addr, _free_port(addr)),
                       retention_days="30")
    conf = gw.conf.read_text()
    gw.pop3_port = int(re.search(r"^pop3 = .*:(\d+)$", conf, re.M).group(1))
    gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", conf, re.M).group(1))
    yield gw
    factory.close()


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def pop3s(gw):
    return poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=20)


def test_capa_and_plaintext_refused(pop):
    p = poplib.POP3(pop.addr, pop.pop3_port, timeout=20)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    assert caps["EXPIRE"] == ["30"] and "UIDL" in caps and "TOP" in caps and "RESP-CODES" in caps
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.user(USER)
    p.stls(context=pop.ssl_context())
    caps = p.capa()
    assert "USER" in caps and caps["SASL"] == ["PLAIN"] and "STLS" not in caps
    p.user(USER)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 3
    p.quit()


def test_every_command(pop):
    p = pop3s(pop)
    p.user(USER)
    p.pass_(PASSWORD)
    count, octets = p.stat()
    assert count == 3 and octets == sum(len(crlf(m)) for m in MESSAGES)
    resp, lines, _ = p.list()
    sizes = [int(l.split()[1]) for l in lines]
    assert sizes == [len(crlf(m)) for m in MESSAGES]
    assert p.list(2).split()[2] == str(len(crlf(MESSAGES[1]))).encode()
    resp, uidls, _ = p.uidl()
    ids = [l.split()[1] for l in uidls]
    assert len(set(ids)) == 3 and all(re.fullmatch(rb"m\.[0-9a-f]{40}", i) for i in ids), ids
    for i, m in enumerate(MESSAGES, 1):
        resp, lines, n = p.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == crlf(m)
        assert resp.startswith(b"+OK %d octets" % len(crlf(m)))
    resp, lines, _ = p.top(2, 1)
    assert lines == [b"From: b@example.net", b"Subject: pop two", b"", b"line 1"]
    assert p.noop().startswith(b"+OK")
    p.dele(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.retr(1)
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 3
    with pytest.raises(poplib.error_proto, match="no such message"):
        p.retr(9)
    # a dropped connection deletes nothing
    p.dele(3)
    p.sock.close()
    p = pop3s(pop)
    p.user(USER)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 3
    p.quit()


def test_auth_plain_in_use_and_wrong_password(pop):
    p = pop3s(pop)
    token = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
    assert p._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
    q = pop3s(pop)
    q.user(USER)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        q.pass_(PASSWORD)
    p.quit()
    r = pop3s(pop)
    r.user(USER)
    t0 = time.monotonic()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        r.pass_("wrong password!!")
    assert time.monotonic() - t0 >= 0.5
    r.quit()


def test_dele_quit_removes_from_imap_too(pop, postern_env):
    extra = b"From: d@example.net\nSubject: to be deleted\n\nbye\n"
    r = postern_env(["deliver", "--to", USER], input=extra)
    assert r.returncode == 0
    p = pop3s(pop)
    p.user(USER)
    p.pass_(PASSWORD)
    n, _ = p.stat()
    resp, lines, _ = p.top(n, 0)
    assert b"Subject: to be deleted" in lines
    p.dele(n)
    p.quit()
    c = imaplib.IMAP4_SSL(pop.addr, pop.imaps_port, ssl_context=pop.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    assert int(data[0]) == n - 1
    typ, data = c.search(None, "SUBJECT", "deleted")
    assert data == [b""]
    c.logout()


def test_curl_pop3s(pop):
    base = "pop3s://%s:%d/" % (pop.addr, pop.pop3s_port)
    args = ["curl", "-sS", "--max-time", "20", "--cacert", str(pop.cert), "-u", "%s:%s" % (USER, PASSWORD)]
    r = subprocess.run(args + [base], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.match(rb"1 \d+\r\n2 \d+\r\n", r.stdout), r.stdout
    r = subprocess.run(args + [base + "2"], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == crlf(MESSAGES[1]), (r.stdout, r.stderr)
    r = subprocess.run(args + ["-X", "UIDL", base], capture_output=True, timeout=30)
    assert r.returncode == 0 and re.search(rb"^1 m\.[0-9a-f]{40}\r$", r.stdout, re.M), r.stdout


def test_fetchmail_stls_uidl_keep(pop, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "mail"
    out.mkdir()
    rc = home / ".fetchmailrc"
    rc.write_text('poll %s protocol pop3 port %d uidl\n'
                  '  user "%s" password "%s" keep\n'
                  '  sslproto "tls1.2+" sslcertck sslcommonname "localhost" sslcertfile "%s" sslcertpath "%s"\n'
                  '  mda "/bin/sh -c \'cat > %s/msg.$$.$RANDOM\'"\n'
                  % (pop.addr, pop.pop3_port, USER, PASSWORD, pop.cert, tmp_path, out))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    cmd = ["fetchmail", "--nodetach", "--nosyslog", "-f", str(rc), "--idfile", str(home / ".fetchids")]
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    first = len(os.listdir(out))
    assert r.returncode == 0 and first >= 3, (r.stdout + r.stderr).decode(errors="replace")
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    assert r.returncode == 1, (r.stdout + r.stderr).decode(errors="replace")  # 1: no new mail
    assert len(os.listdir(out)) == first


def test_getmail6_pop3s_second_run_skips_all(pop, tmp_path):
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    gmdir = tmp_path / "getmail"
    gmdir.mkdir()
    rc = gmdir / "getmailrc"
    rc.write_text("[retriever]\ntype = SimplePOP3SSLRetriever\nserver = %s\nport = %d\nusername = %s\n"
                  "password = %s\nca_certs = %s\nssl_cert_hostname = localhost\n\n"
                  "[destination]\ntype = MDA_external\npath = /bin/sh\n"
                  "arguments = (\"-c\", \"cat > %s/new/msg.$$\")\nallow_root_commands = true\n\n"
                  "[options]\nread_all = false\ndelete = false\nverbose = 2\n"
                  % (pop.addr, pop.pop3s_port, USER, PASSWORD, pop.cert, maildir))
    cmd = ["getmail", "--getmaildir", str(gmdir), "--rcfile", str(rc)]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode(errors="replace")
    got = len(os.listdir(maildir / "new"))
    assert r.returncode == 0 and got >= 3, out
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0 and len(os.listdir(maildir / "new")) == got, out
    assert re.search(r"0 messages .*retrieved", out) or "0 messages" in out, out
