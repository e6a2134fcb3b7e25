"""postern check (issue 16, item 4): one verdict per item, exit 1 on any FAIL. Each problem
the issue names is made on purpose and must be caught: a secret others can read, a dead site,
an authority secret that belongs to no configured public key, an expired certificate and one
that does not name public_name. The expired certificate lies in 2020-2021, so the test does
not depend on today's date."""
import shutil
import subprocess

from conftest import _free_port, make_cert


def check(env, conf=None):
    args = [str(env.bin), "-c", str(conf or env.conf), "check"]
    r = subprocess.run(args, capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def variant(env, tmp_path, name, extra="", replace=()):
    text = env.conf.read_text()
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    conf = tmp_path / name
    conf.write_text(text + "\n" + extra)
    conf.chmod(0o600)
    return conf


def gateway_section(tmp_path, cert, key, name="mail.example.org"):
    port = _free_port("127.0.0.1")
    return "[gateway]\nimaps = 127.0.0.1:%d\ntls_cert = %s\ntls_key = %s\npublic_name = %s\n" % (port, cert, key, name)


def test_a_good_configuration_passes(postern_env, tmp_path):
    cert, key = make_cert(tmp_path, "127.0.0.1", name="good")
    # the throwaway certificate names 127.0.0.1; public_name must be a DNS name in it
    conf = variant(postern_env, tmp_path, "good.conf", gateway_section(tmp_path, cert, key, "localhost"))
    rc, out, err = check(postern_env, conf)
    lines = out.splitlines()
    assert any(l.startswith("ok") and "authority_secret matches" in l for l in lines), out
    assert any(l.startswith("ok") and "reachable and logged in" in l for l in lines), out
    # make_cert's certificate is valid for 2 days: a warning, not a failure
    assert any(l.startswith("warn") and "expires in" in l for l in lines), out
    assert any(l.startswith("ok") and "names public_name localhost" in l for l in lines), out
    assert not any(l.startswith("FAIL") for l in lines), out
    assert rc == 0 and lines[-1].startswith("all good"), (rc, out, err)


def test_a_secret_others_can_read_fails(postern_env, tmp_path):
    secret = tmp_path / "delivery.secret"
    shutil.copy(postern_env.delivery_secret, secret)
    secret.chmod(0o644)
    conf = variant(postern_env, tmp_path, "loose.conf",
                   replace=[("delivery_secret = %s" % postern_env.delivery_secret, "delivery_secret = %s" % secret)])
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "delivery_secret" in l and "chmod 600" in l for l in out.splitlines()), out


def test_a_dead_site_fails(postern_env, inn_site, tmp_path):
    dead = _free_port("127.0.0.1")  # nothing listens there
    text = postern_env.conf.read_text()
    import re
    conf = variant(postern_env, tmp_path, "dead.conf",
                   replace=[(m, "port = %d" % dead) for m in set(re.findall(r"(?m)^port = \d+$", text))])
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "site " in l and str(dead) in l for l in out.splitlines()), out


def test_a_wrong_authority_key_fails(postern_env, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    conf = variant(postern_env, tmp_path, "other-authority.conf",
                   replace=[("authority_secret = %s" % postern_env.authority_secret,
                             "authority_secret = %s" % (other / "authority.key")),
                            ("authority_public = %s" % postern_env.authority_public,
                             "authority_public = %s" % (other / "authority.pub"))])
    r = subprocess.run([str(postern_env.bin), "-c", str(conf), "authority", "init"], capture_output=True)
    assert r.returncode == 0, r.stderr
    # the site's real public key, the other authority's secret
    conf.write_text(conf.read_text().replace("authority_public = %s" % (other / "authority.pub"),
                                             "authority_public = %s" % postern_env.authority_public))
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "not the secret of any authority_public key" in l
               for l in out.splitlines()), out


def test_an_expired_or_misnamed_certificate_fails(postern_env, tmp_path):
    key = tmp_path / "old.key"
    cert = tmp_path / "old.pem"
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("01\n")
    (ca / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndir = %s\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
        "new_certs_dir = $dir\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
        "copy_extensions = copy\n[p]\ncommonName = supplied\n" % ca)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca / "ca.key"),
                    "-out", str(ca / "ca.pem"), "-subj", "/CN=old test CA", "-days", "36500"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(tmp_path / "old.csr"), "-subj", "/CN=mail.example.org",
                    "-addext", "subjectAltName=DNS:mail.example.org"], check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-config", str(ca / "ca.cnf"), "-cert", str(ca / "ca.pem"),
                    "-keyfile", str(ca / "ca.key"), "-in", str(tmp_path / "old.csr"), "-out", str(cert),
                    "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-notext"],
                   check=True, capture_output=True)
    key.chmod(0o600)
    conf = variant(postern_env, tmp_path, "expired.conf", gateway_section(tmp_path, cert, key))
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "expired on 2021-01-01" in l for l in out.splitlines()), out
    assert any(l.startswith("ok") and "names public_name mail.example.org" in l for l in out.splitlines()), out

    good_cert, good_key = make_cert(tmp_path, "127.0.0.1", name="fresh")
    conf = variant(postern_env, tmp_path, "misnamed.conf", gateway_section(tmp_path, good_cert, good_key))
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "does not name public_name mail.example.org" in l
               for l in out.splitlines()), out


def test_a_configuration_that_does_not_load_is_a_verdict_too(postern_env, tmp_path):
    conf = variant(postern_env, tmp_path, "broken.conf", "[gateway]\nbogus = 1\n")
    rc, out, _ = check(postern_env, conf)
    assert rc == 1, out
    assert out.startswith("FAIL  config") and "unknown setting 'bogus'" in out, out


def test_the_inn_configuration_of_a_site_administered_here_fits(postern_env, inn_site):
    # scripts/inn-site writes what postern needs, and the fragment names its inn.conf
    rc, out, _ = check(postern_env)
    assert any(l.startswith("ok") and "site %s: inn.conf and expire.ctl fit postern" % inn_site.name in l
               and "artcutoff 0" in l and "key groups never expire" in l for l in out.splitlines()), out
    assert not any(l.startswith(("FAIL", "warn")) and ("inn.conf" in l or "expire.ctl" in l or "artcutoff" in l)
                   for l in out.splitlines()), out


def test_an_inn_configuration_postern_cannot_rely_on_is_caught(postern_env, inn_site, tmp_path):
    etc = tmp_path / "inn-etc"
    etc.mkdir()
    prefix = inn_site.prefix
    innconf, expire = etc / "inn.conf", etc / "expire.ctl"
    lines, seen = [], set()
    for line in inn_site.innconf.read_text().splitlines():
        key = line.split(":", 1)[0].strip()
        if key in ("artcutoff", "maxartsize", "pathetc"):
            seen.add(key)
            line = {"artcutoff": "artcutoff: 10", "maxartsize": "maxartsize: 1000000",
                    "pathetc": "pathetc: %s" % etc}[key]
        lines.append(line)
    assert seen == {"artcutoff", "maxartsize", "pathetc"}, seen
    innconf.write_text("\n".join(lines) + "\n")
    key_line = "%s.*.encrypt:A:never:never:never" % prefix
    ctl = (inn_site.dir / "etc" / "expire.ctl").read_text().splitlines()
    assert key_line in ctl, ctl
    expire.write_text("\n".join(l for l in ctl if l != key_line) + "\n")
    conf = variant(postern_env, tmp_path, "inn-wrong.conf",
                   replace=[("innconf = %s" % inn_site.innconf, "innconf = %s" % innconf)])
    rc, out, _ = check(postern_env, conf)
    lines = out.splitlines()
    assert rc == 1, out
    assert any(l.startswith("FAIL") and "artcutoff 10" in l and "set artcutoff: 0 in %s" % innconf in l
               and "postern inn-setup" in l for l in lines), out
    assert any(l.startswith("warn") and "maxartsize 1000000" in l and "about 750000 bytes is refused" in l
               for l in lines), out
    # localmaxartsize was left at 256 MiB
    assert not any("localmaxartsize" in l for l in lines), out
    assert any(l.startswith("FAIL") and str(expire) in l and "%s.*.encrypt" % prefix in l
               and "users vanish" in l for l in lines), out
    assert not any("inn.conf and expire.ctl fit postern" in l for l in lines), out
