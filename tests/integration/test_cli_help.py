"""`postern CMD --help` works where no configuration exists (issue 9, item 6)."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import postern_bin

COMMANDS = [["authority"], ["user"], ["user", "add"], ["user", "del"], ["deliver"], ["watch-maildir"],
            ["lmtp"], ["verify-recipient"], ["mailbox"], ["repair"], ["config"], ["status"], ["autoconfig"], ["inn-setup"], ["serve"],
            ["who"], ["kick"]]


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


REPO = Path(__file__).resolve().parents[2]


def table_commands():
    return re.findall(r'^\s+\{"([a-z-]+)", \w+, "', (REPO / "cli/main.c").read_text(), re.M)


def test_every_command_is_in_help_completion_and_man_page(tmp_path):
    """The command table, `postern --help`, each `COMMAND --help`, the bash completion and
    the man page generated beside the binary (scripts/gen-man) name the same commands
    (test_debian_package.py checks the same in the built package, which needs root)."""
    bin = postern_bin()
    if not bin.is_file():
        pytest.skip("postern binary %s not built" % bin)
    env = dict(os.environ, POSTERN_CONFIG=str(tmp_path / "missing.conf"))
    commands = table_commands()
    assert "autoconfig" in commands and len(commands) >= 11, commands
    top = subprocess.run([str(bin), "--help"], capture_output=True, text=True, timeout=30, env=env).stdout
    listed = re.findall(r"^  ([a-z-]+) ", top, re.M)
    assert listed == commands, (listed, commands)
    completion = (REPO / "deploy/bash-completion/postern").read_text()
    in_completion = re.search(r'local commands="([^"]*)"', completion).group(1).split()
    assert in_completion == commands, (in_completion, commands)
    for c in commands:
        assert re.search(r"^\s+%s\)" % re.escape(c), completion, re.M), "completion lacks the words of %s" % c
    man = bin.parent.parent / "man" / "postern.8"
    if not man.is_file():
        pytest.skip("man page %s not built" % man)
    page = man.read_text()
    for c in commands:
        assert '.SS "postern %s"' % c.replace("-", "\\-") in page, c
    page5 = (bin.parent.parent / "man" / "postern.conf.5").read_text()
    for k in set(re.findall(r'strcmp\(key, "([a-z0-9_]+)"\)', (REPO / "config/config.c").read_text())):
        assert "\\fB%s\\fR" % k in page5, "postern.conf(5) lacks %s" % k


def test_autoconfig_completion_offers_its_formats():
    completion = (REPO / "deploy/bash-completion/postern").read_text()
    block = completion.split("autoconfig)", 1)[1].split(";;\n        esac", 1)[0]
    for w in ("mozilla", "autodiscover", "srv", "--format", "--domain", "--host", "--smtp", "--email", "--help"):
        assert w in block, w
