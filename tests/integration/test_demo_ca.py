"""The demo's certificate comes from a small CA (scripts/self-signed-cert, issue 16 item 6):
a client that trusts the CA alone, with the host name checked, connects to a gateway
serving the leaf; the CA is reused across runs (trust it once) and can sign only for the
names it was made for."""
import imaplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "self-signed-cert"
USER, PASSWORD = "ca@example.org", "correct horse battery"


def make(base, *args, ca=None):
    cmd = [str(SCRIPT)] + (["--ca", str(ca)] if ca else []) + [str(base), "2", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=input, timeout=60)


def leaf_of(pem):
    text = Path(pem).read_text()
    end = "-----END CERTIFICATE-----\n"
    return text[:text.index(end) + len(end)]


def test_chain_verifies_against_the_ca(tmp_path):
    base = tmp_path / "tls"
    r = make(base, "localhost", "mail.localhost", "--", "127.0.0.1", "::1")
    ca = tmp_path / "tls-ca.pem"
    for f, mode in ((base.with_suffix(".key"), 0o600), (tmp_path / "tls-ca.key", 0o600),
                    (base.with_suffix(".pem"), 0o644), (ca, 0o644)):
        assert f.stat().st_mode & 0o777 == mode, f
    assert str(ca) in r.stderr and "update-ca-certificates" in r.stderr and "Thunderbird" in r.stderr
    (tmp_path / "leaf.pem").write_text(leaf_of(base.with_suffix(".pem")))
    v = openssl("verify", "-CAfile", str(ca), str(tmp_path / "leaf.pem"))
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
    # tls.pem is the chain tls_cert wants: the leaf, then the CA
    assert base.with_suffix(".pem").read_text() == leaf_of(base.with_suffix(".pem")) + ca.read_text()
    ca_text = openssl("x509", "-in", str(ca), "-noout", "-text").stdout
    assert "CA:TRUE" in ca_text and "Certificate Sign" in ca_text and "Name Constraints: critical" in ca_text
    leaf_text = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text").stdout
    assert "CA:FALSE" in leaf_text and "TLS Web Server Authentication" in leaf_text
    for san in ("DNS:localhost", "DNS:mail.localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
        assert san in leaf_text, san
    # the leaf's self-signed predecessor verified against itself; this one does not
    v = openssl("verify", "-CAfile", str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.pem"))
    assert v.returncode != 0


def test_the_ca_signs_only_its_names(tmp_path):
    make(tmp_path / "tls", "localhost", "--", "127.0.0.1")
    ca, key = tmp_path / "tls-ca.pem", tmp_path / "tls-ca.key"
    for name, san in (("evil", "DNS:mail.example.com"), ("evilip", "IP:192.0.2.1")):
        r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / (name + ".key")), "-out", str(tmp_path / (name + ".pem")),
                    "-CA", str(ca), "-CAkey", str(key), "-days", "1", "-subj", "/CN=x",
                    "-addext", "subjectAltName=" + san)
        assert r.returncode == 0, r.stderr
        v = openssl("verify", "-CAfile", str(ca), str(tmp_path / (name + ".pem")))
        assert v.returncode != 0 and "subtree" in v.stdout + v.stderr, v.stdout + v.stderr


def test_the_ca_is_reused_while_it_fits(tmp_path):
    ca_base = tmp_path / "keep" / "demo-ca"
    ca_base.parent.mkdir()
    make(tmp_path / "a", "localhost", "--", "127.0.0.1", ca=ca_base)
    first = Path(str(ca_base) + ".pem").read_text()
    r = make(tmp_path / "b", "localhost", "--", "127.0.0.1", ca=ca_base)
    assert "reused CA" in r.stderr and Path(str(ca_base) + ".pem").read_text() == first
    assert not (tmp_path / "b-ca.pem").exists()
    # a name the CA may not sign for: a new CA, which then verifies the new leaf
    r = make(tmp_path / "c", "mail.example.test", "--", "127.0.0.1", ca=ca_base)
    assert "new CA" in r.stderr and Path(str(ca_base) + ".pem").read_text() != first
    (tmp_path / "leaf.pem").write_text(leaf_of(tmp_path / "c.pem"))
    assert openssl("verify", "-CAfile", str(ca_base) + ".pem", str(tmp_path / "leaf.pem")).returncode == 0


def free_port(addr):
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def mail_user(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return USER


def test_client_trusting_only_the_ca_connects(gateway, mail_user, tmp_path):
    base = tmp_path / "tls"
    make(base, "localhost", "--", "127.0.0.1")
    port = free_port("127.0.0.1")
    gw = gateway.factory.start(**{"imaps": "127.0.0.1:%d" % port, "tls_cert": "%s.pem" % base,
                                  "tls_key": "%s.key" % base})
    ctx = ssl.create_default_context(cafile=str(tmp_path / "tls-ca.pem"))  # the CA, nothing else
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=30)
    try:
        assert m.login(USER, PASSWORD)[0] == "OK", gw.log_text()[-2000:]
        assert m.select("INBOX", readonly=True)[0] == "OK"
        # the server sent the chain it was given; the client checked it up to the CA
        assert m.sock.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    finally:
        m.logout()
    # the same client without the CA refuses the certificate; and the name is checked
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(), timeout=30)
    other = ssl.create_default_context(cafile=str(tmp_path / "tls-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|match"):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            other.wrap_socket(raw, server_hostname="mail.example.org").close()
