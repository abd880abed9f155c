#!/bin/sh
# Installs the Debian packages postern needs to build, run and test.
# Usage: scripts/deps.sh build|test|bench   (each level includes the ones before)
# Only missing packages are installed; nothing happens when all are present.
set -eu
level=${1:-build}
pkgs="build-essential pkg-config libevent-dev libssl-dev libsqlite3-dev libcrypt-dev
	libc-ares-dev openssl"
case $level in
test|bench) pkgs="$pkgs libcmocka-dev python3 python3-pytest swaks dnsmasq python3-aiosmtpd libnet-ssleay-perl libio-socket-ssl-perl curl clang clang-format libclang-rt-14-dev sqlite3 pflogsumm" ;;
esac
case $level in
bench) pkgs="$pkgs postfix procps dovecot-pop3d" ;;
esac
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root, or: apt-get install$missing" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
