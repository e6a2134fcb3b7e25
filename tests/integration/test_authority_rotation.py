"""Rotating the authority key (issue 16 item 5): `postern user resign` signs every user's key
record again with the new authority key, under the same password, superseding the old
record; a host that has only the new public key then delivers to the user and unlocks the
mailbox. Before that, such a host defers (75) with a message naming the unknown authority
key, instead of bouncing the mail (67) as for a user who does not exist."""
import re
import subprocess

USER = "rory.rotation@example.org"
PASSWORD = "rotation test password"


def msg(subject):
    return b"From: a@example.net\nSubject: %s\n\n%s body\n" % (subject.encode(), subject.encode())


def conf_with(env, tmp_path, name, public, secret, writer):
    text = env.conf.read_text()
    text = re.sub(r"(?m)^authority_public = .*$", "authority_public = " + ",".join(map(str, public)), text)
    text = re.sub(r"(?m)^authority_secret = .*$", "authority_secret = %s" % secret, text)
    text = re.sub(r"(?m)^writer_key = .*$", "writer_key = %s" % writer, text)
    conf = tmp_path / name
    conf.write_text(text)
    conf.chmod(0o600)

    def run(args, input=None):
        if isinstance(input, str):
            input = input.encode()
        return subprocess.run([str(env.bin), "-c", str(conf), *args], input=input, capture_output=True, timeout=300)
    return run


def test_resign_then_drop_the_old_public_key(postern_env, inn_site, tmp_path):
    env = postern_env
    a_pub, a_key = env.authority_public, env.authority_secret
    b_pub, b_key, b_writer = tmp_path / "b.pub", tmp_path / "b.key", tmp_path / "b-writer.key"
    r = env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert env(["deliver", "--to", USER], input=msg("signed by a")).returncode == 0

    only_b = conf_with(env, tmp_path, "only-b.conf", [b_pub], b_key, b_writer)
    r = only_b(["authority", "init"])  # the new key pair, and this host's writer key under it
    assert r.returncode == 0, r.stderr
    both = conf_with(env, tmp_path, "both.conf", [b_pub, a_pub], b_key, b_writer)

    # a host given only the new public key before the records are re-signed: wait, not bounce
    r = only_b(["deliver", "--to", USER], input=msg("too early"))
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert b"not in authority_public here" in r.stderr and b"postern user resign" in r.stderr, r.stderr

    r = both(["user", "resign", "--all", "--previous-secret", str(a_key)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"[1/1] " + USER.encode() in r.stderr and b"re-signed (serial 1, the same password)" in r.stderr
    assert b"1 of 1 user signed by the current authority key" in r.stdout, r.stdout
    r = both(["user", "resign", USER])
    assert r.returncode == 0 and b"already signed by the current authority key" in r.stderr, r.stderr
    # the old record is superseded: one record left, under the re-signed Message-ID
    with inn_site.client() as c:
        count, low, high, _ = c.group("postern.org.example.rory_2erotation.encrypt")
        ids = [o[4] for o in c.over("%d-%d" % (low, high))]
    assert len(ids) == 1 and re.match(r"^<k\.[0-9a-f]{32}\.1\.a[0-9a-f]{16}@postern\.invalid>$", ids[0]), ids

    # only the new public key: delivery, and the same password opens the mailbox
    r = only_b(["deliver", "--to", USER], input=msg("signed by b"))
    assert r.returncode == 0, r.stderr
    # mail sealed before the rotation carries a writer certificate of the old key: without the
    # old public key it is not shown (65: some messages could not be read) ...
    r = only_b(["mailbox", USER, "--password-stdin"], input=PASSWORD.encode() + b"\n")
    assert r.returncode == 65 and b"signed by b" in r.stdout and b"signed by a" not in r.stdout, r.stdout + r.stderr
    # ... and it shows while the old public key is configured: keep it until retention_days
    # have passed, then drop it
    r = both(["mailbox", USER, "--password-stdin"], input=PASSWORD.encode() + b"\n")
    assert r.returncode == 0 and b"signed by a" in r.stdout and b"signed by b" in r.stdout, r.stdout + r.stderr
    # a password change after the rotation is signed by the new key too
    r = only_b(["user", "passwd", USER, "--password-stdin"],
               input=(PASSWORD + "\nrotation new password\n").encode())
    assert r.returncode == 0, r.stderr
    r = only_b(["mailbox", USER, "--password-stdin"], input=b"rotation new password\n")
    assert r.returncode == 65 and b"signed by b" in r.stdout, r.stdout + r.stderr
