#!/usr/bin/env bash
# demo.sh -- everything on a fresh Debian 12 machine, as root: install dependencies, build,
# start a local INN site, create the organisation authority and a demo user, deliver sample
# mail, and show the demo user's decrypted mailbox. Re-running starts over cleanly.
#
#   sudo scripts/demo.sh            # state in ./run/demo (DEMO_DIR=... to change)
#   sudo scripts/demo.sh stop       # stop the demo's INN site
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${DEMO_DIR:-$ROOT/run/demo}
SITE=$DEMO/site
ADDR=${DEMO_ADDR:-127.0.0.2}
PORT=${DEMO_PORT:-11119}
USER_ADDR=demo@example.org
PY=/usr/bin/python3

step() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = stop ]; then
    "$ROOT/scripts/inn-site" stop "$SITE"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (it installs packages and starts INN): sudo $0" >&2; exit 1; }

step "Installing dependencies"
"$ROOT/scripts/install-deps.sh"

step "Building postern"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc)"
POSTERN=$ROOT/build/cli/postern

step "Starting a local INN site on $ADDR:$PORT (in $SITE)"
if [ -f "$SITE/site.env" ]; then "$ROOT/scripts/inn-site" stop "$SITE" >/dev/null 2>&1 || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 700 "$DEMO"
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
state_dir = $DEMO/state

[deliver]
min_copies = 1

EOF
    cat "$SITE/postern-site.conf"
} > "$DEMO/postern.conf"
mkdir -p "$DEMO/state"
chmod 700 "$DEMO/state"
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$DEMO/delivery.secret")
export POSTERN_CONFIG=$DEMO/postern.conf

step "Creating the organisation authority key"
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
m = email.message.EmailMessage()
m["From"] = "Alice Example <alice@example.net>"; m["To"] = "demo@example.org"
m["Subject"] = "Welcome to postern"; m["Date"] = email.utils.formatdate(localtime=True)
m["Message-ID"] = email.utils.make_msgid(domain="example.net")
m.set_content("This message was encrypted to your key and stored as a news article.\n")
save("1-welcome.eml", m)
m = email.message.EmailMessage()
m["From"] = "Jürgen Müller <juergen@example.de>"; m["To"] = "demo@example.org"
m["Subject"] = "Grüße aus München — 日本語の件名"; m["Date"] = email.utils.formatdate(localtime=True)
m["Message-ID"] = email.utils.make_msgid(domain="example.de")
m.set_content("Non-ASCII headers are RFC 2047 encoded; postern keeps them byte for byte.\n")
save("2-utf8.eml", m)
m = email.message.EmailMessage()
m["From"] = "Reports <reports@example.com>"; m["To"] = "demo@example.org"
m["Subject"] = "Quarterly report (with attachment)"; m["Date"] = email.utils.formatdate(localtime=True)
m["Message-ID"] = email.utils.make_msgid(domain="example.com")
m.set_content("The report is attached.\n")
m.add_attachment(os.urandom(300_000), maintype="application", subtype="octet-stream", filename="report.bin")
save("3-attachment.eml", m)
EOF
for f in "$DEMO"/sample/*.eml; do
    "$POSTERN" deliver --verbose --to "$USER_ADDR" < "$f"
done

step "The demo user's mailbox, decrypted with the password"
"$POSTERN" mailbox "$USER_ADDR" --password-file "$DEMO/demo.password"

step "What the news server holds: neutral headers and base64 ciphertext"
ART=$(find "$SITE/spool/articles/postern" -type f -path '*/user/*' -o -type f -path '*demo*' 2>/dev/null | grep -v encrypt | head -n 1)
if [ -n "$ART" ]; then
    sed -n '1,/^$/p' "$ART" | sed 's/^/  | /'
    echo "  | $(sed -n '/^$/{n;p;q}' "$ART" | cut -c1-60)..."
fi
if grep -rqa "Welcome to postern" "$SITE/spool"; then
    echo "  PLAINTEXT FOUND IN THE SPOOL: this is a bug" >&2; exit 1
fi
echo "  grep for the sample subject in the whole spool: not found"

cat <<EOF

Done. The INN site keeps running on $ADDR:$PORT.
  config:    export POSTERN_CONFIG=$DEMO/postern.conf
  password:  $DEMO/demo.password
  read one:  $POSTERN mailbox $USER_ADDR --password-file $DEMO/demo.password --show NUM
  stop:      sudo scripts/demo.sh stop
(The IMAP/POP3 gateway is not built yet; see README.)
EOF
