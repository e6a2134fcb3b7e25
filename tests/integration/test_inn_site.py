"""scripts/inn-site: a site starts, serves postern.* only to the postern account, keeps key
groups forever while mail expires after 30 days, stops, and runs side by side with others.
Needs INN only (no postern binary)."""
import base64
import os
import socket
import stat
import subprocess
import time

import pytest

from conftest import INN_SITE, run_inn_site, stop_all
from nntplib_min import NNTP, NNTPError, make_article

MAIL = "postern.jp.example.alice"
KEYS = MAIL + ".encrypt"


def mid(tag):
    return "<t.%s.%d.%d@postern.invalid>" % (tag, time.time_ns(), os.getpid())


def port_open(addr, port):
    try:
        socket.create_connection((addr, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def groups(inn_site):
    inn_site.newgroup(MAIL, KEYS)
    return MAIL, KEYS


def test_site_is_up(inn_site):
    assert inn_site.status()
    with inn_site.client(auth=False) as c:
        assert c.welcome.startswith("200"), c.welcome
        assert inn_site.name in c.welcome


def test_files_and_modes(inn_site):
    d = inn_site.dir
    assert stat.S_IMODE(os.stat(d / "etc/postern-nntp.secret").st_mode) == 0o600
    for f in ("etc/inn-secrets.conf", "etc/newsusers"):
        mode = stat.S_IMODE(os.stat(d / f).st_mode)
        assert mode & 0o007 == 0, "%s is world-accessible (%o)" % (f, mode)
    news_uid = int(subprocess.check_output(["id", "-u", "news"]))
    assert os.stat(d / "spool/articles").st_uid == news_uid
    assert os.stat(d / "db/history").st_uid == news_uid
    frag = inn_site.conf_fragment.read_text()
    for want in ("[site %s]" % inn_site.name, "host = %s" % inn_site.addr,
                 "port = %d" % inn_site.port, "tls = none", "user = postern",
                 "password_file = %s" % inn_site.password_file,
                 "innconf = %s" % inn_site.innconf):
        assert want in frag, frag
    conf = inn_site.innconf.read_text()
    for want in ("artcutoff:               0", "maxartsize:              268435456",
                 "localmaxartsize:         268435456", "nnrpdloadlimit:          0",
                 "addinjectionpostinghost: false", "ovmethod:                tradindexed"):
        assert want in conf


def test_authenticated_post_and_read(inn_site, groups, nntp):
    m = mid("post")
    body = base64.encodebytes(os.urandom(3000))
    assert nntp.post(make_article(MAIL, m, body)).startswith("240")
    count, low, high, name = nntp.group(MAIL)
    assert name == MAIL and count >= 1
    status, lines = nntp.article(m)
    assert status.startswith("220")
    sep = lines.index(b"")
    head, got = lines[:sep], lines[sep + 1:]
    assert b"\n".join(got) + b"\n" == body
    # no posting host in Injection-Info, and no per-user Cancel-Lock hash (admin hash only)
    hdr = b"\n".join(head).decode()
    assert "posting-host" not in hdr
    over = nntp.over("%d-%d" % (low, high))
    assert any(f[4] == m for f in over)
    assert (MAIL, high, low, "y") in nntp.list_active("postern.*") or \
        any(g[0] == MAIL for g in nntp.list_active("postern.*"))
    # a duplicate Message-ID is refused (idempotent delivery relies on this)
    r = nntp.post(make_article(MAIL, m, b"again\n"))
    assert r.startswith("441") and "435" in r, r


def test_article_with_dot_lines_roundtrips(inn_site, groups, nntp):
    m = mid("dots")
    body = b".leading dot\n..two dots\n.\nend\n"
    assert nntp.post(make_article(MAIL, m, body)).startswith("240")
    _, lines = nntp.body(m)
    assert b"\n".join(lines) + b"\n" == body


def test_large_article_accepted(inn_site, groups, nntp):
    # well above INN's 1 MB default; the full limit (~256 MiB) is documented in docs/inn-site.md
    m = mid("large")
    body = base64.encodebytes(os.urandom(8 * 1024 * 1024))
    r = nntp.post(make_article(MAIL, m, body))
    assert r.startswith("240"), r
    _, lines = nntp.body(m)
    assert len(b"".join(lines)) == len(body.replace(b"\n", b""))


def test_anonymous_gets_nothing(inn_site, groups, nntp):
    m = mid("secret")
    assert nntp.post(make_article(MAIL, m, b"for alice only\n")).startswith("240")
    with inn_site.client(auth=False) as anon:
        assert anon.cmd("GROUP " + MAIL).startswith("480")
        assert anon.cmd("GROUP " + KEYS).startswith("480")
        assert anon.cmd("ARTICLE " + m).startswith(("480", "430"))
        assert anon.cmd("STAT " + m).startswith(("480", "430"))
        assert anon.list_active("postern.*") == []
        assert anon.cmd("POST").startswith(("440", "480"))


def test_wrong_password_refused(inn_site):
    with pytest.raises(NNTPError) as e:
        NNTP(inn_site.addr, inn_site.port, inn_site.user, "not-the-password")
    assert e.value.code == 481


def test_expire_rules(inn_sites):
    site = inn_sites(name="expiry")
    ctl = (site.dir / "etc/expire.ctl").read_text().splitlines()
    rules = [l for l in ctl if l and not l.startswith("#")]
    # expire.ctl(5): "the last matching entry will be used" -> the key-group rule must follow
    assert rules == ["/remember/:60", "*:A:10:10:10", "postern.*:A:30:30:30",
                     "postern.*.encrypt:A:never:never:never"], rules
    site.newgroup(MAIL, KEYS)
    mail, key = mid("mail"), mid("key")
    with site.client() as c:
        assert c.post(make_article(MAIL, mail, b"mail\n")).startswith("240")
        assert c.post(make_article(KEYS, key, b"key\n")).startswith("240")
    site.expire(warp=29)
    with site.client() as c:
        assert c.stat(mail).startswith("223")
        assert c.stat(key).startswith("223")
    site.expire(warp=31)
    with site.client() as c:
        assert c.stat(mail).startswith("430"), "mail older than 30 days must be gone"
        assert c.stat(key).startswith("223"), "key records must never expire"
        count, low, high, _ = c.group(MAIL)
        assert count == 0
        # the Message-ID is remembered (/remember/:60): a re-offer is refused as a duplicate
        assert c.post(make_article(MAIL, mail, b"mail\n")).startswith("441")
    site.expire(warp=3650)
    with site.client() as c:
        assert c.stat(key).startswith("223"), "key records must survive 10 years"


def test_stop_start_and_kill9(inn_sites):
    site = inn_sites(name="restart")
    site.newgroup(MAIL)
    m = mid("persist")
    with site.client() as c:
        assert c.post(make_article(MAIL, m, b"persist\n")).startswith("240")
    t0 = time.monotonic()
    site.stop()
    assert time.monotonic() - t0 < 20
    assert not port_open(site.addr, site.port)
    assert not site.status()
    t0 = time.monotonic()
    site.start()
    assert time.monotonic() - t0 < 10
    with site.client() as c:
        assert c.stat(m).startswith("223")
    site.kill9()
    assert not port_open(site.addr, site.port)
    site.start()
    with site.client() as c:
        assert c.stat(m).startswith("223")
        m2 = mid("after-crash")
        assert c.post(make_article(MAIL, m2, b"after crash\n")).startswith("240")
    site.stop()
    r = run_inn_site("stop", site.dir)  # stopping a stopped site is fine
    assert "not running" in r.stdout


def ctlinnd(site, *args):
    r = subprocess.run(["/usr/lib/news/bin/ctlinnd", *args], env=dict(os.environ, INNCONF=str(site.innconf)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def wait_stat(site, m, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        with site.client() as c:
            if c.stat(m).startswith("223"):
                return
        assert time.monotonic() < deadline, "%s never entered the spool" % m
        time.sleep(0.2)


def test_parked_posts_enter_the_spool_by_themselves(inn_sites, monkeypatch):
    """nnrpd answers 240 while innd is paused and parks the article in spool/incoming; the
    site's keeper feeds it in with 'rnews -U' without any admin step (issue 10: 18 of 100
    messages stayed parked until a manual rnews -U)."""
    monkeypatch.setenv("INN_SITE_RNEWS_INTERVAL", "1")
    site = inn_sites(name="parking")
    site.newgroup(MAIL)
    with site.client() as c:
        c.cmd("MODE READER")
        ctlinnd(site, "pause", "test")
        m = mid("parked")
        assert c.post(make_article(MAIL, m, b"parked while paused\n")).startswith("240")
        assert c.stat(m).startswith("430")  # 240, and not stored
        assert [f for f in (site.dir / "spool" / "incoming").iterdir() if f.is_file()]
        ctlinnd(site, "go", "test")
    wait_stat(site, m)
    # a kill -9 of the site takes its keeper too; the next start runs it at once
    keeper = int((site.dir / "run" / "keeper.pid").read_text())
    site.kill9()
    assert not os.path.exists("/proc/%d" % keeper)
    site.start()
    assert "keeper pid" in run_inn_site("status", site.dir).stdout
    site.stop()


def test_two_sites_side_by_side(inn_sites):
    a, b = inn_sites(name="left"), inn_sites(name="right")
    assert (a.addr, a.port) != (b.addr, b.port)
    assert a.password != b.password
    a.newgroup(MAIL)
    b.newgroup(MAIL)
    ma, mb = mid("left"), mid("right")
    with a.client() as ca, b.client() as cb:
        assert ca.post(make_article(MAIL, ma, b"left\n")).startswith("240")
        assert cb.post(make_article(MAIL, mb, b"right\n")).startswith("240")
        assert ca.stat(ma).startswith("223") and ca.stat(mb).startswith("430")
        assert cb.stat(mb).startswith("223") and cb.stat(ma).startswith("430")
    # one site's password does not open the other
    with pytest.raises(NNTPError):
        NNTP(b.addr, b.port, b.user, a.password)
    a.stop()
    assert b.status()


def test_mesh_of_three_replicates(inn_sites):
    sites = inn_sites.mesh(3)
    for s in sites:
        s.newgroup(MAIL)
    m = mid("mesh")
    with sites[0].client() as c:
        assert c.post(make_article(MAIL, m, base64.encodebytes(os.urandom(50000)))).startswith("240")
    for s in sites[1:]:
        with s.client() as c:
            deadline = time.monotonic() + 30
            while not c.stat(m).startswith("223"):
                assert time.monotonic() < deadline, "article did not reach %s in 30 s" % s.name
                time.sleep(0.05)
    stop_all(sites)


def test_setup_errors_are_helpful(tmp_path):
    r = subprocess.run([str(INN_SITE), "setup", str(tmp_path / "x"), "--port", "11999"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--addr" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    r = subprocess.run([str(INN_SITE), "setup", str(tmp_path / "full"), "--addr", "127.0.0.250",
                        "--port", "11999"], capture_output=True, text=True)
    assert r.returncode != 0 and "not empty" in r.stderr
    r = subprocess.run([str(INN_SITE), "start", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and "setup" in r.stderr


def test_one_account_per_host(inn_sites):
    """`inn-site account DIR add HOST` gives a delivery host or gateway its own NNTP account
    with the postern account's rights (docs/deploy.md "NNTP accounts"); `del` shuts that one
    host out and no other."""
    site = inn_sites()
    site.newgroup(MAIL)
    r = run_inn_site("account", site.dir, "add", "mx2.example.org")
    name = "%s-mx2.example.org" % site.user
    secret = site.dir / "etc" / "accounts" / "mx2.example.org.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "user = %s" % name in r.stdout and "password_file = %s" % secret in r.stdout, r.stdout
    password = secret.read_text().strip()
    with NNTP(site.addr, site.port, name, password) as c:  # reads and posts like postern
        c.post(make_article(MAIL, mid("host"), b"from mx2\n"))
        assert c.group(MAIL)[0] >= 1
    assert run_inn_site("account", site.dir, "add", "mx2.example.org", check=False).returncode != 0
    run_inn_site("account", site.dir, "del", "mx2.example.org")
    assert not secret.exists()
    with pytest.raises(NNTPError):
        NNTP(site.addr, site.port, name, password)
    with site.client() as c:  # the postern account itself still works
        assert c.group(MAIL)[0] >= 1
    site.stop()
