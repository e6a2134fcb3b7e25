"""The demo's and the mesh's certificates (scripts/self-signed-cert) carry DNS names, so mail
clients that check the host name against them (fetchmail, mbsync) accept a gateway reached as
`localhost` (issue 9, item 6). A certificate with IP names only, as the demo made before, is
refused by the same client: the check is real."""
import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "certs@example.org", "correct horse battery"


@pytest.fixture(scope="module")
def mail_user(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = postern_env(["deliver", "--to", USER], input=b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
    assert r.returncode == 0, r.stderr
    return USER


def free_port(addr):
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fetchmail_check(tmp_path, port, cert):
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text("set no bouncemail\n"
                  "poll localhost proto IMAP port %d auth password timeout 30\n"
                  "  user \"%s\" there with password \"%s\" is root here\n"
                  "  ssl sslproto \"TLS1.2+\" sslcertck sslcertfile \"%s\"\n" % (port, USER, PASSWORD, cert))
    rc.chmod(0o600)
    return subprocess.run(["fetchmail", "--check", "-f", str(rc), "--nosyslog", "-v"], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, HOME=str(home)))


def test_fetchmail_accepts_the_scripts_certificate(gateway, mail_user, tmp_path):
    base = tmp_path / "tls"
    subprocess.run([str(REPO / "scripts" / "self-signed-cert"), str(base), "2", "localhost", "--", gateway.addr],
                   check=True)
    port = free_port("127.0.0.1")
    gw = gateway.factory.start(**{"imaps": "127.0.0.1:%d" % port, "tls_cert": "%s.pem" % base,
                                  "tls_key": "%s.key" % base})
    r = fetchmail_check(tmp_path, port, "%s.pem" % base)
    assert r.returncode == 0, r.stdout + r.stderr + gw.log_text()[-2000:]
    assert "1 message" in r.stdout + r.stderr


def test_ip_only_certificate_is_refused_by_the_same_client(gateway, mail_user, tmp_path):
    cert, key = tmp_path / "ip.pem", tmp_path / "ip.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    port = free_port("127.0.0.1")
    gateway.factory.start(**{"imaps": "127.0.0.1:%d" % port, "tls_cert": str(cert), "tls_key": str(key)})
    r = fetchmail_check(tmp_path, port, cert)
    assert r.returncode not in (0, 1), r.stdout + r.stderr
    assert "hostname mismatch" in r.stdout + r.stderr, r.stdout + r.stderr
