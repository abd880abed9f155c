#!/bin/sh
# Installs the Debian packages postern needs to build, run and test.
# Usage: scripts/deps.sh build|test|bench   (each level includes the ones before)
# Only missing packages are installed; nothing happens when all are present.
set -eu
level=${1:-build}
pkgs="build-essential pkg-config libevent-dev libssl-dev libsqlite3-dev libcrypt-dev
	libc-ares-dev zlib1g-dev openssl libpq-dev"
case $level in
test|bench) pkgs="$pkgs libcmocka-dev python3 python3-pytest swaks dnsmasq python3-aiosmtpd libnet-ssleay-perl libio-socket-ssl-perl curl clang clang-format libclang-rt-14-dev sqlite3 postgresql pflogsumm dovecot-imapd isync offlineimap3 neomutt chromium chromium-driver python3-selenium fonts-dejavu-core" ;;
esac
# chromium, chromium-driver and python3-selenium drive the web admin's
# browser tests (tests/proto/browser.py); fonts-dejavu-core gives the
# pictures in docs/img (`make screenshots`) the same font everywhere.
case $level in
bench) pkgs="$pkgs postfix procps dovecot-pop3d opendkim" ;;
esac
# YAML for tests/proto/test_openapi.py (docs/openapi.yaml).
case $level in
test|bench) pkgs="$pkgs python3-yaml" ;;
esac
# Milters (issue 15 part 2): tests/proto/test_milter.py's python3-milter
# milter and tests/proto/test_rspamd.py's rspamd.
case $level in
test|bench) pkgs="$pkgs rspamd python3-milter" ;;
esac
# DKIM (issue 15 part 1): tests/proto/test_dkim.py's independent verifiers.
case $level in
test|bench) pkgs="$pkgs python3-dkim opendkim opendkim-tools" ;;
esac
# clamav-milter and OpenDMARC (issue 15): tests/proto/test_milter_peers.py
# starts its own clamd (a private signature database, no freshclam),
# clamav-milter, OpenDKIM and OpenDMARC; python3-cryptography makes its
# DKIM key (python3-dkim signs with it).
peer_services="clamav-daemon clamav-freshclam clamav-milter opendmarc"
case $level in
test|bench) pkgs="$pkgs clamav-daemon clamav-milter opendmarc python3-cryptography" ;;
esac
# node and npm may come from elsewhere (NodeSource's nodejs bundles npm
# and conflicts with Debian's): only asked for when the commands are missing.
case $level in
test|bench)
	command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
	command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm" ;;
esac
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
# imapflow (an IMAP client library from npm, for the IDLE, CONDSTORE and
# QRESYNC tests) goes under
# build/node, outside the repository; the version is pinned.
node_deps() {
	case $level in test|bench) ;; *) return 0 ;; esac
	root=$(cd "$(dirname "$0")/.." && pwd)
	[ -d "$root/build/node/node_modules/imapflow" ] && return 0
	echo "deps: npm install imapflow under build/node" >&2
	mkdir -p "$root/build/node"
	npm install --silent --no-audit --no-fund --prefix "$root/build/node" \
		imapflow@2.10.2 >/dev/null
}
if [ -z "$missing" ]; then
	node_deps
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root, or: apt-get install$missing" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Dovecot and Postfix are test peers, started by the tests on loopback
# ports: their packages must not start system services listening on every
# address.  A policy-rc.d that refuses (exit 101) is put in place for the
# install unless the machine has one of its own (containers usually do).
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
	trap 'rm -f "$policy"' EXIT
fi
# The peers' services not installed before (clamav-freshclam comes in as
# clamav-daemon's dependency): disabled at boot below.
new_services=""
for svc in $peer_services; do
	dpkg-query -W -f='${Status}' "$svc" 2>/dev/null | grep -q "ok installed" ||
		new_services="$new_services $svc"
done
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ -n "$own_policy" ]; then
	rm -f "$policy"
	trap - EXIT
fi
# Nor start at boot the services of the test peers installed just now:
# freshclam would fetch signatures from the Internet, and the tests run
# their own instances.
for svc in $new_services; do
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --quiet "$svc" >/dev/null 2>&1 || true
	fi
	if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$svc" ]; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done
node_deps
