"""Secrets others can read are refused where they are used and warned about where they are
not; `serve --check` refuses whatever `serve` refuses at startup (issue 9, items 4 and 6)."""
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from conftest import Gateway

USER = "modes@example.org"
PASSWORD = "correct horse battery staple"
MESSAGE = b"From: a@example.org\r\nTo: modes@example.org\r\nSubject: modes\r\n\r\nbody\r\n"


@pytest.fixture
def gw_conf(postern_env, inn_site, tmp_path_factory):
    """A gateway configuration (not started) whose directory the network user can reach."""
    d = Path(tmp_path_factory.mktemp("gwconf"))
    os.chmod(d, 0o755)
    for p in d.parents:
        if str(p).startswith("/tmp/pytest"):
            os.chmod(p, os.stat(p).st_mode | 0o005)
    return Gateway(postern_env, d, inn_site.addr, {})


def serve(gw, *args):
    return subprocess.run([str(gw.env.bin), "-c", str(gw.conf), "serve", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


class chmod_for_test:
    def __init__(self, path, mode):
        self.path, self.mode = Path(path), mode

    def __enter__(self):
        self.old = os.stat(self.path).st_mode & 0o7777
        os.chmod(self.path, self.mode)

    def __exit__(self, *exc):
        os.chmod(self.path, self.old)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to the network user")
def test_check_refuses_a_state_dir_serve_would_refuse(gw_conf):
    assert serve(gw_conf, "--check").returncode == 0
    os.chown(gw_conf.state_dir, 0, 0)
    os.chmod(gw_conf.state_dir, 0o700)
    r = serve(gw_conf, "--check")
    assert r.returncode == 78 and "not usable by the network process" in r.stderr, r.stdout + r.stderr
    assert "configuration OK" not in r.stdout
    r = serve(gw_conf)
    assert r.returncode == 78 and "not usable by the network process" in r.stderr, r.stderr
    # a users/ directory the network user cannot write is refused the same way
    pw = pwd.getpwnam(gw_conf.user)
    os.chown(gw_conf.state_dir, pw.pw_uid, pw.pw_gid)
    (gw_conf.state_dir / "users").mkdir(mode=0o700)
    r = serve(gw_conf, "--check")
    assert r.returncode == 78 and "users is not usable" in r.stderr, r.stderr


def test_tls_key_others_can_read_is_refused(gw_conf):
    with chmod_for_test(gw_conf.key, 0o644):
        r = serve(gw_conf, "--check")
        assert r.returncode == 78, r.stdout + r.stderr
        assert "tls_key %s is readable or writable by group or others (mode 0644): chmod 600" % gw_conf.key \
            in r.stderr, r.stderr
    with chmod_for_test(gw_conf.key, 0o640):
        assert serve(gw_conf, "--check").returncode == 78
    assert serve(gw_conf, "--check").returncode == 0


def test_check_warns_about_loose_secrets_it_does_not_use(gw_conf, postern_env):
    r = serve(gw_conf, "--check")
    assert r.returncode == 0 and "UNPROTECTED" not in r.stderr, r.stderr
    with chmod_for_test(postern_env.delivery_secret, 0o644), chmod_for_test(postern_env.authority_secret, 0o604):
        r = serve(gw_conf, "--check")
    assert r.returncode == 0, r.stderr
    assert "UNPROTECTED SECRET: delivery_secret %s" % postern_env.delivery_secret in r.stderr, r.stderr
    assert "UNPROTECTED SECRET: authority_secret %s" % postern_env.authority_secret in r.stderr, r.stderr


def test_deliver_and_user_add_refuse_loose_secrets(postern_env):
    with chmod_for_test(postern_env.authority_secret, 0o644):
        r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 78, r.stderr
        assert b"group or others" in r.stderr and b"chmod 600" in r.stderr, r.stderr
        assert b"added" not in r.stdout
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    with chmod_for_test(postern_env.delivery_secret, 0o644):
        r = postern_env(["deliver", "--to", USER], input=MESSAGE)
        # the MTA keeps the mail queued (75) while the admin fixes the mode
        assert r.returncode == 75, r.stderr
        assert b"delivery_secret %s is readable or writable by group or others" % bytes(
            postern_env.delivery_secret) in r.stderr, r.stderr
    r = postern_env(["deliver", "--to", USER], input=MESSAGE)
    assert r.returncode == 0, r.stderr
