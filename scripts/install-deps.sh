#!/usr/bin/env bash
# install-deps.sh -- install postern's build dependencies and test tools on Debian 12.
#
# Idempotent: when every package is already installed it only checks and exits.
# Run as root (CI runs it on a clean machine).  A system-wide INN (inn2's own innd) is never
# stopped, disabled or reconfigured: on an existing news server that would be destructive.
# One that is running is left running, and said so; postern's tests run their own sites
# (scripts/inn-site) on other addresses, ports, directories and control sockets.  A freshly
# installed inn2 is not started (policy-rc.d below); its inn.conf gets a domain only then,
# because its postinst fails without one.
set -euo pipefail

PACKAGES=(
    # build
    build-essential cmake pkg-config clang libclang-rt-14-dev
    libsodium-dev libssl-dev libetpan-dev libcmocka-dev libinih-dev libevent-dev libseccomp-dev
    # the Debian package (debian/) and its test: build, lint, a Debian 12 root to install into
    # (systemd-container: systemd-nspawn boots that root with its own systemd)
    debhelper lintian debootstrap systemd-container
    # tests
    valgrind python3 python3-pytest openssl inn2
    # mail clients for the gateway tests
    isync curl fetchmail getmail6 mutt
    # the MTA recipes' tests (docs/deliver.md): Postfix installed normally (a private instance
    # runs from its own config directory), Exim unpacked beside it (see EXIM_DIR below) with
    # the libraries its binary needs
    postfix libdb5.3 libgnutls30 libgnutls-dane0 libidn12 libidn2-0 libnsl2 libpcre2-8-0
)
# Postfix and exim4 conflict (both provide mail-transport-agent), so Exim is not installed:
# exim4-base and exim4-daemon-light are fetched with 'apt-get download' and unpacked here,
# and the tests run that binary with -C and their own configuration.
EXIM_DIR=${POSTERN_EXIM_DIR:-/usr/local/lib/postern-test/exim4}
EXIM_PACKAGES=(exim4-base exim4-daemon-light)
INN_DOMAIN=${INN_DOMAIN:-postern.invalid}

say() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it calls apt-get); use: sudo $0"
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    die "this script is for Debian 12 (apt-get/dpkg-query not found)"
fi
export DEBIAN_FRONTEND=noninteractive

missing_packages() {  # prints packages that are not fully installed ("ii")
    local p st
    for p in "${PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [ "${st:0:2}" = "ii" ] || echo "$p"
    done
}

inn_domain_set() { grep -Eq '^[[:space:]]*domain:[[:space:]]*[^[:space:]]' /etc/news/inn.conf 2>/dev/null; }

set_inn_domain() {
    # inn2's postinst fails when the host name has no domain and inn.conf sets none
    [ -f /etc/news/inn.conf ] || return 0
    inn_domain_set && return 0
    say "setting 'domain: $INN_DOMAIN' in /etc/news/inn.conf (inn2's postinst needs a domain)"
    if grep -Eq '^#[[:space:]]*domain:' /etc/news/inn.conf; then
        sed -i -E "0,/^#[[:space:]]*domain:.*/s//domain:                 $INN_DOMAIN/" /etc/news/inn.conf
    else
        printf 'domain:                 %s\n' "$INN_DOMAIN" >>/etc/news/inn.conf
    fi
}

report_system_innd() {
    # only the system instance: its pid file is /run/news/innd.pid and it runs without
    # INNCONF (or with /etc/news/inn.conf).  Sites made by scripts/inn-site are not it.
    local pid
    pid=$(cat /run/news/innd.pid 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        if ! grep -qz '^INNCONF=' "/proc/$pid/environ" 2>/dev/null ||
           grep -qzxF 'INNCONF=/etc/news/inn.conf' "/proc/$pid/environ" 2>/dev/null; then
            say "the system-wide innd is running (pid $pid); it is left running and untouched." \
                "postern's test sites do not collide with it (127.0.0.20-239, ports 11920-12139," \
                "their own directories and control sockets)"
        fi
    fi
    return 0
}

exim_unpacked() { [ -x "$EXIM_DIR/usr/sbin/exim4" ] && getent passwd Debian-exim >/dev/null; }

unpack_exim() {
    if [ ! -x "$EXIM_DIR/usr/sbin/exim4" ]; then
        local tmp deb
        tmp=$(mktemp -d)
        chmod 755 "$tmp"   # apt-get download fetches as user _apt
        say "unpacking ${EXIM_PACKAGES[*]} into $EXIM_DIR (not installed: postfix conflicts with them)"
        if ! (cd "$tmp" && apt-get download -q "${EXIM_PACKAGES[@]}"); then
            apt-get update -q   # stale package lists name versions the mirror no longer has
            (cd "$tmp" && apt-get download -q "${EXIM_PACKAGES[@]}") ||
                { rm -rf "$tmp"; die "apt-get download ${EXIM_PACKAGES[*]} failed"; }
        fi
        rm -rf "$EXIM_DIR.new"
        mkdir -p "$EXIM_DIR.new"
        for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$EXIM_DIR.new"; done
        rm -rf "$tmp" "$EXIM_DIR"
        mv "$EXIM_DIR.new" "$EXIM_DIR"
    fi
    # the user exim4-base's postinst would make; the tests' Exim runs as it
    getent passwd Debian-exim >/dev/null ||
        adduser --system --group --quiet --allow-bad-names --home /var/spool/exim4 --no-create-home Debian-exim
    exim_unpacked || die "no usr/sbin/exim4 in the unpacked ${EXIM_PACKAGES[*]}"
}

mapfile -t MISSING < <(missing_packages)
if [ ${#MISSING[@]} -eq 0 ] && exim_unpacked; then
    say "all ${#PACKAGES[@]} packages already installed; nothing to do"
    report_system_innd
    exit 0
fi
# an installed, configured inn2 is someone's news server: its inn.conf is not ours to edit
INN_NEW=0
if printf '%s\n' "${MISSING[@]}" | grep -qx inn2; then INN_NEW=1; fi

# keep services (innd, exim4, ...) from being started by maintainer scripts while we install
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, written by postern scripts/install-deps.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() { if [ "$OWN_POLICY" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

if [ ${#MISSING[@]} -gt 0 ]; then
    say "missing: ${MISSING[*]}"
    say "apt-get update"
    apt-get update -q
    # the host's own Postfix stays unconfigured (no /etc/postfix/main.cf, nothing listens):
    # the tests run private instances with their own config directories
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    say "apt-get install ${MISSING[*]}"
    # inn2's postinst may fail here (no domain yet); it is finished below
    if ! apt-get install -y -q -o Dpkg::Options::=--force-confold "${MISSING[@]}"; then
        say "apt-get install reported an error; completing the inn2 configuration and retrying"
    fi
fi

if [ "$INN_NEW" = 1 ]; then set_inn_domain; fi
if dpkg --audit 2>/dev/null | grep -q .; then
    say "dpkg --configure -a (finishing half-configured packages)"
    # inn2's postinst appends 'usenet: root' to /etc/aliases and then runs newaliases, which
    # fails while Postfix is unconfigured (no main.cf); the alias is written by then, so a
    # second pass does not run newaliases again and succeeds.  Whether this happens depends
    # on the order apt configures the two packages in.
    if ! dpkg --configure -a; then
        say "dpkg --configure -a failed once (inn2 postinst's newaliases without a Postfix main.cf); once more"
        dpkg --configure -a
    fi
fi

mapfile -t MISSING < <(missing_packages)
if [ ${#MISSING[@]} -gt 0 ]; then
    say "retrying: apt-get install ${MISSING[*]}"
    apt-get install -y -q -o Dpkg::Options::=--force-confold "${MISSING[@]}"
    if [ "$INN_NEW" = 1 ]; then set_inn_domain; fi
    dpkg --configure -a
fi
mapfile -t MISSING < <(missing_packages)
[ ${#MISSING[@]} -eq 0 ] ||
    die "still not installed: ${MISSING[*]}; run 'apt-get install ${MISSING[*]}' and read its errors"

unpack_exim
report_system_innd
say "done: ${#PACKAGES[@]} packages installed, exim in $EXIM_DIR"
