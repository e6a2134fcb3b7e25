"""Messages in folders (issue 13): COPY, MOVE and their UID forms with COPYUID, what Thunderbird
sends for Delete (with and without MOVE) and Empty Trash, a message in two folders, the way
back into the INBOX, flags kept per folder and seen by a second session — against a real INN
site and gateway, with imaplib and a raw socket. Cancelling happens only when no folder holds
the message any more."""
import imaplib
import re
import time

import pytest

USER = "erin.folders@example.org"
PASSWORD = "folder password 1"


def message(n):
    return (b"From: Sender %d <s%d@example.net>\r\nTo: Erin <erin.folders@example.org>\r\n"
            b"Subject: folder test %d\r\nDate: Mon, 2 Nov 2026 10:%02d:00 +0000\r\n"
            b"Message-ID: <folder-%d@example.net>\r\n\r\nbody of message %d\r\n" % (n, n, n, n, n, n))


@pytest.fixture(scope="module")
def mailbox(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for n in range(1, 9):
        r = postern_env(["deliver", "--to", USER], input=message(n))
        assert r.returncode == 0, r.stderr
    return gateway


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=20)
    c.login(USER, PASSWORD)
    return c


def by_subject(c):
    """{subject number: (uid, flags)} of the selected folder."""
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = {}
    for d in data:
        if isinstance(d, tuple):
            uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1).decode().split())
            out[int(re.search(rb"folder test (\d+)", d[1]).group(1))] = (uid, flags)
    return out


def body(c, uid):
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK" and isinstance(data[0], tuple), data
    return data[0][1]


def select(c, name):
    typ, data = c.select(name)
    assert typ == "OK", data
    return int(data[0])


def msgid_on_spool(inn_site, n):
    """The article of message n, found by opening nothing: its Message-ID from the overview,
    matched through the size order is not possible, so the test looks for every mail article
    and returns them all; callers compare counts."""
    with inn_site.client() as nn:
        groups = [g for g, *_ in nn.list_active("postern.org.example.*")
                  if "erin" in g and not g.endswith(".encrypt")]
        nn.group(groups[0])
        return [o[4] for o in nn.over("1-") if o[4].startswith("<m.")]


def raw(c, command):
    """Sends one command on imaplib's connection; every line up to the tagged one (imaplib
    keeps no tagged response text, where COPYUID is)."""
    tag = c._new_tag().decode()
    c.send(("%s %s\r\n" % (tag, command)).encode())
    lines = []
    while True:
        line = c.readline().decode().rstrip("\r\n")
        lines.append(line)
        if line.startswith(tag + " "):
            return lines, line[len(tag) + 1:]


def test_thunderbird_delete_with_move(mailbox):
    """Delete with MOVE advertised: UID STORE +FLAGS (\\Seen), then UID MOVE to Trash. The
    untagged OK [COPYUID] comes before the EXPUNGE (RFC 6851 4.3); Trash has the message, byte
    for byte, \\Seen kept."""
    c = login(mailbox)
    typ, caps = c.capability()
    assert b" MOVE" in caps[0], caps
    select(c, "INBOX")
    inbox = by_subject(c)
    uid = inbox[1][0]
    original = body(c, uid)
    typ, data = c.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
    assert typ == "OK", data
    trash_next = int(re.search(rb"UIDNEXT (\d+)", c.status("Trash", "(UIDNEXT)")[1][0]).group(1))
    lines, tagged = raw(c, "UID MOVE %d Trash" % uid)
    validity = int(re.search(rb"UIDVALIDITY (\d+)", c.status("Trash", "(UIDVALIDITY)")[1][0]).group(1))
    assert lines[0] == "* OK [COPYUID %d %d %d] Moved" % (validity, uid, trash_next), lines
    assert re.match(r"\* \d+ EXPUNGE$", lines[1]), lines
    assert tagged == "OK MOVE completed", lines
    assert 1 not in by_subject(c)
    select(c, "Trash")
    trash = by_subject(c)
    assert trash[1][0] == trash_next and "\\Seen" in trash[1][1], trash
    assert body(c, trash_next) == original
    c.logout()


def test_thunderbird_delete_without_move_and_empty_trash(mailbox, inn_site):
    """The sequence of a client without MOVE: UID COPY to Trash, +FLAGS (\\Deleted), EXPUNGE;
    then Empty Trash: every message \\Deleted and EXPUNGE there. The articles stay on the
    spool while a folder holds them, and are cancelled once none does."""
    before = len(msgid_on_spool(inn_site, 2))
    c = login(mailbox)
    select(c, "INBOX")
    uid = by_subject(c)[2][0]
    typ, data = c.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
    assert typ == "OK"
    lines, tagged = raw(c, "UID COPY %d Trash" % uid)
    assert re.match(r"OK \[COPYUID \d+ %d \d+\] COPY completed$" % uid, tagged), lines
    typ, data = c.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    assert typ == "OK"
    typ, data = c.expunge()
    assert typ == "OK" and data != [None], data
    assert 2 not in by_subject(c)
    assert len(msgid_on_spool(inn_site, 2)) == before, "cancelled while Trash holds it"
    n = select(c, "Trash")
    assert n >= 1
    assert 2 in by_subject(c)
    typ, data = c.store("1:*", "+FLAGS", "(\\Deleted)")
    assert typ == "OK", data
    typ, data = c.expunge()
    assert typ == "OK" and len([d for d in data if d]) == n, data
    assert by_subject(c) == {}
    typ, data = c.status("Trash", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0], data
    c.logout()
    deadline = time.monotonic() + 30
    while len(msgid_on_spool(inn_site, 2)) != before - n:
        assert time.monotonic() < deadline, "Trash emptied, articles not cancelled"
        time.sleep(0.3)


def test_message_in_two_folders_and_back_to_the_inbox(mailbox, inn_site):
    """COPY to Archive and to Trash; expunged from Trash and from the INBOX it stays in Archive
    (and on the spool); MOVE from Archive back to the INBOX shows it there again, under a new
    UID, with its flags."""
    c = login(mailbox)
    select(c, "INBOX")
    uid = by_subject(c)[3][0]
    typ, data = c.uid("STORE", str(uid), "+FLAGS", "(\\Flagged $Work)")
    assert typ == "OK"
    for folder in ("Archive", "Trash"):
        typ, data = c.uid("COPY", str(uid), folder)
        assert typ == "OK", data
    spool = len(msgid_on_spool(inn_site, 3))
    select(c, "Trash")
    typ, data = c.uid("STORE", str(by_subject(c)[3][0]), "+FLAGS", "(\\Deleted)")
    c.expunge()
    select(c, "INBOX")
    c.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    c.expunge()
    time.sleep(1)
    assert len(msgid_on_spool(inn_site, 3)) == spool, "cancelled while Archive holds it"
    select(c, "Archive")
    archived = by_subject(c)[3]
    assert {"\\Flagged", "$Work"} <= archived[1], archived
    inbox_next = int(re.search(rb"UIDNEXT (\d+)", c.status("INBOX", "(UIDNEXT)")[1][0]).group(1))
    typ, data = c.uid("MOVE", str(archived[0]), "INBOX")
    assert typ == "OK", data
    assert 3 not in by_subject(c)
    select(c, "INBOX")
    back = by_subject(c)[3]
    assert back[0] >= inbox_next and {"\\Flagged", "$Work"} <= back[1], (back, inbox_next)
    c.logout()


def test_flags_in_a_folder_reach_another_session(mailbox):
    """STORE in Trash from one session: a second session with Trash selected hears the FETCH
    (NOOP), and EXPUNGE there too."""
    a, b = login(mailbox), login(mailbox)
    select(a, "INBOX")
    uid = by_subject(a)[4][0]
    typ, data = a.uid("MOVE", str(uid), "Trash")
    assert typ == "OK", data
    select(a, "Trash")
    select(b, "Trash")
    tuid = by_subject(a)[4][0]
    typ, data = a.uid("STORE", str(tuid), "+FLAGS", "(\\Answered)")
    assert typ == "OK" and b"\\Answered" in data[0], data
    typ, data = b.noop()
    assert typ == "OK"
    fetches = b.untagged_responses.pop("FETCH", [])
    assert any(b"\\Answered" in f for f in fetches), fetches
    a.uid("STORE", str(tuid), "+FLAGS.SILENT", "(\\Deleted)")
    a.expunge()
    b.noop()
    assert b.untagged_responses.pop("EXPUNGE", []), "no EXPUNGE in the second session"
    a.logout()
    b.logout()


def test_copy_refusals(mailbox):
    c = login(mailbox)
    select(c, "INBOX")
    uid = by_subject(c)[5][0]
    typ, data = c.uid("COPY", str(uid), "No/Such/Folder")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]"), data
    typ, data = c.uid("MOVE", str(uid), "INBOX")
    assert typ == "NO" and data[0].startswith(b"[CANNOT]"), data
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        c.copy("0:x", "Trash")
    typ, data = c.uid("COPY", "999999", "Trash")  # no such UID: nothing to copy, still OK
    assert typ == "OK", data
    c.select("INBOX", readonly=True)
    typ, data = c.uid("MOVE", str(uid), "Trash")
    assert typ == "NO" and b"READ-ONLY" in data[0], data
    typ, data = c.uid("COPY", str(uid), "Archive")  # copying out of a read-only view is fine
    assert typ == "OK", data
    c.logout()


def test_folders_survive_a_gateway_restart(mailbox):
    c = login(mailbox)
    select(c, "INBOX")
    uid = by_subject(c)[6][0]
    typ, data = c.uid("MOVE", str(uid), "Drafts")
    assert typ == "OK", data
    select(c, "Drafts")
    before = by_subject(c)
    c.logout()
    mailbox.stop()
    mailbox.start()
    c = login(mailbox)
    select(c, "Drafts")
    assert by_subject(c) == before
    select(c, "INBOX")
    assert 6 not in by_subject(c)
    c.logout()
