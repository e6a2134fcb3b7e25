#!/usr/bin/env bash
# demo.sh -- everything on a fresh Debian 12 machine, as root: install dependencies, build,
# start a local INN site, create the organisation authority and a demo user, deliver sample
# mail, and show the demo user's decrypted mailbox. Re-running starts over cleanly.
#
#   scripts/demo.sh                 # state in ./run/demo (DEMO_DIR=... to change)
#   scripts/demo.sh stop            # stop the demo's gateway and INN site
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${DEMO_DIR:-$ROOT/run/demo}
# The demo's CA (scripts/self-signed-cert) lives beside $DEMO, not in it: re-running starts
# $DEMO over, and a client told to trust the CA once should keep trusting the new leaf.
CA=${DEMO_CA:-$(dirname "$DEMO")/demo-ca}
SITE=$DEMO/site
ADDR=${DEMO_ADDR:-127.0.0.2}
PORT=${DEMO_PORT:-11119}
USER_ADDR=demo@example.org
PY=/usr/bin/python3
IMAP_PORT=${DEMO_IMAP_PORT:-10143}
IMAPS_PORT=${DEMO_IMAPS_PORT:-10993}
POP3S_PORT=${DEMO_POP3S_PORT:-10995}

stop_gateway() {
    if [ -f "$DEMO/serve.pid" ]; then
        kill "$(cat "$DEMO/serve.pid")" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$(cat "$DEMO/serve.pid")" 2>/dev/null || break; sleep 0.1; done
        rm -f "$DEMO/serve.pid"
    fi
}

step() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = stop ]; then
    stop_gateway
    "$ROOT/scripts/inn-site" stop "$SITE"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (it installs packages and starts INN): in a root shell" >&2; exit 1; }

step "Installing dependencies"
"$ROOT/scripts/install-deps.sh"

step "Building postern"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc)"
POSTERN=$ROOT/build/cli/postern

step "Starting a local INN site on $ADDR:$PORT (in $SITE)"
stop_gateway
if [ -f "$SITE/site.env" ]; then "$ROOT/scripts/inn-site" stop "$SITE" >/dev/null 2>&1 || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
# 755: innd (user news) and the gateway's unprivileged processes must reach their directories;
# every secret in here is a 0600 file of its own.
chmod 755 "$DEMO"
"$ROOT/scripts/inn-site" setup "$SITE" --addr "$ADDR" --port "$PORT" --name demo
"$ROOT/scripts/inn-site" start "$SITE"

step "Writing $DEMO/postern.conf"
{
    cat <<EOF
[postern]
prefix = postern
authority_public = $DEMO/authority.pub
authority_secret = $DEMO/authority.key
delivery_secret = $DEMO/delivery.secret
writer_key = $DEMO/writer.key
state_dir = $DEMO/state

[deliver]
min_copies = 1

EOF
    cat "$SITE/postern-site.conf"
} > "$DEMO/postern.conf"
# The gateway drops to these users, as in a real deployment (docs/design.md).
getent passwd postern >/dev/null || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postern
getent passwd postern-vault >/dev/null || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postern-vault
mkdir -p "$DEMO/state"
chmod 700 "$DEMO/state"
chown postern: "$DEMO/state"
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$DEMO/delivery.secret")
export POSTERN_CONFIG=$DEMO/postern.conf

step "Creating the organisation authority key (and this host's writer key, which signs its mail)"
"$POSTERN" authority init

step "Adding the demo user $USER_ADDR"
# A demo password in a file, so the demo runs unattended; real users type theirs.
(umask 077 && echo "demo-password-$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')" > "$DEMO/demo.password")
"$POSTERN" user add "$USER_ADDR" --password-file "$DEMO/demo.password"

step "Delivering sample mail"
mkdir -p "$DEMO/sample"
"$PY" - "$DEMO/sample" <<'EOF'
import sys, email.message, email.utils, email.policy, os
out = sys.argv[1]
def save(name, m):
    with open(os.path.join(out, name), "wb") as f:
        f.write(m.as_bytes(policy=email.policy.SMTP))
def make(sender, subject, text):
    m = email.message.EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "demo@example.org", subject
    m["Date"] = email.utils.formatdate(localtime=True)
    m["Message-ID"] = email.utils.make_msgid(domain=sender.rsplit("@", 1)[1].rstrip(">"))
    m.set_content(text)
    return m
save("1-welcome.eml", make("Alice Example <alice@example.net>", "Welcome to postern",
                           "This message was encrypted to your key and stored as a news article.\n"))
save("2-utf8.eml", make("Jürgen Müller <juergen@example.de>", "Grüße aus München — 日本語の件名",
                        "Non-ASCII headers are RFC 2047 encoded; postern keeps them byte for byte.\n"))
m = make("Reports <reports@example.com>", "Quarterly report (with attachment)", "The report is attached.\n")
m.add_attachment(os.urandom(300_000), maintype="application", subtype="octet-stream", filename="report.bin")
save("3-attachment.eml", m)
EOF
for f in "$DEMO"/sample/*.eml; do
    "$POSTERN" deliver --verbose --to "$USER_ADDR" < "$f"
done

step "The demo user's mailbox, decrypted with the password"
"$POSTERN" mailbox "$USER_ADDR" --password-file "$DEMO/demo.password"

step "What the news server holds: neutral headers and base64 ciphertext"
# tradspool keeps articles in wire format (CRLF line ends)
ART=$(find "$SITE/spool/articles/postern/org/example/demo" -maxdepth 1 -type f 2>/dev/null | sort | head -n 1)
if [ -n "$ART" ]; then
    tr -d '\r' < "$ART" | awk '/^$/ { blank = 1; next } !blank { print "  | " $0; next } { print "  | " substr($0, 1, 60) "..."; exit }'
fi
if grep -rqa "Welcome to postern" "$SITE/spool"; then
    echo "  PLAINTEXT FOUND IN THE SPOOL: this is a bug" >&2; exit 1
fi
echo "  grep for the sample subject in the whole spool: not found"

step "Starting the gateway on $ADDR:$IMAPS_PORT (IMAPS), $ADDR:$IMAP_PORT (STARTTLS), $ADDR:$POP3S_PORT (POP3S)"
# A throwaway certificate for the demo only, signed by the demo's CA ($CA.pem, kept across
# runs and able to sign for these names only); a real site uses its own. It names localhost
# (DNS) because mbsync and fetchmail check the host name they were given against DNS names
# only; the gateway listens on localhost too, so clients use that name.
"$ROOT/scripts/self-signed-cert" --ca "$CA" "$DEMO/tls" 30 localhost -- 127.0.0.1 "$ADDR"
cat >> "$DEMO/postern.conf" <<EOF

[gateway]
imap = $ADDR:$IMAP_PORT
imap = 127.0.0.1:$IMAP_PORT
imaps = $ADDR:$IMAPS_PORT
imaps = 127.0.0.1:$IMAPS_PORT
pop3s = $ADDR:$POP3S_PORT
pop3s = 127.0.0.1:$POP3S_PORT
tls_cert = $DEMO/tls.pem
tls_key = $DEMO/tls.key
public_name = localhost
user = postern
vault_user = postern-vault
EOF
nohup "$POSTERN" serve > "$DEMO/serve.log" 2>&1 < /dev/null &
echo $! > "$DEMO/serve.pid"
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$ADDR/$IMAPS_PORT") 2>/dev/null && break
    sleep 0.1
done
"$PY" - localhost "$IMAPS_PORT" "$USER_ADDR" "$DEMO/demo.password" "$CA.pem" "$POP3S_PORT" <<'EOF'
import imaplib, poplib, ssl, sys
addr, port, user, pwfile, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
pop3s_port = int(sys.argv[6])
ctx = ssl.create_default_context(cafile=cert)  # the CA only; checks the host name, as mail clients do
m = imaplib.IMAP4_SSL(addr, port, ssl_context=ctx)
print("  greeting:", m.welcome.decode())
print("  LOGIN:", m.login(user, open(pwfile).read().strip())[1][0].decode()[:70])
for line in m.list()[1]:
    print("  LIST:", line.decode())
typ, data = m.select("INBOX", readonly=True)
print("  SELECT INBOX: %s messages, UIDVALIDITY %s" % (data[0].decode(), m.untagged_responses["UIDVALIDITY"][0].decode()))
typ, data = m.uid("FETCH", "1:*", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])")
for item in data:
    if isinstance(item, tuple):
        uid = item[0].split(b"UID ")[1].split()[0].decode() if b"UID " in item[0] else "?"
        fields = " | ".join(l.strip() for l in item[1].decode(errors="replace").splitlines() if l.strip())
        print("  UID %-4s %s" % (uid, fields[:100]))
typ, data = m.uid("SEARCH", "TEXT", "report")
print("  UID SEARCH TEXT report (searches the decrypted mail):", data[0].decode() or "(none)")
print("  LOGOUT:", m.logout()[1][0].decode())
p = poplib.POP3_SSL(addr, pop3s_port, context=ctx)
p.user(user)
p.pass_(open(pwfile).read().strip())
print("  POP3S STAT: %d messages, %d octets" % p.stat())
print("  POP3S UIDL:", " ".join(l.decode().split()[1] for l in p.uidl()[1]))
p.quit()
EOF

step "Client configurations (postern autoconfig, docs/clients.md)"
"$POSTERN" autoconfig --domain example.org > "$DEMO/config-v1.1.xml"
"$POSTERN" autoconfig --format autodiscover > "$DEMO/autodiscover.xml"
"$POSTERN" autoconfig --format srv --domain example.org | tee "$DEMO/srv.zone" | sed 's/^/  /'
echo "  $DEMO/config-v1.1.xml (Thunderbird) and $DEMO/autodiscover.xml (Outlook): for localhost"

cat <<EOF

Done. The INN site keeps running on $ADDR:$PORT and the gateway on $ADDR:$IMAPS_PORT (IMAPS),
$ADDR:$POP3S_PORT (POP3S)
and $ADDR:$IMAP_PORT (STARTTLS); its log is $DEMO/serve.log.
  config:    export POSTERN_CONFIG=$DEMO/postern.conf
  password:  $DEMO/demo.password
  read one:  $POSTERN mailbox $USER_ADDR --password-file $DEMO/demo.password --show NUM
  stop:      scripts/demo.sh stop
Point any IMAP or POP3 client at localhost:$IMAPS_PORT (IMAPS) or localhost:$POP3S_PORT (POP3S),
user $USER_ADDR, trusting the demo CA $CA.pem (its certificate names localhost; trusting
the CA once survives re-runs: Thunderbird, Settings > Certificates > Import; Debian,
/usr/local/share/ca-certificates + update-ca-certificates; docs/clients.md), e.g.
  curl --cacert $CA.pem -u $USER_ADDR imaps://localhost:$IMAPS_PORT/INBOX
  fetchmail --check -p IMAP -P $IMAPS_PORT --ssl --sslcertck --sslcertfile $CA.pem -u $USER_ADDR localhost
  mbsync: Host localhost, Port $IMAPS_PORT, SSLType IMAPS, CertificateFile $CA.pem
EOF
