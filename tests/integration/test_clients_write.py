"""Real clients changing the mailbox (issue 13): mutt deletes with \\Deleted + EXPUNGE and saves
to folders with UID COPY; mbsync with `Sync All` carries local changes, new local messages and
moves to the server, and a second run does nothing. Everything is checked afterwards from the
server's side with imaplib."""
import imaplib
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest


PASSWORD = "client write password"
MUTT_USER = "mutt.writer@example.org"


def add_user(env, user):
    r = env(["user", "add", user, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr


def deliver(env, user, subject):
    raw = (b"From: sender@example.net\nTo: %s\nSubject: %s\nMessage-ID: <%s@example.net>\n\nbody of %s\n"
           % (user.encode(), subject.encode(), subject.replace(" ", ".").encode(), subject.encode()))
    r = env(["deliver", "--to", user], input=raw)
    assert r.returncode == 0, r.stderr


def login(gw, user):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
    c.login(user, PASSWORD)
    return c


def subjects(gw, user, folder):
    """{subject: flags} of a folder, read-only."""
    c = login(gw, user)
    try:
        typ, data = c.select(folder, readonly=True)
        assert typ == "OK", data
        out = {}
        if int(data[0]):
            typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK", data
            for d in data:
                if isinstance(d, tuple):
                    flags = set(re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1).decode().split())
                    out[d[1].decode().strip()[len("Subject: "):]] = flags
        return out
    finally:
        c.logout()


# ------------------------------------------------------------------------------------ mutt

def run_mutt(gw, user, relay, home, keys, timeout=90):
    """mutt 2.2 on a pseudo-terminal, driven by keys pushed with -e (no human at the keyboard);
    returns what it showed. The relay gives it the name the certificate carries (localhost)."""
    r = relay(gw.addr, gw.imaps_port)
    rc = home / "muttrc"
    rc.write_text("\n".join([
        'set folder="imaps://localhost:%d/"' % r.port,
        'set spoolfile="+INBOX"',
        'set imap_user="%s"' % user,
        'set imap_pass="%s"' % PASSWORD,
        'set ssl_ca_certificates_file="%s"' % gw.cert,
        'set certificate_file="%s/certs"' % home,
        'set header_cache="" message_cachedir=""',
        "set delete=yes confirmappend=no confirmcreate=no quit=yes move=no mark_old=no",
        "set sleep_time=0 wait_key=no mail_check=0 imap_keepalive=0 timeout=0 beep=no",
        "set record=\"\" postponed=\"+Drafts\"",
    ]) + "\n")
    rc.chmod(0o600)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="vt100", HOME=str(home), LINES="40", COLUMNS="132")
        os.execvp("mutt", ["mutt", "-n", "-F", str(rc), "-e", "push '%s'" % keys])
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif os.waitpid(pid, os.WNOHANG)[0]:
                pid = 0
                break
        else:
            raise AssertionError("mutt did not finish in %d s; screen:\n%s" % (timeout, out[-3000:].decode(errors="replace")))
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os.close(fd)
    return out.decode(errors="replace")


@pytest.fixture(scope="module")
def mutt_box(postern_env, gateway):
    if not subprocess.run(["sh", "-c", "command -v mutt"], capture_output=True).stdout:
        pytest.fail("mutt is not installed (scripts/install-deps.sh installs it)")
    add_user(postern_env, MUTT_USER)
    for s in ("mutt keep", "mutt delete me", "mutt save me", "mutt save too"):
        deliver(postern_env, MUTT_USER, s)
    return gateway


def test_mutt_deletes_with_flag_and_expunge(mutt_box, relay, tmp_path):
    screen = run_mutt(mutt_box, MUTT_USER, relay, tmp_path,
                      "<delete-pattern>~s \"mutt delete me\"<enter><sync-mailbox><quit>")
    inbox = subjects(mutt_box, MUTT_USER, "INBOX")
    assert "mutt delete me" not in inbox and "mutt keep" in inbox, (inbox, screen[-2000:])
    assert "mutt delete me" not in subjects(mutt_box, MUTT_USER, "Trash")


def test_mutt_saves_to_a_folder(mutt_box, relay, tmp_path):
    """`s` to =Archive: a UID COPY on the server (never a download and upload), then the
    originals marked \\Deleted and expunged at the sync."""
    screen = run_mutt(mutt_box, MUTT_USER, relay, tmp_path,
                      "<tag-pattern>~s \"mutt save\"<enter><tag-prefix><save-message>=Archive<enter>"
                      "<sync-mailbox><quit>")
    archive = subjects(mutt_box, MUTT_USER, "Archive")
    assert {"mutt save me", "mutt save too"} <= set(archive), (archive, screen[-2000:])
    inbox = subjects(mutt_box, MUTT_USER, "INBOX")
    assert "mutt save me" not in inbox and "mutt keep" in inbox, inbox


# ---------------------------------------------------------------------------------- mbsync

MBSYNC_USER = "mbsync.writer@example.org"


def mbsync_all(gw, relay, home):
    r = relay(gw.addr, gw.imaps_port)
    conf = home / "mbsyncrc"
    mail = home / "mail"
    mail.mkdir(exist_ok=True)
    conf.write_text(
        "IMAPAccount gw\nHost localhost\nPort %d\nUser %s\nPass \"%s\"\nAuthMechs PLAIN\n"
        "SSLType IMAPS\nCertificateFile %s\nSystemCertificates no\nTimeout 30\n\n"
        "IMAPStore far\nAccount gw\n\n"
        "MaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
        "Channel all\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\nSync All\n"
        "SyncState *\n" % (r.port, MBSYNC_USER, PASSWORD, gw.cert, mail, mail))
    conf.chmod(0o600)
    res = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, timeout=180,
                         env=dict(os.environ, HOME=str(home)))
    out = (res.stdout + res.stderr).decode(errors="replace")
    assert res.returncode == 0, "mbsync failed (%d):\n%s\n--- gateway log:\n%s" % (
        res.returncode, out, gw.log_text()[-3000:])
    return mail, out


def near_files(box):
    return [f for sub in ("new", "cur") if (box / sub).is_dir() for f in (box / sub).iterdir()]


def subject_of(path):
    m = re.search(rb"(?m)^Subject: (.*?)\r?$", path.read_bytes())
    return m.group(1).decode() if m else None


def test_mbsync_sync_all_carries_local_changes_to_the_server(postern_env, gateway, relay, tmp_path):
    """Two-way `Sync All` over every folder: a local flag change, a message deleted locally, one
    moved locally from INBOX to Archive and a new local draft all reach the server; a third
    run changes nothing on either side."""
    add_user(postern_env, MBSYNC_USER)
    for s in ("sync flag me", "sync delete me", "sync move me", "sync untouched"):
        deliver(postern_env, MBSYNC_USER, s)
    mail, out = mbsync_all(gateway, relay, tmp_path)
    inbox = {subject_of(f): f for f in near_files(mail / "INBOX")}
    assert set(inbox) == {"sync flag me", "sync delete me", "sync move me", "sync untouched"}, (inbox, out)
    for folder in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (mail / folder / "cur").is_dir(), (folder, out)

    f = inbox["sync flag me"]
    f.rename(f.parent.parent / "cur" / (f.name.split(":")[0] + ":2,FS"))
    inbox["sync delete me"].unlink()
    m = inbox["sync move me"]
    m.rename(mail / "Archive" / "cur" / (re.sub(r",U=\d+", "", m.name.split(":")[0]) + ":2,S"))
    draft = (b"From: %s\r\nTo: friend@example.net\r\nSubject: sync local draft\r\n"
             b"Date: Tue, 1 Dec 2026 09:00:00 +0000\r\n\r\nwritten offline\r\n" % MBSYNC_USER.encode())
    (mail / "Drafts" / "new" / "1700000000.local_1.host").write_bytes(draft)

    mail, out = mbsync_all(gateway, relay, tmp_path)
    server = subjects(gateway, MBSYNC_USER, "INBOX")
    assert set(server) == {"sync flag me", "sync untouched"}, (server, out)
    assert {"\\Seen", "\\Flagged"} <= server["sync flag me"], server
    archive = subjects(gateway, MBSYNC_USER, "Archive")
    assert "sync move me" in archive and "\\Seen" in archive["sync move me"], archive
    drafts = subjects(gateway, MBSYNC_USER, "Drafts")
    assert "sync local draft" in drafts, drafts

    def near():
        return {folder: sorted(f.name for f in near_files(mail / folder))
                for folder in ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive")}
    before = {f: subjects(gateway, MBSYNC_USER, f) for f in ("INBOX", "Archive", "Drafts", "Trash")}
    near_before = near()
    assert len(near_before["Drafts"]) == 1 and len(near_before["Archive"]) == 1, near_before
    mail, out = mbsync_all(gateway, relay, tmp_path)
    assert {f: subjects(gateway, MBSYNC_USER, f) for f in before} == before, out
    assert near() == near_before, out
