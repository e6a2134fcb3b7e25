"""GET /metrics beyond the gateway's own sessions (issue 16 item 4): deliveries per site and
the confirmation time of the LMTP service, the replication gap per site and what the repair
passes copied, and where logins' key records came from (the gateway's cache or a news
server). Two sites that do not peer: delivery with min_copies 1 posts to the first only, so
the second lacks the message until the gateway's repair pass copies it."""
import imaplib
import re
import subprocess
import time

from conftest import _free_port, _GatewayFactory, multi_site_env
from test_lmtp import Server

USER = "mona.metrics@example.org"
PASSWORD = "metrics test password"


def metrics(gw):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "http://%s:%d/metrics" % (gw.addr, gw.metrics_port)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^(postern_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        assert m, line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def wait_for(gw, what, predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        ms = metrics(gw)
        if predicate(ms):
            return ms
        assert time.monotonic() < deadline, "%s; /metrics has %s" % (what, sorted(ms.items()))
        time.sleep(0.5)


def test_delivery_replication_and_keyrecord_metrics(inn_sites, tmp_path_factory, tmp_path):
    a, b = inn_sites(), inn_sites()
    env = multi_site_env(tmp_path_factory.mktemp("metrics"), [a, b])
    env.conf.write_text(env.conf.read_text().replace("min_copies = 2", "min_copies = 1") +
                        "\n[repair]\ninterval = 2\n")
    r = env(["authority", "init"])
    assert r.returncode == 0, r.stderr
    r = env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr

    factory = _GatewayFactory(env, tmp_path_factory, a.addr)
    try:
        gw = factory.start(conf_extra="[metrics]\nlisten = %s:%d" % (a.addr, _free_port(a.addr)))
        gw.metrics_port = int(re.search(r"^listen = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
        # the LMTP service of the same host: the same postern.conf, so the same state_dir
        lmtp = Server(env, tmp_path / "lmtp.sock", conf=gw.conf)
        try:
            c = lmtp.connect()
            assert c.sendmail("s@example.net", [USER], b"Subject: metrics\r\n\r\nbody\r\n") == {}
            c.quit()
        finally:
            assert lmtp.stop() == 0
        prom = (gw.state_dir / "delivery.prom").read_text()
        assert 'postern_deliveries_total{result="stored"} 1\n' in prom, prom
        assert 'postern_delivery_copies_total{site="%s"} 1\n' % a.name in prom, prom
        assert 'postern_delivery_copies_total{site="%s"} 0\n' % b.name in prom, prom
        assert 'postern_delivery_confirm_seconds_count 1\n' in prom, prom
        site_b = '{site="%s"}' % b.name
        ms = wait_for(gw, "the repair pass did not copy the message to site b",
                      lambda m: m.get("postern_replication_copied_total" + site_b, 0) >= 1 and
                      m.get("postern_replication_missing" + site_b) == 0)
        assert ms["postern_replication_site_up" + site_b] == 1
        assert ms['postern_deliveries_total{result="stored"}'] == 1  # the LMTP service's, on this host
        for i in range(2):
            c = imaplib.IMAP4_SSL(gw.addr, gw.imaps_port, ssl_context=gw.ssl_context(), timeout=30)
            c.login(USER, PASSWORD)
            c.logout()
        ms = metrics(gw)
        assert ms['postern_keyrecord_lookups_total{source="news"}'] == 1, ms
        assert ms['postern_keyrecord_lookups_total{source="cache"}'] == 1, ms
    finally:
        factory.close()
