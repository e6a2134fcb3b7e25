"""scripts/install-deps.sh never stops, disables or reconfigures a system-wide INN (issue 9,
item 6). Run in a private mount namespace whose /run holds a stand-in "system innd" (a process
without INNCONF whose pid is in /run/news/innd.pid) and a systemd marker, with a systemctl and
an apt-get on PATH that only record their calls. Needs root, unshare(1), and every package of
the script already installed (else it would install: skipped)."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCENE = r"""
set -u
mount -t tmpfs tmpfs /run
mkdir -p /run/news /run/systemd/system
env -u INNCONF sleep 600 &
INND=$!
echo $INND >/run/news/innd.pid
PATH="$FAKE:$PATH" "$SCRIPT"
echo "script exit $?"
if kill -0 $INND 2>/dev/null; then echo "innd alive"; else echo "innd gone"; fi
kill $INND 2>/dev/null
exit 0
"""


def sha(path):
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_running_system_innd_is_left_alone(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "apt-get", "service", "invoke-rc.d"):
        (fake / tool).write_text("#!/bin/sh\necho %s \"$@\" >>%s\nexit 1\n" % (tool, calls))
        (fake / tool).chmod(0o755)
    before = sha("/etc/news/inn.conf")
    env = dict(os.environ, FAKE=str(fake), SCRIPT=str(REPO / "scripts" / "install-deps.sh"))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", SCENE], env=env,
                       capture_output=True, text=True, timeout=120)
    recorded = calls.read_text() if calls.exists() else ""
    if "apt-get" in recorded:
        pytest.skip("packages are missing here; the script would install them")
    assert "script exit 0" in r.stdout, r.stdout + r.stderr
    assert "innd alive" in r.stdout, "the system innd was stopped:\n" + r.stdout + r.stderr
    assert "systemctl" not in recorded, recorded
    assert "the system-wide innd is running (pid" in r.stdout and "left running" in r.stdout, r.stdout
    assert sha("/etc/news/inn.conf") == before, "/etc/news/inn.conf was changed"
