"""A state that cannot be written is not lost, and the user is told (issue 14, item 11).
Before, a user who logged out while state_dir could not be written (a full disk) lost the
flag changes silently: STORE said OK, the final write failed, and the next login read the
older file. Now the state is kept in memory and written again every state_save_interval,
the next login takes it up, and sessions get an untagged NO while it cannot be written.
The disk is "full" here by making state_dir/users unwritable for the network process."""
import imaplib
import os
import time

USER = "ulla.unsaved@example.org"
PASSWORD = "unsaved state password"


def login(gw):
    c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=60)
    c.login(USER, PASSWORD)
    assert c.select("INBOX")[0] == "OK"
    return c


def flags_of(c, n):
    typ, data = c.fetch(str(n), "(FLAGS)")
    assert typ == "OK", data
    return data[0].decode()


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_flags_survive_a_state_dir_that_cannot_be_written(postern_env, gateway):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    for i in range(2):
        assert postern_env(["deliver", "--to", USER], input=b"Subject: %d\n\nbody\n" % i).returncode == 0
    gw = gateway.factory.start(state_save_interval="1", login_grace="1")
    c = login(gw)
    c.store("2", "+FLAGS", "(\\Seen)")
    c.logout()
    users = gw.state_dir / "users"
    written = lambda: users.exists() and [p.name for p in users.iterdir()] and all(
        p.name.endswith((".state", ".mstate")) for p in users.iterdir())  # no temporary file
    wait_for(written, "the first state was not written")
    os.chmod(users, 0o555)  # from now on every write fails, as on a full disk
    try:
        c = login(gw)
        typ, data = c.store("1", "+FLAGS", "(\\Flagged)")
        assert typ == "OK", data
        wait_for(lambda: "state of %s not saved" % USER in gw.log_text(), "no save was tried")
        typ, data = c.store("1", "+FLAGS", "(\\Answered)")  # the session is told now
        assert typ == "OK"
        untagged = [x.decode() if isinstance(x, bytes) else str(x) for x in c.untagged_responses.get("NO", [])]
        assert any("cannot be written to disk" in x for x in untagged), (untagged, data)
        c.logout()
        wait_for(lambda: "kept in memory and written again" in gw.log_text(), "the final write did not fail")
        c = login(gw)  # the kept state, not the older file
        f = flags_of(c, 1)
        assert "\\Flagged" in f and "\\Answered" in f, f
        assert "\\Seen" in flags_of(c, 2)
        c.logout()
        # its last write fails too: kept again, until the disk takes it
        wait_for(lambda: gw.log_text().count("kept in memory and written again") >= 2, "the second write did not fail")
    finally:
        os.chmod(users, 0o700)
    wait_for(lambda: "saved at last" in gw.log_text(), "the kept state was not written when it could be")
    assert gw.stop() == 0
    gw.start()  # a new network process reads the file: it holds the changes
    c = login(gw)
    f = flags_of(c, 1)
    assert "\\Flagged" in f and "\\Answered" in f, f
    c.logout()
