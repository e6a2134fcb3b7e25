"""`postern who` and `postern kick` against a running `postern serve` (issue 16, item 4): they
list the IMAP and POP3 sessions with user, protocol, TLS and client address, and end a user's
sessions (IMAP gets `* BYE`, POP3 `-ERR`); GET /metrics counts the same sessions and
GET /health says whether the first news site is read."""
import imaplib
import os
import poplib
import re
import socket
import stat
import subprocess
import time

import pytest

from conftest import _free_port

USER, PASSWORD = "who.one@example.org", "who password 123"
OTHER, OTHER_PW = "who.two@example.org", "who password 456"


@pytest.fixture(scope="module")
def gw(postern_env, inn_site, tmp_path_factory):
    from conftest import _GatewayFactory
    for user, pw in ((USER, PASSWORD), (OTHER, OTHER_PW)):
        r = postern_env(["user", "add", user, "--password-stdin"], input=pw + "\n")
        assert r.returncode == 0, r.stderr
        r = postern_env(["deliver", "--to", user], input=b"Subject: who\r\n\r\nbody\r\n")
        assert r.returncode == 0, r.stderr
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    addr = inn_site.addr
    g = factory.start(pop3s="%s:%d" % (addr, _free_port(addr)),
                      conf_extra="[metrics]\nlisten = %s:%d" % (addr, _free_port(addr)))
    g.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", g.conf.read_text(), re.M).group(1))
    g.metrics_port = int(re.search(r"^listen = .*:(\d+)$", g.conf.read_text(), re.M).group(1))
    g.factory = factory
    wait_control(g)
    yield g
    factory.close()


def wait_control(g, seconds=20):
    """The ports listen from the parent on; the control socket comes with the network process."""
    deadline = time.monotonic() + seconds
    while not (g.state_dir / "control").exists():
        assert time.monotonic() < deadline, g.log_text()
        time.sleep(0.05)


def postern(g, *args):
    return subprocess.run([str(g.env.bin), "-c", str(g.conf), *args], capture_output=True, text=True, timeout=60)


def rows(out):
    """`postern who`'s table as dicts."""
    lines = out.splitlines()
    assert lines and lines[0].split()[:3] == ["ID", "USER", "PROTO"], out
    result = []
    for line in lines[1:]:
        f = line.split()
        result.append({"id": f[0], "user": f[1], "proto": f[2], "tls": f[3], "client": f[4], "state": f[-1]})
    return result


def drain(read):
    """What a connection still says until it closes."""
    data = b""
    try:
        while True:
            chunk = read()
            if not chunk:
                return data
            data += chunk
    except OSError:
        return data


def imaps(g, user, pw):
    c = imaplib.IMAP4_SSL(g.addr, g.imaps_port, ssl_context=g.ssl_context(), timeout=30)
    c.login(user, pw)
    return c


def test_control_socket_is_private(gw):
    st = os.lstat(gw.state_dir / "control")
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)


def test_who_lists_and_kick_ends_sessions(gw):
    r = postern(gw, "who")
    assert r.returncode == 1 and "no sessions" in r.stdout, (r.returncode, r.stdout, r.stderr)

    c = imaps(gw, USER, PASSWORD)
    c.select("INBOX")
    plain = imaplib.IMAP4(gw.addr, gw.imap_port, timeout=30)
    plain.starttls(ssl_context=gw.ssl_context())
    plain.login(USER, PASSWORD)
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=30)
    p.user(USER)
    p.pass_(PASSWORD)
    other = imaps(gw, OTHER, OTHER_PW)
    anon = socket.create_connection((gw.addr, gw.imap_port), timeout=30)
    anon.recv(1000)  # the greeting: counted and listed, not logged in

    r = postern(gw, "who")
    assert r.returncode == 0, (r.stdout, r.stderr)
    got = rows(r.stdout)
    mine = sorted((x["proto"], x["tls"], x["state"]) for x in got if x["user"] == USER)
    assert mine == [("IMAP", "starttls", "authenticated"), ("IMAP", "tls", "selected"),
                    ("POP3", "tls", "authenticated")], r.stdout
    assert [x["user"] for x in got].count(OTHER) == 1, r.stdout
    assert [x for x in got if x["user"] == "-" and x["state"] == "not-authenticated"], r.stdout
    assert any(x["client"] == "%s:%d" % c.sock.getsockname()[:2] for x in got), r.stdout
    assert [int(x["id"]) for x in got] == sorted(int(x["id"]) for x in got), r.stdout  # oldest first

    r = postern(gw, "who", OTHER.upper())
    assert r.returncode == 0 and [x["user"] for x in rows(r.stdout)] == [OTHER], r.stdout

    r = postern(gw, "kick", USER)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "ended 3 sessions of %s" % USER in r.stdout, r.stdout
    # IMAP: an untagged BYE, then the connection closes (TLS and STARTTLS alike)
    for conn in (c, plain):
        said = drain(conn.readline)
        assert said.startswith(b"* BYE") and b"administrator" in said, said
    # POP3: the -ERR is waiting on the socket, then EOF
    p.sock.settimeout(10)
    data = drain(lambda: p.sock.recv(4096))
    assert data.startswith(b"-ERR") and b"administrator" in data, data

    r = postern(gw, "who", USER)
    assert r.returncode == 1 and "no session of %s" % USER in r.stdout, r.stdout
    assert other.noop()[0] == "OK"  # another user's session is left alone
    r = postern(gw, "kick", USER)
    assert r.returncode == 1 and "ended 0 sessions" in r.stdout, r.stdout

    # by id: the one not logged in
    anon_id = [x["id"] for x in rows(postern(gw, "who").stdout) if x["user"] == "-"][0]
    r = postern(gw, "kick", "--id", anon_id)
    assert r.returncode == 0 and "ended session %s" % anon_id in r.stdout, r.stdout
    anon.settimeout(10)
    assert b"* BYE" in anon.recv(1000)
    other.logout()
    assert "ended by the administrator" in gw.log_text()


def test_bad_requests(gw):
    r = postern(gw, "kick", "not an address")
    assert r.returncode == 64, (r.stdout, r.stderr)
    r = postern(gw, "kick", "--id", "x")
    assert r.returncode == 64
    # the socket itself: one line, bounded, unknown words refused
    for req, want in ((b"HELLO\n", b"ERR unknown request"), (b"WHO me\n", b"ERR WHO takes no argument"),
                      (b"KICK #0\n", b"ERR KICK #id"), (b"x" * 600, b"ERR request too long")):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(gw.state_dir / "control"))
        s.sendall(req)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        assert got.startswith(want), (req[:20], got)
    # a user other than root and the gateway's is turned away without an answer
    if os.geteuid() == 0:
        r = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", "/usr/bin/python3", "-c",
                            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                            str(gw.state_dir / "control")], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r.stderr


def test_not_running(postern_env, tmp_path):
    r = postern_env(["who"])
    assert r.returncode == 2 and b"not running" in r.stderr, (r.returncode, r.stderr)
    r = postern_env(["kick", USER])
    assert r.returncode == 2 and b"not running" in r.stderr


def curl(g, path, *args, port=None):
    """(HTTP status, body) of http://gateway/path."""
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args,
                        "http://%s:%d%s" % (g.addr, port or g.metrics_port, path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from Prometheus's text format; checks every line."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) postern_[a-z_]+ .+$", line), line
            continue
        m = re.match(r'^(postern_[a-z_]+)(?:\{(.*)\})? (-?[0-9]+(?:\.[0-9]+)?)$', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(ms, name, **labels):
    return ms[(name, frozenset(labels.items()))]


def test_metrics_count_sessions_and_logins(gw):
    bad = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        bad.login(USER, "not the password")
    bad.logout()
    c = imaps(gw, USER, PASSWORD)
    c.select("INBOX")
    assert c.fetch("1", "(BODY[])")[0] == "OK"
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=30)
    p.user(OTHER)
    p.pass_(OTHER_PW)
    # the sessions of the earlier tests are closed by now (a closing one may take a moment)
    deadline = time.monotonic() + 10
    while True:
        code, text = curl(gw, "/metrics")
        assert code == 200, text
        ms = parse_metrics(text)
        listed = rows(postern(gw, "who").stdout)
        if metric(ms, "postern_sessions", protocol="imap") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metric(ms, "postern_sessions", protocol="imap") == 1 == sum(x["proto"] == "IMAP" for x in listed)
    assert metric(ms, "postern_sessions", protocol="pop3") == 1 == sum(x["proto"] == "POP3" for x in listed)
    assert metric(ms, "postern_sessions_authenticated", protocol="imap") == 1
    assert metric(ms, "postern_logins_total", protocol="imap", result="failed") >= 1
    assert metric(ms, "postern_logins_total", protocol="imap", result="ok") >= 3
    assert metric(ms, "postern_logins_total", protocol="pop3", result="ok") >= 2
    assert metric(ms, "postern_sessions_kicked_total") == 4  # test_who_lists_and_kick_ends_sessions
    assert metric(ms, "postern_messages_decrypted_total") >= 1
    assert metric(ms, "postern_articles_read_total", source="news") + \
        metric(ms, "postern_articles_read_total", source="cache") >= 1
    assert metric(ms, "postern_accounts") == 2
    assert metric(ms, "postern_connections_total", protocol="pop3") >= 2
    c.logout()
    p.quit()


def test_health_and_http_limits(gw):
    deadline = time.monotonic() + 15
    while (got := curl(gw, "/health"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == (200, "ok\n"), got
    assert curl(gw, "/nothing")[0] == 404
    assert curl(gw, "/metrics", "-X", "POST")[0] == 501  # evhttp: only GET and HEAD
    assert curl(gw, "/metrics", "-d", "x=1")[0] == 413  # no request carries a body
    assert curl(gw, "/metrics", "-H", "X-Big: " + "a" * 10000)[0] in (400, 413, 431)
    # a gateway whose only news site does not answer: 503 and why
    from conftest import _GatewayFactory
    factory = gw.factory
    dead = factory.start_at(conf_extra="[metrics]\nlisten = %s:%d" % (gw.addr, _free_port(gw.addr)))
    dead.stop()
    conf = dead.conf.read_text()
    closed = _free_port(gw.addr)
    conf = re.sub(r"(?m)^port = \d+$", "port = %d" % closed, conf, count=1)
    dead.conf.write_text(conf)
    dead.start()
    port = int(re.search(r"^listen = .*:(\d+)$", conf, re.M).group(1))
    deadline = time.monotonic() + 20
    while (got := curl(dead, "/health", port=port))[0] != 503 or "DOWN" not in got[1]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert got[0] == 503 and got[1].startswith("DOWN: no news server answers"), got
    ms = parse_metrics(curl(dead, "/metrics", port=port)[1])
    assert metric(ms, "postern_news_up") == 0
