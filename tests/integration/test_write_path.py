"""The write path against a real INN site: provisioning, delivery, read-back, and what the
news server gets to see. Tests run in file order and share one site and one user."""
import base64
import email.message
import email.policy
import email.utils
import os
import random
import re
import subprocess

import pytest

USER = "Alice.Liddell+Inbox@Example.ORG"       # upper case, dot and plus in the local part
CANON = "alice.liddell+inbox@example.org"
GROUP = "postern.org.example.alice_2eliddell_2binbox"
PASSWORD = "tea party at four"
SECRET_SUBJECT = "quokka-subject-7f3a"
SECRET_BODY = "wombat-body-91c2"
DELIVERED = re.compile(r"delivered to \S+ as (<m\.[0-9a-f]{40}@postern\.invalid>)")


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def deliver(env, data, to=USER):
    return env(["deliver", "--verbose", "--to", to], input=data)


def show(env, ident, password=PASSWORD):
    return env(["mailbox", USER, "--password-stdin", "--show", ident], input=password + "\n")


def varied_messages(n, big_mb):
    """n messages of many shapes; the last one carries a big_mb MB attachment."""
    rnd = random.Random(4242)
    msgs = []
    for i in range(n):
        m = email.message.EmailMessage()
        m["From"] = rnd.choice(["Bob <bob@example.net>", "Jürgen Groß <jg@example.de>",
                                "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <jp@example.jp>"])
        m["To"] = CANON
        m["Subject"] = rnd.choice(["Hello %d" % i, "Grüße Nr. %d — ünïcödé" % i, "日本語 %d" % i,
                                   "%s %d" % (SECRET_SUBJECT, i)])
        m["Date"] = email.utils.formatdate(1700000000 + i * 3600)
        m["Message-ID"] = "<test.%d.%d@example.net>" % (i, rnd.getrandbits(32))
        kind = i % 5
        if kind == 0:
            m.set_content("Plain text %d\n%s\n" % (i, SECRET_BODY))
        elif kind == 1:
            m.set_content("Text part %d\n" % i)
            m.add_alternative("<p>HTML part %d</p>" % i, subtype="html")
        elif kind == 2:
            m.set_content("With attachment %d\n" % i)
            m.add_attachment(rnd.randbytes(rnd.randint(1, 200_000)), maintype="application",
                             subtype="octet-stream", filename="naïve file %d.bin" % i)
        elif kind == 3:
            inner = email.message.EmailMessage()
            inner["Subject"] = "forwarded %d" % i
            inner.set_content("inner body\n")
            m.set_content("See the forwarded message.\n")
            m.add_attachment(inner)
        else:
            m.set_content(("Lines with a leading dot:\n.\n..\n.hidden\nend %d\n" % i) * 50)
        data = m.as_bytes(policy=email.policy.SMTP)
        if i % 2:
            data = data.replace(b"\r\n", b"\n")  # MTAs hand over LF line ends too
        msgs.append(data)
    big = email.message.EmailMessage()
    big["From"] = "Big <big@example.net>"
    big["To"] = CANON
    big["Subject"] = "big attachment"
    big.set_content("A %d MB attachment follows.\n" % big_mb)
    big.add_attachment(rnd.randbytes(big_mb * 1000 * 1000), maintype="application",
                       subtype="octet-stream", filename="big.bin")
    msgs[-1] = big.as_bytes(policy=email.policy.SMTP)
    return msgs


@pytest.fixture(scope="module")
def delivered():
    """Message-IDs of the varied messages, filled by test_deliver_varied."""
    return {}


def test_user_add_refuses_weak_password(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input="short\n")
    assert r.returncode == 65, out(r)
    assert "too short" in out(r)


def test_user_add(postern_env, inn_site):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    assert "added " + CANON in out(r)
    c = inn_site.client()
    try:
        assert c.group(GROUP)[3] == GROUP
        assert c.group(GROUP + ".encrypt")[0] == 1   # the key record
    finally:
        c.quit()


def test_user_add_twice_is_refused(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode != 0
    assert "already exists" in out(r)


def test_user_list(postern_env):
    r = postern_env(["user", "list"])
    assert r.returncode == 0, out(r)
    assert CANON in r.stdout.decode().split()


def test_unmappable_address_is_refused(postern_env):
    for bad in ['"quoted local"@example.org', "no-at-sign", "x@exämple.org", "x@[10.0.0.1]"]:
        r = postern_env(["user", "add", bad, "--password-stdin"], input=PASSWORD + "\n")
        assert r.returncode == 65, (bad, out(r))


def test_deliver_varied_and_read_back_identical(postern_env, delivered):
    msgs = varied_messages(100, big_mb=20)
    for i, data in enumerate(msgs):
        r = deliver(postern_env, data)
        assert r.returncode == 0, (i, out(r))
        delivered[DELIVERED.search(out(r)).group(1)] = data
    assert len(delivered) == 100
    for msgid, data in delivered.items():
        r = show(postern_env, msgid)
        assert r.returncode == 0, (msgid, out(r))
        assert r.stdout == data, msgid


def test_listing_shows_every_message(postern_env):
    r = postern_env(["mailbox", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    lines = r.stdout.decode().splitlines()[1:]
    assert len(lines) == 100
    assert any("Grüße" in line for line in lines)       # RFC 2047 decoded
    assert any("big attachment" in line for line in lines)


def test_nothing_revealing_on_the_spool(postern_env, inn_site, delivered):
    """No subject, body, sender or original Message-ID anywhere in spool, overview or history."""
    needles = [SECRET_SUBJECT.encode(), SECRET_BODY.encode(), b"bob@example.net", b"example.net>",
               b"test.0."]
    for root, _, files in os.walk(inn_site.dir / "spool"):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            for n in needles:
                assert n not in data, (n, root, f)
    for f in os.listdir(inn_site.dir / "db"):
        data = open(inn_site.dir / "db" / f, "rb").read()
        for n in needles:
            assert n not in data, (n, f)


def test_outer_headers_and_overview_are_neutral(postern_env, inn_site, delivered):
    c = inn_site.client()
    try:
        count, low, high, _ = c.group(GROUP)
        over = c.over("%d-%d" % (low, high))
        assert len(over) == 100
        sizes = set()
        for fields in over:
            assert fields[1] == "postern mail"                          # Subject
            assert fields[2] == "postern <postern@postern.invalid>"     # From
            assert re.fullmatch(r"<m\.[0-9a-f]{40}@postern\.invalid>", fields[4])
            sizes.add(int(fields[6]))
        # Padmé buckets: many messages share a size, far fewer sizes than messages
        assert len(sizes) < 60
        _, art = c.article(over[0][0])
        head = art[:art.index(b"")]
        names = {h.split(b":", 1)[0].decode().lower() for h in head if b":" in h}
        assert not names & {"to", "cc", "reply-to", "in-reply-to", "references", "content-type"}
    finally:
        c.quit()


def test_duplicate_delivery_gives_one_article(postern_env, inn_site):
    data = b"From: dup@example.net\nSubject: once\n\nonly once\n"
    c = inn_site.client()
    try:
        before = c.group(GROUP)[0]
        ids = set()
        for _ in range(3):
            r = deliver(postern_env, data)
            assert r.returncode == 0, out(r)
            ids.add(DELIVERED.search(out(r)).group(1))
        assert len(ids) == 1
        assert c.group(GROUP)[0] == before + 1
    finally:
        c.quit()


def test_unknown_recipient(postern_env):
    r = deliver(postern_env, b"From: a@b\nSubject: x\n\nx\n", to="nobody@example.org")
    assert r.returncode == 67, out(r)
    assert "unknown recipient" in out(r)
    # the bounce carries this text to the sender: nothing internal in it
    assert "postern." not in out(r) and "newsgroup" not in out(r) and "encrypt" not in out(r), out(r)


# What an MTA accepted and its primary store would keep (these were once refused with 65,
# which an MTA turns into a bounce).
ANY_BYTES = [
    b"", b"this is not a header\n\nbody\n", b" continuation first: x\n\nb\n", b"\r\n",
    b"Sub\x00ject: nul\n\nx\x00y\n", b"From: cr@example.net\rSubject: old Mac\r\rbody\r",
    b"S\xfcbject: 8-bit name\n\n\xff\xfe\n", b"X-Long: " + b"h" * 70000 + b"\n\nbody\n",
    b"x" * 5000,  # a "line" of 5000 bytes without any line end, nor a header
    b"From the desk of nobody, in one line",  # "From " without LF: text, not an mbox line
]


def test_every_byte_sequence_is_a_message(postern_env):
    for data in ANY_BYTES:
        r = deliver(postern_env, data)
        assert r.returncode == 0, (data[:60], out(r))
        r2 = show(postern_env, DELIVERED.search(out(r)).group(1))
        assert r2.returncode == 0, out(r2)
        assert r2.stdout == data  # byte for byte, as delivered
    r = postern_env(["mailbox", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)  # the listing copes with every shape
    assert len(r.stdout.decode(errors="replace").splitlines()) > 100


def test_mbox_from_line_is_dropped(postern_env):
    """Postfix's pipe flag F and procmail put an mbox envelope line first: not the message."""
    r = deliver(postern_env, b"From sender@example.net  Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n")
    assert r.returncode == 0, out(r)
    assert show(postern_env, DELIVERED.search(out(r)).group(1)).stdout == b"Subject: x\n\nbody\n"


def test_too_big_is_the_only_refusal(postern_env, tmp_path):
    """Over max_message_size: 69 (EX_UNAVAILABLE, a bounce for Postfix and Exim alike; 65 would
    say 'data format error'), stderr starting with the enhanced code 5.3.4 Postfix passes on."""
    conf = tmp_path / "small.conf"
    conf.write_text(postern_env.conf.read_text().replace("min_copies = 1\n", "min_copies = 1\nmax_message_size = 4096\n", 1))
    conf.chmod(0o600)
    def run(data):
        return subprocess.run([str(postern_env.bin), "-c", str(conf), "deliver", "--to", USER], input=data,
                              capture_output=True, timeout=60)
    r = run(b"Subject: big\n\n" + b"y" * 5000 + b"\n")
    assert r.returncode == 69, out(r)
    assert r.stderr.decode().startswith("5.3.4 postern: message too big: larger than max_message_size (4096 bytes)"), out(r)
    r = run(b"Subject: fits\n\n" + b"y" * 4000 + b"\n")
    assert r.returncode == 0, out(r)


def test_forged_key_record_is_ignored(postern_env, inn_site):
    """A record posted by someone without the authority key changes nothing."""
    victim = "victim@example.org"
    r = postern_env(["user", "add", victim, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    c = inn_site.client()
    try:
        group = "postern.org.example.victim.encrypt"
        # take the real record, flip the public key, re-post it under another Message-ID
        low = c.group(group)[1]
        _, art = c.article(str(low))
        body = b"".join(line + b"\n" for line in art[art.index(b"") + 1:])
        rec = bytearray(base64.b64decode(body))
        a = rec[7] | rec[6] << 8
        rec[36 + a] ^= 1
        forged = base64.encodebytes(bytes(rec)).replace(b"\n", b"\r\n")
        headers = ("From: mallory@example.net\r\nNewsgroups: %s\r\nSubject: postern key record\r\n"
                   "Message-ID: <k.forged.99@postern.invalid>\r\nPostern-Format: keyrecord 1\r\n\r\n" % group)
        assert c.post(headers.encode() + forged).startswith("240")
    finally:
        c.quit()
    r = deliver(postern_env, b"From: a@b\nSubject: to victim\n\nhello\n", to=victim)
    assert r.returncode == 0, out(r)
    r = postern_env(["mailbox", victim, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, out(r)
    assert "to victim" in r.stdout.decode()


def test_passwd_keeps_old_mail_readable(postern_env, inn_site, delivered):
    new = "a much better passphrase"
    r = postern_env(["user", "passwd", USER, "--password-stdin"], input="wrong password!\n%s\n%s\n" % (new, new))
    assert r.returncode == 77, out(r)
    r = postern_env(["user", "passwd", USER, "--password-stdin"], input="%s\n%s\n" % (PASSWORD, new))
    assert r.returncode == 0, out(r)
    # the new record superseded the old one (Supersedes + Cancel-Key, checked by INN)
    c = inn_site.client()
    try:
        count, low, high, _ = c.group(GROUP + ".encrypt")
        alive = [n for n in range(low, high + 1) if c.stat(n).startswith("223")]
        assert len(alive) == 1, alive
    finally:
        c.quit()
    msgid, data = next(iter(delivered.items()))
    r = show(postern_env, msgid, password=new)
    assert r.returncode == 0, out(r)
    assert r.stdout == data
    r = show(postern_env, msgid, password=PASSWORD)
    assert r.returncode == 77, out(r)
    assert "wrong password" in out(r)


def test_deliver_while_inn_is_down_then_retry(postern_env, inn_site):
    data = b"From: retry@example.net\nSubject: retried\n\nsent while the news server was down\n"
    inn_site.stop()
    try:
        r = deliver(postern_env, data)
        assert r.returncode == 75, out(r)
        assert "try again later" in out(r)
    finally:
        inn_site.start()
    r = deliver(postern_env, data)
    assert r.returncode == 0, out(r)
    msgid = DELIVERED.search(out(r)).group(1)
    r = show(postern_env, msgid, password="a much better passphrase")
    assert r.returncode == 0, out(r)
    assert r.stdout == data


def test_user_del(postern_env, inn_site):
    r = postern_env(["user", "del", "victim@example.org"])
    assert r.returncode == 64, out(r)          # refuses without --yes when not on a terminal
    r = postern_env(["user", "del", "victim@example.org", "--yes"])
    assert r.returncode == 0, out(r)
    r = deliver(postern_env, b"From: a@b\nSubject: x\n\nx\n", to="victim@example.org")
    assert r.returncode == 67, out(r)
