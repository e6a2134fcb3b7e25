"""Forged mail is never shown (issue 14, item 4). Anyone with the posting account can seal a
message to a user's public key (it is in the key record) and post it in the user's group,
choosing the sealed arrival time; before, a forged "CEO wire transfer" dated a year back
showed in the INBOX like delivered mail. Now every mail article carries its writer's
signature (docs/formats.md sections 3 and 4a): the gateway shows only what a writer the
authority certified signed, for this group and Message-ID, inside the writer's validity and
not revoked (revoked_writers)."""
import imaplib
import poplib
import re
import subprocess

import pytest

from conftest import _free_port, _GatewayFactory

USER = "wanda.wire@example.org"
PASSWORD = "wire test password"
GENUINE = b"From: boss@example.org\nSubject: genuine\n\nthe genuine body\n"
FORGED = b"From: ceo@example.org\nSubject: CEO wire transfer\n\nsend 1,000,000 today\n"


def rogue_env(env, tmp):
    """What a forger with the posting account can set up: the real authority's public key
    (key records are public and verify with it), an authority of their own that certifies a
    writer key, and their own delivery secret."""
    conf = env.conf.read_text()
    pub, key, writer = tmp / "rogue.pub", tmp / "rogue.key", tmp / "rogue-writer.key"
    secret = tmp / "rogue.secret"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(0o600)

    def with_paths(public):
        text = re.sub(r"(?m)^authority_public = .*$", "authority_public = %s" % public, conf)
        text = re.sub(r"(?m)^authority_secret = .*$", "authority_secret = %s" % key, text)
        text = re.sub(r"(?m)^writer_key = .*$", "writer_key = %s" % writer, text)
        return re.sub(r"(?m)^delivery_secret = .*$", "delivery_secret = %s" % secret, text)

    init_conf, conf_path = tmp / "rogue-init.conf", tmp / "rogue.conf"
    init_conf.write_text(with_paths(pub))
    conf_path.write_text(with_paths("%s, %s" % (env.authority_public, pub)))
    for p in (init_conf, conf_path):
        p.chmod(0o600)
    r = subprocess.run([str(env.bin), "-c", str(init_conf), "authority", "init"], capture_output=True)
    assert r.returncode == 0 and writer.exists(), r.stderr
    return lambda args, input=None: subprocess.run([str(env.bin), "-c", str(conf_path), *args], input=input,
                                                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def forged(postern_env, inn_site, tmp_path_factory):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert postern_env(["deliver", "--to", USER], input=GENUINE).returncode == 0
    rogue = rogue_env(postern_env, tmp_path_factory.mktemp("rogue"))
    r = rogue(["deliver", "--to", USER], input=FORGED)
    assert r.returncode == 0, r.stderr  # posted: the news server cannot tell
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    addr = inn_site.addr
    gw = factory.start(pop3s="%s:%d" % (addr, _free_port(addr)))
    gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
    yield gw
    factory.close()


def imap_subjects(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(USER, PASSWORD)
    c.select("INBOX")
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    subjects = {item[1].decode().strip() for item in data if isinstance(item, tuple)}
    typ, data = c.select("INBOX")
    c.logout()
    return subjects, int(data[0])


def test_imap_shows_only_the_genuine_mail(forged):
    subjects, count = imap_subjects(forged)
    assert subjects == {"Subject: genuine"}, subjects
    assert count == 1
    log = forged.log_text()
    assert "carries no valid writer signature" in log, log[-3000:]


def test_pop3_serves_only_the_genuine_mail(forged):
    p = poplib.POP3_SSL(forged.addr, forged.pop3s_port, context=forged.ssl_context(), timeout=60)
    p.user(USER)
    p.pass_(PASSWORD)
    n, _ = p.stat()
    assert n == 1
    assert b"Subject: genuine" in p.top(1, 0)[1]
    p.quit()


def test_the_admin_tool_refuses_the_forgery_too(postern_env, forged):
    r = postern_env(["mailbox", USER, "--password-stdin"], input=PASSWORD + "\n")
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert "genuine" in out and "CEO wire transfer" not in out, out


def test_a_revoked_writer_is_not_shown(postern_env, inn_site, tmp_path_factory, forged):
    """The admin revokes this site's own writer (stolen key): its mail is no longer shown."""
    r = subprocess.run([str(postern_env.bin), "-c", str(postern_env.conf), "check"], capture_output=True)
    ids = re.findall(rb"writer \S+ \(id ([0-9a-f]{16})", r.stdout + r.stderr)
    assert ids, (r.stdout + r.stderr)
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    try:
        gw = factory.start()
        conf = gw.conf.read_text()
        gw.stop()
        gw.conf.write_text(conf.replace("[postern]\n", "[postern]\nrevoked_writers = %s\n" % ids[0].decode(), 1))
        gw.start()
        subjects, count = imap_subjects(gw)
        assert subjects == set() and count == 0, subjects
        assert "the writer is revoked" in gw.log_text(), gw.log_text()[-3000:]
    finally:
        factory.close()


def test_a_renewed_writer_key_keeps_the_old_mail_readable(postern_env, inn_site, tmp_path_factory, forged):
    """Renewing (docs/deploy.md): a new writer key for this host; mail signed with the old one
    stays readable, new mail is signed with the new one. A key the configured authority did
    not certify is refused by deliver with exit 75, so the MTA keeps the mail (an expired one
    the same way: the unit tests check validity, a test cannot wait a day)."""
    tmp = tmp_path_factory.mktemp("renew")
    new_key = tmp / "writer-new.key"
    r = postern_env(["authority", "writer", "renewed-host", "--out", new_key])
    assert r.returncode == 0 and b"id: " in r.stdout, r.stderr
    conf = postern_env.conf.read_text()
    renewed = tmp / "renewed.conf"
    renewed.write_text(re.sub(r"(?m)^writer_key = .*$", "writer_key = %s" % new_key, conf))
    renewed.chmod(0o600)
    run = lambda c, *a, input=None: subprocess.run([str(postern_env.bin), "-c", str(c), *a],  # noqa: E731
                                                   input=input, capture_output=True, timeout=120)
    r = run(renewed, "deliver", "--to", USER, input=b"From: boss@example.org\nSubject: after renewal\n\nnew\n")
    assert r.returncode == 0, r.stderr
    factory = _GatewayFactory(postern_env, tmp_path_factory, inn_site.addr)
    try:
        gw = factory.start()
        subjects, count = imap_subjects(gw)
        assert subjects == {"Subject: genuine", "Subject: after renewal"} and count == 2, subjects
    finally:
        factory.close()
    rogue = tmp / "rogue.key"
    rogue_conf = tmp / "rogue-auth.conf"
    rogue_conf.write_text(re.sub(r"(?m)^authority_secret = .*$", "authority_secret = %s" % (tmp / "other.key"),
                                 re.sub(r"(?m)^authority_public = .*$", "authority_public = %s" % (tmp / "other.pub"),
                                        re.sub(r"(?m)^writer_key = .*$", "writer_key = %s" % rogue, conf))))
    rogue_conf.chmod(0o600)
    assert run(rogue_conf, "authority", "init").returncode == 0
    bad = tmp / "bad.conf"
    bad.write_text(re.sub(r"(?m)^writer_key = .*$", "writer_key = %s" % rogue, conf))
    bad.chmod(0o600)
    r = run(bad, "deliver", "--to", USER, input=b"Subject: x\n\nx\n")
    assert r.returncode == 75 and b"not from the authority" in r.stderr, r.stderr
