"""A flooded key group never makes a user unknown (issue 14, item 2). Anyone with the posting
account can post into a user's key group. Before, key lookup read only the first 256 of its
articles: after 256 junk posts, `user passwd` put the new record at article 258 (never read)
and its Supersedes removed the old one, so deliver exited 67 (the MTA bounces) and both
passwords failed. Now lookup takes candidates by the serial their Message-ID claims and
accepts only a record that verifies and whose key id and serial give its Message-ID: junk
costs one overview line, or one fetch when it claims a higher serial, and a genuine record
re-posted under a false claim is refused."""
import base64
import os
import re

from nntplib_min import make_article

USER = "fred.flood@example.org"
GROUP = "postern.org.example.fred_2eflood"
OLD, NEW = "fred's first password", "fred's second password"
DELIVERED = re.compile(r"as (<m\.[0-9a-f]{40}@postern\.invalid>)")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def test_lookup_passwd_and_delivery_survive_300_junk_articles(postern_env, inn_site):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=OLD + "\n")
    assert r.returncode == 0, out(r)
    key_group = GROUP + ".encrypt"
    with inn_site.client() as c:
        c.group(key_group)
        _, real = c.article("1")  # fred's record (serial 1), to replay under a false claim
        body = b"\n".join(real[real.index(b"") + 1:]) + b"\n"
        kid = os.urandom(16).hex()
        for i in range(300):
            if i % 3 == 0:  # junk in a key record's shape, claiming a higher serial
                msgid, payload = "<k.%s.%d@postern.invalid>" % (kid, 1000 + i), base64.encodebytes(os.urandom(300))
            elif i % 3 == 1:  # the genuine record, claiming another serial
                msgid, payload = "<k.%s.%d@postern.invalid>" % (kid, 5000 + i), body
            else:  # anything at all
                msgid, payload = "<junk.%d.%s@example.net>" % (i, kid), b"hello\n" * 20
            assert c.post(make_article(key_group, msgid, payload,
                                       extra_headers=["Postern-Format: keyrecord 1"])).startswith("240")
        count, _, _, _ = c.group(key_group)
        assert count > 256  # the old lookup's horizon: the test means something

    r = postern_env(["user", "passwd", USER, "--password-stdin"], input="%s\n%s\n" % (OLD, NEW))
    assert r.returncode == 0, out(r)
    assert "serial 2" in out(r), out(r)
    r = postern_env(["deliver", "--verbose", "--to", USER], input=b"Subject: after the flood\n\nstill here\n")
    assert r.returncode == 0, out(r)
    msgid = DELIVERED.search(out(r)).group(1)
    r = postern_env(["mailbox", USER, "--show", msgid, "--password-stdin"], input=NEW + "\n")
    assert r.returncode == 0 and b"still here" in r.stdout, out(r)
    r = postern_env(["mailbox", USER, "--password-stdin"], input=OLD + "\n")
    assert r.returncode == 77, out(r)  # the old password is gone, not the user
