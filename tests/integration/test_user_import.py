"""`postern user import` (issue 16, item 5): many users from "address,password" lines, with
progress and a reason for every line that fails, against a real INN site; every imported
user can log in and receive mail."""
import os
import subprocess

USERS = [("imp.one@example.org", "first import password"), ("imp.two@example.org", "second, with a comma"),
         ("imp.three@example.org", "third import password")]


def test_import_adds_every_good_line_and_says_why_the_others_failed(postern_env, tmp_path):
    lines = ["address,password", "# a comment", ""]
    lines += ["%s,%s" % u for u in USERS[:2]]
    lines += ["not an address,some password long enough", "imp.short@example.org,x", "no comma here",
              "%s,%s" % USERS[2], "%s,%s" % USERS[0]]  # the last: already there
    f = tmp_path / "users.csv"
    f.write_text("\r\n".join(lines) + "\r\n")
    f.chmod(0o644)
    r = postern_env(["user", "import", str(f)])
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 65, (out, err)  # EX_DATAERR: some lines were refused
    assert "readable by others" in err, err
    for address, _ in USERS:
        assert "added %s\n" % address in out, out
    assert out.strip().endswith("imported 3 of 7 users (4 refused, 0 failed for now: run the import again for "
                                "those lines; users already added are refused as existing)"), out
    assert "[1/7] line 4: imp.one@example.org" in err and "[7/7] line 10:" in err, err
    assert "line 6" in err and "not an address" in err, err
    assert "too short" in err and "[5/7] line 8: expected ADDRESS,PASSWORD" in err, err
    assert "imp.one@example.org already exists" in err, err
    for _, password in USERS:
        assert password not in out + err
    listed = postern_env(["user", "list"]).stdout.decode()
    assert all(a in listed for a, _ in USERS), listed
    # the comma belongs to the password: the user logs in with it (through `postern mailbox`)
    r = postern_env(["deliver", "--to", USERS[1][0]], input=b"From: a@example.net\nSubject: hi\n\nx\n")
    assert r.returncode == 0, r.stderr
    r = postern_env(["mailbox", USERS[1][0], "--password-stdin"], input=USERS[1][1] + "\n")
    assert r.returncode == 0 and b"hi" in r.stdout, (r.stdout, r.stderr)


def test_import_from_stdin_all_good_exits_0(postern_env):
    r = postern_env(["user", "import", "-"], input="imp.stdin@example.org,a stdin password here\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().endswith("imported 1 of 1 user\n"), r.stdout
