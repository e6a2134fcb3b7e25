"""postern autoconfig (issue 16, item 6): the Mozilla autoconfig file, the Outlook
Autodiscover response and the RFC 6186 SRV records, written from the [gateway] listeners.
The XML is parsed with a real parser and compared with the configuration; bad input is
refused with a reason and the CLI's sysexits codes."""
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import postern_bin

EX_USAGE, EX_CONFIG = 64, 78
AD = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
ADR = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"

GATEWAY = """[gateway]
imaps = 0.0.0.0:9993, [::]:9993
imaps = 127.0.0.1:19993
imap = 192.0.2.7:9143
pop3s = 0.0.0.0:9995
pop3 = 192.0.2.7:9110
tls_cert = {d}/c.pem
tls_key = {d}/c.key
{extra}
"""
# what that configuration offers a client, in order of preference (the loopback imaps is
# the host's own and is left out beside the public one)
EXPECTED = [("imap", 9993, "SSL"), ("imap", 9143, "STARTTLS"), ("pop3", 9995, "SSL"), ("pop3", 9110, "STARTTLS")]


def conf(tmp_path, extra="public_name = mail.example.org", gateway=GATEWAY):
    path = tmp_path / ("postern-%d.conf" % len(list(tmp_path.glob("postern-*.conf"))))
    path.write_text(gateway.format(d=tmp_path, extra=extra))
    return path


def run(path, *args):
    bin = postern_bin()
    if not bin.is_file():
        pytest.skip("postern binary %s not built" % bin)
    return subprocess.run([str(bin), "-c", str(path), "autoconfig", *args], capture_output=True, text=True,
                          timeout=30)


def ok(path, *args):
    r = run(path, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_mozilla_matches_the_config(tmp_path):
    path = conf(tmp_path)
    root = ET.fromstring(ok(path, "--domain", "example.org", "--domain", "example.net"))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    (provider,) = root.findall("emailProvider")
    assert provider.get("id") == "example.org"
    assert [d.text for d in provider.findall("domain")] == ["example.org", "example.net"]
    servers = provider.findall("incomingServer")
    got = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType")) for s in servers]
    assert got == EXPECTED
    for s in servers:
        assert s.findtext("hostname") == "mail.example.org"
        assert s.findtext("username") == "%EMAILADDRESS%"
        assert s.findtext("authentication") == "password-cleartext"
    assert provider.find("outgoingServer") is None
    assert "no SMTP submission" in ok(path, "--domain", "example.org")  # said in a comment


def test_mozilla_default_format_host_option_and_smtp(tmp_path):
    path = conf(tmp_path)
    out = ok(path, "--format", "mozilla", "--domain", "example.org", "--host", "imap.example.org",
             "--smtp", "smtp.example.org")
    assert out == ok(path, "--domain", "example.org", "--host", "imap.example.org", "--smtp", "smtp.example.org")
    provider = ET.fromstring(out).find("emailProvider")
    assert {s.findtext("hostname") for s in provider.findall("incomingServer")} == {"imap.example.org"}
    (smtp,) = provider.findall("outgoingServer")
    assert (smtp.get("type"), smtp.findtext("hostname"), smtp.findtext("port"), smtp.findtext("socketType")) == \
        ("smtp", "smtp.example.org", "587", "STARTTLS")
    smtp = ET.fromstring(ok(path, "--domain", "example.org", "--smtp", "smtp.example.org:465")) \
        .find("emailProvider/outgoingServer")
    assert (smtp.findtext("port"), smtp.findtext("socketType")) == ("465", "SSL")
    assert "no SMTP submission" not in out


def test_no_starttls_without_a_certificate(tmp_path):
    gw = "[gateway]\nimap = 192.0.2.7:143\npop3 = 192.0.2.7:110\n{extra}\n"
    r = run(conf(tmp_path, gateway=gw), "--domain", "example.org")
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "no TLS listener" in r.stderr and r.stdout == ""


def test_autodiscover_matches_the_config(tmp_path):
    path = conf(tmp_path)
    address = "o'brien&co@example.org"  # what XML must escape, from a legal local part
    root = ET.fromstring(ok(path, "--format", "autodiscover", "--email", address))
    assert root.tag == AD + "Autodiscover"
    account = root.find(ADR + "Response/" + ADR + "Account")
    assert account.findtext(ADR + "AccountType") == "email" and account.findtext(ADR + "Action") == "settings"
    protocols = account.findall(ADR + "Protocol")
    got = [(p.findtext(ADR + "Type"), int(p.findtext(ADR + "Port")),
            "SSL" if p.findtext(ADR + "Encryption") == "SSL" else "STARTTLS") for p in protocols]
    assert got == [(t.upper(), port, sock) for t, port, sock in EXPECTED]
    for p in protocols:
        assert p.findtext(ADR + "Server") == "mail.example.org"
        assert p.findtext(ADR + "SSL") == "on"
        assert p.findtext(ADR + "LoginName") == address
        assert p.findtext(ADR + "SPA") == "off"
    # without --email there is no LoginName (Outlook uses the address the user typed)
    root = ET.fromstring(ok(path, "--format", "autodiscover", "--domain", "example.org"))
    assert root.find(".//" + ADR + "LoginName") is None


def test_srv_records(tmp_path):
    path = conf(tmp_path)
    out = ok(path, "--format", "srv", "--domain", "example.org", "--domain", "example.net.")
    records = [l.split() for l in out.splitlines() if l and not l.startswith(";")]
    for r in records:
        assert len(r) == 8 and r[1:4] == ["3600", "IN", "SRV"], r
    by = {(r[0]): (int(r[4]), int(r[5]), int(r[6]), r[7]) for r in records}
    for domain in ("example.org.", "example.net."):
        assert by["_imaps._tcp." + domain] == (0, 1, 9993, "mail.example.org.")
        assert by["_imap._tcp." + domain] == (10, 1, 9143, "mail.example.org.")
        assert by["_pop3s._tcp." + domain] == (20, 1, 9995, "mail.example.org.")
        assert by["_pop3._tcp." + domain] == (30, 1, 9110, "mail.example.org.")
    assert len(records) == 8
    assert not any(r[0].startswith("_submission") for r in records)
    # a service that is not offered says so (RFC 6186 section 4: target ".")
    gw = "[gateway]\nimaps = 0.0.0.0:993\ntls_cert = {d}/c.pem\ntls_key = {d}/c.key\n{extra}\n"
    out = ok(conf(tmp_path, gateway=gw), "--format", "srv", "--domain", "example.org")
    assert "_imaps._tcp.example.org. 3600 IN SRV 0 1 993 mail.example.org." in out
    for svc in ("_imap", "_pop3s", "_pop3"):
        assert re.search(r"^%s\._tcp\.example\.org\. 3600 IN SRV 0 0 0 \.$" % svc, out, re.M), out
    out = ok(conf(tmp_path, gateway=gw), "--format", "srv", "--domain", "example.org", "--smtp", "smtp.example.org")
    assert "_submission._tcp.example.org. 3600 IN SRV 10 1 587 smtp.example.org." in out


def test_no_domain_is_a_usage_error(tmp_path):
    for fmt in ("mozilla", "srv"):
        r = run(conf(tmp_path), "--format", fmt)
        assert r.returncode == EX_USAGE, r.stdout + r.stderr
        assert "--domain" in r.stderr and "no list of domains" in r.stderr and r.stdout == ""


def test_no_host_is_a_config_error(tmp_path):
    path = conf(tmp_path, extra="")
    r = run(path, "--domain", "example.org")
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "public_name" in r.stderr and "--host" in r.stderr and str(path) in r.stderr and r.stdout == ""
    assert ok(path, "--domain", "example.org", "--host", "mail.example.org")


@pytest.mark.parametrize("args", [
    ["--domain", "example.org", "--host", "0.0.0.0"],
    ["--domain", "example.org", "--host", "<mail>.example.org"],
    ["--domain", "exa&mple.org"],
    ["--domain", "example.org", "--format", "json"],
    ["--domain", "example.org", "--smtp", "smtp.example.org:0"],
    ["--domain", "example.org", "--smtp", "smtp.example.org:x"],
    ["--format", "autodiscover", "--email", "nobody"],
    ["--domain"],
    ["--domain", "example.org", "extra"],
], ids=lambda a: " ".join(a))
def test_bad_arguments(tmp_path, args):
    r = run(conf(tmp_path), *args)
    assert r.returncode == EX_USAGE, r.stdout + r.stderr
    assert r.stderr.startswith("postern: autoconfig: ") and "usage: postern autoconfig" in r.stderr
    assert r.stdout == ""


def test_public_name_must_be_a_name(tmp_path):
    r = run(conf(tmp_path, extra="public_name = 0.0.0.0"), "--domain", "example.org")
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "public_name must be a DNS host name" in r.stderr


def test_host_is_checked_against_the_certificate(tmp_path):
    """Clients refuse a certificate that does not name the host they were given: autoconfig
    warns (and still writes the file) when tls_cert does not name it."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=mail.example.org", "-keyout", str(tmp_path / "c.key"),
                    "-out", str(tmp_path / "c.pem"),
                    "-addext", "subjectAltName=DNS:mail.example.org,DNS:*.example.net"],
                   check=True, capture_output=True)
    path = conf(tmp_path)
    for host in (None, "mail.example.org.", "imap.example.net"):
        r = run(path, "--domain", "example.org", *(["--host", host] if host else []))
        assert r.returncode == 0 and "warning" not in r.stderr, (host, r.stderr)
    for host in ("imap.example.org", "a.b.example.net"):  # a wildcard covers one label
        r = run(path, "--domain", "example.org", "--host", host)
        assert r.returncode == 0 and ET.fromstring(r.stdout) is not None
        assert "warning: %s is not a name in the certificate" % host in r.stderr, r.stderr
    (tmp_path / "c.pem").unlink()  # the admin host need not hold the certificate
    r = run(path, "--domain", "example.org")
    assert r.returncode == 0 and "not checked against the certificate" in r.stderr, r.stderr
