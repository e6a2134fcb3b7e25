"""Real IMAP clients against the gateway: mbsync (isync), fetchmail, curl, and Python imaplib
under load (parallel sessions, pipelining, IDLE seeing other sessions' STOREs, a 2 MB message
in partials, nested message/rfc822 sections). Every test has its own user, so the clients'
flag changes do not meet; messages arrive through `postern deliver`.

Every user of the module and its first mail are made before the gateway's first login (the
`gw` fixture), so the gateway's kept worker NNTP connections are opened after every group has
mail. Reason: INN 2.7.1's nnrpd was seen answering GROUP/LISTGROUP on an already open
connection with the old, empty state of a group that got its first articles after that
connection looked at other groups (a new connection saw them at once), and a user created
after the gateway's workers connected then failed to log in ("no key record") or saw an empty
INBOX. Mail delivered later into groups that already held mail is seen (the late deliveries
below rely on that)."""
import base64
import concurrent.futures
import imaplib
import os
import re
import socket
import subprocess
import threading
import time

import pytest

PASSWORD = "client password 7"


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def lf(raw):
    return raw.replace(b"\r\n", b"\n")


def served(raw):
    """What the gateway serves for a delivered message: CRLF line ends, and a CRLF added to a
    last line without one (so RFC822.SIZE, POP3 sizes and the bytes sent agree)."""
    raw = crlf(raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def add_user(env, user):
    r = env(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    return user


def deliver(env, user, raw):
    r = env(["deliver", "--to", user], input=raw)
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))


def login(gw, user, timeout=30):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=timeout)
    c.login(user, PASSWORD)
    return c


def fetch_uids(c):
    typ, data = c.uid("SEARCH", "ALL")
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def varied_messages(tag, n=20):
    """n different messages: LF and CRLF line ends, 8-bit, long lines, MIME, a dot line, a
    'From ' line, an empty body, no final newline, a bigger one."""
    out = []
    for i in range(n):
        hdr = ("From: Sender %d <sender%d@example.net>\nTo: %s\nSubject: %s message %d\n"
               "Date: Mon, 2 Nov 2026 10:%02d:00 +0100\nMessage-ID: <%s-%d@example.net>\n"
               % (i, i, tag, tag, i, i, tag, i)).encode()
        k = i % 10
        if k == 0:
            raw = hdr + b"\nplain body %d\n" % i
        elif k == 1:
            raw = crlf(hdr + b"\ncrlf body\n.\n..leading dots\nFrom the start of a line\n")
        elif k == 2:
            raw = (hdr + b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                   b"Content-Transfer-Encoding: 8bit\n\n" + "Grüße, Ærøskøbing, 日本語 %d\n".encode() % i)
        elif k == 3:
            raw = hdr + b"\n" + b"".join(b"%05d " % j + b"x" * 990 + b"\n" for j in range(30))
        elif k == 4:
            att = base64.encodebytes(bytes(range(256)) * 40)
            raw = (hdr + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n"
                   b"--b%d\nContent-Type: text/plain\n\nsee attachment\n--b%d\n"
                   b"Content-Type: application/octet-stream; name=\"x.bin\"\n"
                   b"Content-Transfer-Encoding: base64\n\n" % (i, i, i) + att + b"--b%d--\n" % i)
        elif k == 5:
            raw = hdr + b"\n"  # empty body
        elif k == 6:
            raw = hdr + b"\nno final newline %d" % i
        elif k == 7:
            raw = hdr + b"X-Folded: a\n\tb\n c\n\n\n\nbody after blank lines\n\n"
        elif k == 8:
            raw = hdr + b"\n" + os.urandom(96).hex().encode() * 3000 + b"\n"  # ~576 KB, one part
        else:
            raw = crlf(hdr + b"Content-Type: text/html\n\n<p>html %d</p>\n" % i)
        out.append(raw)
    return out


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)


def curl_messages(user):
    u = user.encode()
    return [b"From: a@example.net\nTo: %s\nSubject: apple pie\n\nfirst\n" % u,
            b"From: b@example.net\nTo: %s\nSubject: banana bread\n\nsecond\n" % u,
            crlf(b"From: c@example.net\nTo: %s\nSubject: cherry apple\nMIME-Version: 1.0\n"
                 b"Content-Type: multipart/alternative; boundary=\"q\"\n\n--q\nContent-Type: text/plain\n\n"
                 b"plain\n--q\nContent-Type: text/html\n\n<b>html</b>\n--q--\n" % u)]


def big_message(user):
    blob = os.urandom(1_450_000)
    raw = crlf(b"From: big@example.net\nTo: %s\nSubject: big one\nMIME-Version: 1.0\n"
               b"Content-Type: multipart/mixed; boundary=\"=_big\"\n\n--=_big\nContent-Type: text/plain\n\n"
               b"the attachment follows\n--=_big\nContent-Type: application/octet-stream; name=\"blob.bin\"\n"
               b"Content-Disposition: attachment; filename=\"blob.bin\"\nContent-Transfer-Encoding: base64\n\n"
               % user.encode() + base64.encodebytes(blob) + b"--=_big--\n")
    return raw, blob


NESTED_INNER = (b"From: Inner <inner@example.org>\r\nSubject: inner subject\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
                b"--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ninner plain text\r\n"
                b"--alt\r\nContent-Type: text/html\r\n\r\n<p>inner html</p>\r\n--alt--\r\n")
NESTED_FLAT = b"From: flat@example.org\r\nSubject: flat inner\r\n\r\nflat inner body\r\n"


def nested_message(user):
    return (b"From: outer@example.net\r\nTo: %s\r\nSubject: forwarding\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"out\"\r\n\r\n"
            b"--out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
            b"--out\r\nContent-Type: message/rfc822\r\n\r\n" % user.encode() + NESTED_INNER +
            b"\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n" + NESTED_FLAT + b"--out--\r\n")


MBSYNC_IMAPS, MBSYNC_STARTTLS = "mbsync.imaps@example.org", "mbsync.starttls@example.org"
FETCHMAIL, CURL = "fetchmail.user@example.org", "curl.user@example.org"
STRESS, PIPELINE = "stress.user@example.org", "pipeline.user@example.org"
BIG, NESTED = "big.user@example.org", "nested.user@example.org"


@pytest.fixture(scope="module")
def mailboxes(postern_env):
    """user -> the messages delivered to it, in delivery (= UID) order; plus BIG's blob."""
    boxes = {
        MBSYNC_IMAPS: varied_messages(MBSYNC_IMAPS, 20),
        MBSYNC_STARTTLS: varied_messages(MBSYNC_STARTTLS, 6),
        FETCHMAIL: varied_messages(FETCHMAIL, 8),
        CURL: curl_messages(CURL),
        STRESS: [b"From: s%d@example.net\nSubject: stress %d\n\nbody %d\n" % (i, i, i) for i in range(8)],
        PIPELINE: [b"From: p@example.net\nSubject: pipe %d\n\npiped body %d\n" % (i, i) for i in range(3)],
        NESTED: [nested_message(NESTED)],
    }
    raw, blob = big_message(BIG)
    boxes[BIG] = [raw]

    def fill(user):
        add_user(postern_env, user)
        for m in boxes[user]:
            deliver(postern_env, user, m)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for f in [ex.submit(fill, u) for u in boxes]:
            f.result()
    boxes["blob"] = blob
    return boxes


@pytest.fixture(scope="module")
def gw(mailboxes, gateway):
    """The module's gateway, first used after every mailbox above exists (module docstring)."""
    return gateway


# ---------------------------------------------------------------------------------- mbsync

def mbsync_conf(gw, user, tmp, tls_type, relay):
    maildir = tmp / "mail"
    maildir.mkdir(exist_ok=True)
    r = relay(gw.addr, gw.imaps_port if tls_type == "IMAPS" else gw.imap_port)
    conf = tmp / "mbsyncrc"
    conf.write_text(
        "IMAPAccount gw\n"
        "Host localhost\nPort %d\nUser %s\nPass \"%s\"\nAuthMechs PLAIN\n"
        "SSLType %s\nCertificateFile %s\nSystemCertificates no\nTimeout 30\n\n"
        "IMAPStore gw-far\nAccount gw\n\n"
        "MaildirStore local\nPath %s/\nInbox %s/INBOX\n\n"
        "Channel pull\nFar :gw-far:INBOX\nNear :local:INBOX\nCreate Near\nSync Pull New\n"
        "SyncState *\n"
        % (r.port, user, PASSWORD, tls_type, gw.cert, maildir, maildir))
    conf.chmod(0o600)
    return conf, maildir / "INBOX"


def mbsync(conf, gw):
    r = run(["mbsync", "-c", str(conf), "-a"], timeout=120, env=dict(os.environ, HOME=str(conf.parent)))
    assert r.returncode == 0, "mbsync failed (%d):\n%s%s\n--- gateway log:\n%s" % (
        r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), gw.log_text()[-4000:])
    return r


def maildir_files(box):
    """far (server) UID -> file contents, through mbsync's sync state (the ,U= in a maildir
    file name is the near side's UID). mbsync inserts one X-TUID: field at the end of the
    header of every message it stores (to find it again after an interrupted run): dropped."""
    near_to_far = {}
    state = box / ".mbsyncstate"
    for line in state.read_text().splitlines() if state.exists() else []:
        m = re.fullmatch(r"(\d+) (\d+) .*", line)
        if m:
            near_to_far[int(m.group(2))] = int(m.group(1))
    files = {}
    for sub in ("new", "cur"):
        d = box / sub
        if d.is_dir():
            for f in d.iterdir():
                m = re.search(r",U=(\d+)", f.name)
                assert m, f.name
                data = f.read_bytes()
                data, n = re.subn(rb"(?m)^X-TUID: [A-Za-z0-9+/]{12}\r?\n", b"", data, count=1)
                assert n == 1, data[:300]
                files[near_to_far[int(m.group(1))]] = data
    return files


def mbsync_uid_map(gw, user):
    """UID -> message bytes as the gateway serves them (BODY.PEEK[], so flags stay)."""
    c = login(gw, user)
    c.select("INBOX", readonly=True)
    out = {}
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    for d in data:
        if isinstance(d, tuple):
            out[int(re.search(rb"UID (\d+)", d[0]).group(1))] = d[1]
    c.logout()
    return out


@pytest.mark.parametrize("tls_type", ["IMAPS", "STARTTLS"])
def test_mbsync_pulls_inbox(gw, mailboxes, postern_env, tmp_path, tls_type, relay):
    gateway = gw
    user = MBSYNC_IMAPS if tls_type == "IMAPS" else MBSYNC_STARTTLS
    msgs = mailboxes[user]
    conf, box = mbsync_conf(gateway, user, tmp_path, tls_type, relay)

    mbsync(conf, gateway)
    got = maildir_files(box)
    by_uid = mbsync_uid_map(gateway, user)
    assert sorted(got) == sorted(by_uid) and len(got) == len(msgs)
    # in delivery order = UID order
    for uid, raw in zip(sorted(got), msgs):
        assert by_uid[uid] == served(raw)
        assert lf(got[uid]) == lf(served(raw)), "UID %d differs" % uid

    # nothing new: no new files, the same set
    mbsync(conf, gateway)
    assert maildir_files(box) == got

    # a message delivered afterwards arrives, and only it
    late = b"From: late@example.net\nTo: %s\nSubject: late arrival\n\nlate body\n" % user.encode()
    deliver(postern_env, user, late)
    mbsync(conf, gateway)
    again = maildir_files(box)
    new = set(again) - set(got)
    assert len(new) == 1 and {k: again[k] for k in got} == got
    assert lf(again[new.pop()]) == lf(late)
    # BODY.PEEK: mbsync's pulls left the server's flags alone
    c = login(gateway, user)
    c.select("INBOX", readonly=True)
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and all(b"\\Seen" not in d for d in data), data
    c.logout()


# ------------------------------------------------------------------------------- fetchmail

def fetchmail(rc, home, gw):
    r = run(["fetchmail", "--nodetach", "--nosyslog", "-f", str(rc), "-v"], timeout=120,
            env=dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home)))
    out = (r.stdout + r.stderr).decode(errors="replace")
    # 0: mail retrieved, 1: no new mail; anything else is a failure
    assert r.returncode in (0, 1), "fetchmail exit %d:\n%s\n--- gateway log:\n%s" % (
        r.returncode, out, gw.log_text()[-4000:])
    return r.returncode, out


def strip_fetchmail_received(msg):
    """fetchmail prepends one Received: field (folded over several lines)."""
    assert msg.startswith(b"Received: "), msg[:200]
    lines = msg.split(b"\n")
    k = 1
    while lines[k][:1] in (b" ", b"\t"):
        k += 1
    assert b"fetchmail" in b"\n".join(lines[:k])
    return b"\n".join(lines[k:])


def fetchmail_form(raw):
    return lf(served(raw))


def test_fetchmail_starttls_keep_then_unseen(gw, mailboxes, postern_env, tmp_path):
    gateway, user = gw, FETCHMAIL
    msgs = mailboxes[user]
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir(mode=0o700)
    out.mkdir()
    fp = subprocess.run(["openssl", "x509", "-in", str(gateway.cert), "-noout", "-fingerprint", "-md5"],
                        capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]

    def write_rc(fetchall):
        rc = home / "fetchmailrc"
        rc.write_text(
            "set no bouncemail\n"
            "poll %s proto IMAP port %d auth password timeout 30\n"
            "  user \"%s\" there with password \"%s\" is root here\n"
            "  sslproto \"TLS1.2+\" sslcertck sslcertfile \"%s\" sslcommonname \"localhost\"\n"
            "  sslfingerprint \"%s\"\n"
            "  keep %s norewrite\n"
            "  mda \"cat > $(mktemp %s/msg.XXXXXX)\"\n"
            % (gateway.addr, gateway.imap_port, user, PASSWORD, gateway.cert, fp,
               "fetchall" if fetchall else "nofetchall", out))
        rc.chmod(0o600)
        return rc

    rc, log = fetchmail(write_rc(True), home, gateway)
    assert rc == 0, log
    assert "STARTTLS" in log, log
    got = sorted((strip_fetchmail_received(f.read_bytes()) for f in out.iterdir()), key=len)
    assert len(got) == len(msgs), log
    # fetchmail hands the MDA LF line ends
    assert got == sorted((fetchmail_form(m) for m in msgs), key=len)

    # fetchmail set \Seen on everything it delivered (and kept it on the server)
    c = login(gateway, user)
    c.select("INBOX", readonly=True)
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and len(data) == len(msgs) and all(b"\\Seen" in d for d in data), data
    c.logout()

    # without fetchall: nothing unseen, nothing fetched
    for f in out.iterdir():
        f.unlink()
    rc, log = fetchmail(write_rc(False), home, gateway)
    assert rc == 1 and not list(out.iterdir()), log

    # a new message is the only one fetched
    late = b"From: late@example.net\nTo: %s\nSubject: late for fetchmail\n\nlate\n" % user.encode()
    deliver(postern_env, user, late)
    rc, log = fetchmail(write_rc(False), home, gateway)
    files = list(out.iterdir())
    assert rc == 0 and len(files) == 1, log
    assert strip_fetchmail_received(files[0].read_bytes()) == late


# ------------------------------------------------------------------------------------ curl

def curl(gw, url, *args, user):
    r = run(["curl", "-sS", "--max-time", "30", "--cacert", str(gw.cert), "-u", "%s:%s" % (user, PASSWORD),
             *args, url], timeout=60)
    assert r.returncode == 0, (url, args, r.stderr.decode(errors="replace"), gw.log_text()[-3000:])
    return r.stdout


def test_curl_fetch_search_custom_and_starttls(gw, mailboxes):
    gateway, user = gw, CURL
    msgs = mailboxes[user]
    c = login(gateway, user)
    c.select("INBOX", readonly=True)
    u1, u2, u3 = fetch_uids(c)
    c.logout()
    base = "imaps://%s:%d/INBOX" % (gateway.addr, gateway.imaps_port)

    # ;UID=n fetches BODY[] of that UID (UIDs equal sequence numbers in this new mailbox, so
    # check that curl really said UID FETCH)
    r = run(["curl", "-v", "-sS", "--max-time", "30", "--cacert", str(gateway.cert), "-u", "%s:%s" % (user, PASSWORD),
             "%s;UID=%d" % (base, u2)], timeout=60)
    assert r.returncode == 0 and r.stdout == served(msgs[1]), r.stderr.decode(errors="replace")
    assert re.search(rb"> \S+ UID FETCH %d BODY\[\]" % u2, r.stderr), r.stderr.decode(errors="replace")
    assert curl(gateway, "%s;UID=%d" % (base, u3), user=user) == served(msgs[2])
    assert curl(gateway, "%s;UID=%d;SECTION=2" % (base, u3), user=user) == b"<b>html</b>"
    assert curl(gateway, "%s;UID=%d;SECTION=HEADER.FIELDS%%20(SUBJECT)" % (base, u1), user=user) == \
        b"Subject: apple pie\r\n\r\n"

    # SEARCH through the URL query
    out = curl(gateway, base + "?SUBJECT%20apple", user=user).decode()
    assert re.fullmatch(r"\* SEARCH 1 3\r\n", out), out
    out = curl(gateway, base + "?UID%%20%d" % u2, user=user).decode()
    assert re.fullmatch(r"\* SEARCH 2\r\n", out), out

    # a custom command: the untagged responses are the output
    out = curl(gateway, base, "-X", "UID FETCH 1:* (FLAGS)", user=user).decode()
    lines = out.splitlines()
    assert len(lines) == 3, out
    flags = {int(m.group(1)): m.group(2) for m in
             (re.fullmatch(r"\* \d+ FETCH \((?=.*UID (\d+))(?=.*FLAGS \(([^)]*)\)).*\)", ln) for ln in lines)}
    assert sorted(flags) == [u1, u2, u3], out
    # curl's BODY[] fetches (not PEEK) set \Seen
    assert "\\Seen" in flags[u2] and "\\Seen" in flags[u3], out

    # STARTTLS on the plain port, required
    plain = "imap://%s:%d/INBOX" % (gateway.addr, gateway.imap_port)
    assert curl(gateway, "%s;UID=%d" % (plain, u1), "--ssl-reqd", user=user) == served(msgs[0])
    out = curl(gateway, plain + "?SUBJECT%20banana", "--ssl-reqd", user=user).decode()
    assert out == "* SEARCH 2\r\n", out
    # without TLS the plain port refuses the login (LOGINDISABLED) and curl fails
    r = run(["curl", "-sS", "--max-time", "20", "-u", "%s:%s" % (user, PASSWORD), "%s;UID=%d" % (plain, u1)],
            timeout=60)
    assert r.returncode != 0 and not r.stdout


# ----------------------------------------------------------- imaplib: load, IDLE, big, nested

def test_parallel_sessions_and_idle_sees_flag_updates(gw):
    gateway, user = gw, STRESS

    idler = login(gateway, user)
    typ, data = idler.select("INBOX")
    assert data == [b"8"]
    tag = idler._new_tag().decode()
    idler.send(("%s IDLE\r\n" % tag).encode())
    assert idler.readline().startswith(b"+")
    idle_lines, stop = [], threading.Event()
    idler.sock.settimeout(0.5)

    def read_idle():
        buf = b""
        while not stop.is_set():
            try:
                chunk = idler.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            if not chunk:
                break
            buf += chunk
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                idle_lines.append(line)

    reader = threading.Thread(target=read_idle, daemon=True)  # ends with the connection if a check fails
    reader.start()

    errors = []
    rounds = 15

    def worker(w):
        try:
            c = login(gateway, user)
            typ, data = c.select("INBOX")
            assert typ == "OK" and data == [b"8"], data
            kw = "$w%d" % w
            for r in range(rounds):
                seq = (w + r) % 8 + 1
                typ, data = c.fetch("1:*", "(UID FLAGS)")
                assert typ == "OK" and len([d for d in data if d]) >= 8, data
                typ, data = c.store(str(seq), "+FLAGS", "(%s)" % kw)
                assert typ == "OK" and kw.encode() in b" ".join(d for d in data if d), data
                typ, data = c.fetch(str(seq), "(BODY.PEEK[HEADER.FIELDS (Subject)] RFC822.SIZE)")
                # other sessions' flag changes may come first, as untagged FETCH (FLAGS ...)
                lits = [d[1] for d in data if isinstance(d, tuple)]
                assert typ == "OK" and lits == [b"Subject: stress %d\r\n\r\n" % (seq - 1)], data
                typ, data = c.store(str(seq), "-FLAGS.SILENT", "(%s)" % kw)
                assert typ == "OK", data
                typ, data = c.noop()
                assert typ == "OK"
            typ, data = c.store(str(w + 1), "+FLAGS", "($done%d \\Flagged)" % w)
            assert typ == "OK", data
            c.logout()
        except Exception as e:  # surfaced below
            errors.append((w, repr(e)))

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(5)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors

    # the idler sees every $doneN within a second or two
    deadline = time.monotonic() + 5
    want = {w + 1: b"$done%d" % w for w in range(5)}
    while time.monotonic() < deadline:
        seen = {s for s, k in want.items()
                if any(re.match(rb"\* %d FETCH \(.*FLAGS \([^)]*%s" % (s, re.escape(k)), ln) for ln in idle_lines)}
        if seen == set(want):
            break
        time.sleep(0.1)
    stop.set()
    reader.join()
    assert seen == set(want), idle_lines
    fetch_lines = [ln for ln in idle_lines if b" FETCH " in ln]
    # every worker's +FLAGS $wN (not silent) was reported to the idler at least once
    for w in range(5):
        assert any(b"$w%d" % w in ln for ln in fetch_lines), (w, fetch_lines)
    assert all(re.fullmatch(rb"\* \d+ FETCH \(FLAGS \([^()]*\)\)", ln) or re.fullmatch(
        rb"\* \d+ FETCH \((UID \d+ )?FLAGS \([^()]*\)( UID \d+)?\)", ln) for ln in fetch_lines), fetch_lines
    # the last FLAGS the idler saw for each message = the final state
    last = {}
    for ln in fetch_lines:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", ln)
        last[int(m.group(1))] = set(m.group(2).split())
    idler.sock.settimeout(20)
    idler.send(b"DONE\r\n")
    while True:
        line = idler.readline()
        if line.startswith(tag.encode()):
            assert b"OK" in line, line
            break
    typ, data = idler.fetch("1:8", "(FLAGS)")
    final = {int(re.match(rb"(\d+) ", d).group(1)): set(re.search(rb"FLAGS \(([^)]*)\)", d).group(1).split())
             for d in data}
    for s, flags in last.items():
        assert final[s] - {b"\\Recent"} == flags - {b"\\Recent"}, (s, final[s], flags)
    for w in range(5):
        assert final[w + 1] >= {b"$done%d" % w, b"\\Flagged"} and b"$w%d" % w not in final[w + 1]
    idler.logout()
    assert time.monotonic() - t0 < 40


def test_pipelined_commands_answer_in_order(gw):
    gateway, user = gw, PIPELINE
    sock = gateway.ssl_context().wrap_socket(socket.create_connection((gateway.addr, gateway.imaps_port), timeout=20))
    buf = b""

    def read_until(tag):
        nonlocal buf
        lines = []
        while True:
            while b"\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, (tag, lines, buf)
                buf += chunk
            line, buf = buf.split(b"\r\n", 1)
            m = re.search(rb"\{(\d+)\}$", line)
            if m:  # a literal: read it whole into the line
                n = int(m.group(1))
                while len(buf) < n:
                    chunk = sock.recv(65536)
                    assert chunk
                    buf += chunk
                line += b"\r\n" + buf[:n]
                buf = buf[n:]
                while b"\r\n" not in buf:
                    buf += sock.recv(65536)
                rest, buf = buf.split(b"\r\n", 1)
                line += rest
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    read_until(b"*")  # greeting
    cmds = [b"a0 LOGIN %s {%d+}\r\n%s" % (user.encode(), len(PASSWORD), PASSWORD.encode()),
            b"a1 SELECT INBOX"]
    for i in range(40):
        k = i % 5
        if k == 0:
            cmds.append(b"b%d FETCH 1:* (UID FLAGS)" % i)
        elif k == 1:
            cmds.append(b"b%d STORE %d +FLAGS ($p%d)" % (i, i % 3 + 1, i))
        elif k == 2:
            cmds.append(b"b%d FETCH %d BODY.PEEK[TEXT]" % (i, i % 3 + 1))
        elif k == 3:
            cmds.append(b"b%d UID SEARCH BODY \"piped body\"" % i)
        else:
            cmds.append(b"b%d NOOP" % i)
    cmds.append(b"z LOGOUT")
    sock.sendall(b"".join(c + b"\r\n" for c in cmds))
    for c in cmds:
        tag = c.split(b" ", 1)[0]
        lines = read_until(tag)
        assert lines[-1].startswith(tag + b" OK"), (c, lines)
        if b"BODY.PEEK[TEXT]" in c:
            n = int(c.split()[2])
            assert any(b"piped body %d" % (n - 1) in ln for ln in lines), lines
        if b"SEARCH" in c:
            assert any(re.fullmatch(rb"\* SEARCH \d+ \d+ \d+", ln) for ln in lines), lines
    sock.close()


def test_two_megabyte_message_in_partials(gw, mailboxes):
    gateway, user = gw, BIG
    (raw,), blob = mailboxes[BIG], mailboxes["blob"]
    assert 1_950_000 < len(raw) < 2_100_000
    c = login(gateway, user, timeout=60)
    c.select("INBOX")
    (uid,) = fetch_uids(c)
    typ, data = c.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert int(re.search(rb"RFC822.SIZE (\d+)", data[0][0]).group(1)) == len(raw)
    assert data[0][1] == raw
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[]<0.1000000>)")
    assert b"BODY[]<0> {1000000}" in data[0][0], data[0][0]
    first = data[0][1]
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[]<1000000.2000000>)")
    assert b"BODY[]<1000000> {%d}" % (len(raw) - 1000000) in data[0][0], data[0][0]
    assert first + data[0][1] == raw
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[]<3000000.10>)")
    assert typ == "OK" and data[0][1] == b"", data
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[2] BODYSTRUCTURE)")
    assert base64.decodebytes(data[0][1]) == blob
    assert b'"application" "octet-stream" ("name" "blob.bin") NIL NIL "base64" %d' % len(data[0][1]) in data[1]
    typ, data = c.uid("FETCH", str(uid), "(FLAGS)")
    assert b"\\Seen" not in data[0]
    # BODY[]<0.0>: RFC 3501 (and 9051) partial is "<" number "." nz-number ">": a zero count
    # is a syntax error (BAD), and the failed command sets no \Seen
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c.uid("FETCH", str(uid), "(BODY[]<0.0>)")
    typ, data = c.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK" and b"\\Seen" not in data[0], data
    # the smallest partial, <0.1>, serves one octet and sets \Seen
    typ, data = c.uid("FETCH", str(uid), "(BODY[]<0.1>)")
    assert typ == "OK" and b"BODY[]<0> {1}" in data[0][0] and data[0][1] == raw[:1], data
    flags = b" ".join(d if isinstance(d, bytes) else d[0] for d in data)
    assert b"\\Seen" in flags, data
    c.logout()


def test_nested_message_rfc822_sections(gw, mailboxes):
    gateway, user = gw, NESTED
    inner, flat = NESTED_INNER, NESTED_FLAT
    c = login(gateway, user)
    c.select("INBOX", readonly=True)
    (uid,) = fetch_uids(c)

    def section(spec):
        typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[%s])" % spec)
        assert typ == "OK", (spec, data)
        assert isinstance(data[0], tuple) and (b"BODY[%s] {" % spec.encode()) in data[0][0], (spec, data)
        return data[0][1]

    assert section("1") == b"see below"
    assert section("2") == inner
    assert section("2.HEADER") == inner.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert section("2.TEXT") == inner.split(b"\r\n\r\n", 1)[1]
    assert section("2.1") == b"inner plain text"
    assert section("2.2") == b"<p>inner html</p>"
    assert section("2.1.MIME") == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert section("2.HEADER.FIELDS (SUBJECT)") == b"Subject: inner subject\r\n\r\n"
    assert section("2.MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    # message/rfc822 with a non-multipart body: 3.1 is that body
    assert section("3") == flat.rstrip(b"\r\n")
    assert section("3.1") == b"flat inner body"
    assert section("3.TEXT") == b"flat inner body"
    typ, data = c.uid("FETCH", str(uid), "(BODYSTRUCTURE)")
    bs = data[0]
    assert b'("message" "rfc822" NIL NIL NIL "7bit" %d (NIL "inner subject" ' % len(inner) in bs, bs.decode()
    assert b'"alternative" ("boundary" "alt") NIL NIL NIL) 14 NIL NIL NIL NIL)' in bs, bs.decode()
    assert b'("message" "rfc822" NIL NIL NIL "7bit" 62 (NIL "flat inner" ' in bs, bs.decode()
    c.logout()
