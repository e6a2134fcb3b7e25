"""`postern CMD --help` works where no configuration exists (issue 9, item 6)."""
import os
import subprocess

import pytest

from conftest import postern_bin

COMMANDS = [["authority"], ["user"], ["user", "add"], ["user", "del"], ["deliver"], ["watch-maildir"],
            ["lmtp"], ["mailbox"], ["serve"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_needs_no_config(cmd, flag, tmp_path):
    bin = postern_bin()
    if not bin.is_file():
        pytest.skip("postern binary %s not built" % bin)
    env = dict(os.environ, POSTERN_CONFIG=str(tmp_path / "missing.conf"))
    r = subprocess.run([str(bin), *cmd, flag], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: postern %s" % cmd[0]), (r.stdout, r.stderr)
    assert "missing.conf" not in r.stderr
