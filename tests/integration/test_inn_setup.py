"""`postern inn-setup` on Debian's own INN (/etc/news, issue 16 item 2): a news server that
already carries another group keeps serving it; postern's account reads and posts its groups;
mail larger than Debian's default article limit (1 MB) is stored, which it is not before the
setup; a second run changes nothing; --remove gives every file of /etc/news back byte for
byte. The system INN's configuration, database and spool are restored afterwards."""
import os
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO, PosternEnv, postern_bin
from nntplib_min import NNTP, NNTPError, make_article

ETC = Path("/etc/news")
STATE_DIRS = [Path("/var/lib/news"), Path("/var/spool/news")]
BIN = Path("/usr/lib/news/bin")
SCRIPT = Path(os.environ["POSTERN_INN_SETUP"])  # conftest: the tree's script
USER = "ines.innsetup@example.org"
PASSWORD = "inn setup test password"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not (ETC / "inn.conf").exists(),
                                reason="needs root and Debian's inn2")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def system_innd_pid():
    try:
        pid = int(Path("/run/news/innd.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def start_inn():
    Path("/run/news").mkdir(exist_ok=True)
    shutil.chown("/run/news", "news", "news")
    env = dict(os.environ, INNCONF=str(ETC / "inn.conf"))
    subprocess.run([str(BIN / "innd")], env=env, check=True, timeout=60, cwd="/")
    deadline = time.monotonic() + 30
    while not port_open(119):
        assert time.monotonic() < deadline, "the system INN does not listen on 119"
        time.sleep(0.1)


def stop_inn():
    pid = system_innd_pid()
    if pid is None:
        return
    # its readers (nnrpd) and innfeed outlive innd: only these, not other INN instances' ones
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    subprocess.run([str(BIN / "ctlinnd"), "-s", "-t", "30", "shutdown", "test"], timeout=60,
                   env=dict(os.environ, INNCONF=str(ETC / "inn.conf")))
    deadline = time.monotonic() + 30
    while system_innd_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    for c in children:
        try:
            os.kill(int(c), 15)
        except ProcessLookupError:
            pass


def reader():
    """An NNTP reader connection to the system INN: from 127.0.0.1 innd sees its own peer
    (incoming.conf's ME) and hands over to nnrpd after MODE READER."""
    c = NNTP("127.0.0.1", 119)
    assert c.cmd("MODE READER").startswith("20")
    return c


def ctlinnd(*args):
    return subprocess.run([str(BIN / "ctlinnd"), "-t", "30", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, INNCONF=str(ETC / "inn.conf")))


def snapshot(root):
    """Every file under root: {relative path: bytes} (symlinks by target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(root))] = (oct(p.stat().st_mode), p.read_bytes())
    return out


@pytest.fixture(scope="module")
def system_inn(tmp_path_factory):
    if system_innd_pid() is not None or port_open(119):
        pytest.skip("the system INN (or something else on port 119) runs already: not touching it")
    work = tmp_path_factory.mktemp("inn-setup")
    saved = work / "saved.tar"
    with tarfile.open(saved, "w") as t:  # the system INN as it was, restored at the end
        for d in [ETC, *STATE_DIRS]:
            t.add(str(d))
    try:
        start_inn()
        yield work
    finally:
        stop_inn()
        for d in [ETC, *STATE_DIRS]:
            shutil.rmtree(d, ignore_errors=True)
        with tarfile.open(saved) as t:
            t.extractall("/", numeric_owner=True)


def inn_setup(env, *args):
    e = dict(os.environ, POSTERN_INN_SETUP=str(SCRIPT), POSTERN_SECRET_DIR=str(env["secrets"]),
             POSTERN_INN_CRON=str(env["cron"]))
    return subprocess.run([str(postern_bin()), "-c", str(env["conf"]), "inn-setup", *args], capture_output=True,
                          text=True, env=e, timeout=120)


def test_inn_setup_on_a_news_server_that_carries_another_group(system_inn):
    work = system_inn
    before = snapshot(ETC)
    # the admin's own group, read and posted by anonymous local readers (Debian's readers.conf)
    assert ctlinnd("newgroup", "local.test", "y").returncode == 0
    with reader() as c:
        assert c.post(make_article("local.test", "<one@local.test>", b"first\n")).startswith("240")
    conf = work / "min.conf"
    conf.write_text("[postern]\nprefix = postern\n")
    env = {"conf": conf, "secrets": work / "secrets", "cron": work / "cron"}

    r = inn_setup(env, "--host", "gw1", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would change" in r.stdout and snapshot(ETC) == before  # a dry run writes nothing

    r = inn_setup(env, "--host", "gw1", "--peer", "site2=news2.example.org:11902")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("inn.conf", "expire.ctl", "readers.conf", "newsfeeds", "incoming.conf", "innfeed.conf"):
        assert "/etc/news/%s: changed" % name in r.stdout, r.stdout
    assert "access blocks of readers.conf also give other readers 'postern.*'" in r.stderr
    assert "localhost: newsgroups: *" in r.stderr
    assert "restart INN" in r.stdout
    fragment = r.stdout[r.stdout.index("[site gw1]"):]
    secret = env["secrets"] / "nntp-gw1.secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    assert "* * * * *\tnews\t[ -x /usr/bin/rnews ] && rnews -U" in env["cron"].read_text()
    expire = (ETC / "expire.ctl").read_text()
    assert expire.rstrip().endswith("postern.*.encrypt:A:never:never:never\n# <<< postern inn-setup".rstrip())
    assert "\n/remember/:60\n" in expire
    now = snapshot(ETC)
    assert {f: now[f][0] for f in before} == {f: m for f, (m, _) in before.items()}  # owners' modes kept
    assert oct((ETC / "postern-newsusers").stat().st_mode & 0o777) == "0o640"

    again = inn_setup(env, "--host", "gw1", "--peer", "site2=news2.example.org:11902")
    assert again.returncode == 0, again.stderr
    assert "changed" not in again.stdout.replace("unchanged", ""), again.stdout
    after_first = snapshot(ETC)

    stop_inn()  # inn.conf's new limits need a restart
    start_inn()
    # the other group still works for its readers: the old article, and a new post
    with reader() as c:
        assert c.group("local.test")[0] == 1
        assert c.post(make_article("local.test", "<two@local.test>", b"second\n")).startswith("240")
        assert c.stat("<one@local.test>").startswith("223")

    # postern over the system INN: the groups made with ctlinnd (innconf), mail of 2 MB stored
    pe = PosternEnv(work / "postern", None, postern_bin())
    pe.dir.mkdir()
    fd = os.open(pe.delivery_secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("ab" * 32 + "\n")

    class Site:
        prefix = "postern"
        conf_fragment = work / "fragment.conf"
    Site.conf_fragment.write_text(fragment.replace("host = localhost", "host = 127.0.0.1"))
    pe.site = Site
    pe.write_conf()
    for args, inp in ((["authority", "init"], None), (["user", "add", USER, "--password-stdin"], PASSWORD + "\n")):
        r = pe(args, input=inp)
        assert r.returncode == 0, r.stdout + r.stderr
    big = b"Subject: big\nFrom: a@example.net\n\n" + (b"x" * 75 + b"\n") * 28000  # 2.1 MB
    r = pe(["deliver", "--to", USER], input=big)
    assert r.returncode == 0, r.stderr  # over Debian's maxartsize of 1 MB: refused before
    r = pe(["mailbox", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0 and b"big" in r.stdout, r.stdout + r.stderr
    # the postern account reads only postern's groups
    with reader() as c:
        c.login("postern-gw1", secret.read_text().strip())
        with pytest.raises(NNTPError):
            c.group("local.test")

    r = inn_setup(env, "--remove", "--host", "gw1")
    assert r.returncode == 0, r.stderr
    assert snapshot(ETC) == before, "--remove left /etc/news different"
    assert not env["cron"].exists()
    assert after_first != before
