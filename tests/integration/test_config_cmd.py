"""postern config: the effective configuration as postern.conf text, like `postconf -n`
(issue 16, item 4): only what differs from the defaults, or --all; it loads back to the
same settings; a site's password is never printed, only its file."""
import subprocess

import pytest

from conftest import postern_bin

CONF = """[postern]
prefix = test
state_dir = {d}/state
[deliver]
min_copies = 2
[repair]
interval = 0
[site a]
host = 127.0.0.1
port = 1190
user = postern
password_file = {d}/a.secret
[site b]
host = ::1
tls = implicit
connect_timeout = 3
[gateway]
imaps = 127.0.0.1:9993
imaps = [::1]:9993
tls_cert = {d}/c.pem
tls_key = {d}/c.key
allow_plaintext_auth = yes
max_connections_per_ip = 7
public_name = mail.example.org.
"""
SECRET = "the-nntp-password-of-site-a"


def run(conf, *args):
    bin = postern_bin()
    if not bin.is_file():
        pytest.skip("postern binary %s not built" % bin)
    r = subprocess.run([str(bin), "-c", str(conf), "config", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def body(text):
    return text.split("\n", 1)[1]  # after the "; FILE (...)" line, which names the file


def test_prints_what_differs_and_loads_back(tmp_path):
    (tmp_path / "a.secret").write_text(SECRET + "\n")
    (tmp_path / "a.secret").chmod(0o600)
    conf = tmp_path / "postern.conf"
    conf.write_text(CONF.format(d=tmp_path))
    out = run(conf)
    for line in ("prefix = test", "min_copies = 2", "[repair]\ninterval = 0", "[site a]\nhost = 127.0.0.1\nport = 1190",
                 "password_file = %s/a.secret" % tmp_path, "tls = implicit", "connect_timeout = 3",
                 "imaps = 127.0.0.1:9993\nimaps = [::1]:9993", "allow_plaintext_auth = yes",
                 "max_connections_per_ip = 7", "public_name = mail.example.org\n"):
        assert line in out, (line, out)
    for default in ("max_connections = 10000", "confirm_timeout", "idle_timeout", "kdf_opslimit"):
        assert default not in out, (default, out)
    assert SECRET not in out
    for all_ in ((), ("--all",)):
        first = run(conf, *all_)
        again = tmp_path / ("again%s.conf" % len(all_))
        again.write_text(first)
        assert body(run(again, *all_)) == body(first)  # the same settings, written the same way
    every = run(conf, "--all")
    assert "max_connections = 10000" in every and "idle_timeout = 1800" in every and SECRET not in every
