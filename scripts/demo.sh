#!/bin/sh
# `make run`: a demo instance under ./run/ on unprivileged loopback ports.
# Creates (once) postern.conf, a self-signed certificate for localhost and
# 127.0.0.1, the SQLite directory with domain example.test and user
# alice@example.test, then runs posternd in the foreground.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/run
ctl="$top/bin/posternctl -c $run/postern.conf"
mkdir -p "$run"
chmod 755 "$run"
if [ "$(id -u)" -eq 0 ]; then runuser=nobody; else runuser=$(id -un); fi
if [ ! -f "$run/postern.conf" ]; then
	cat >"$run/postern.conf" <<CONF
# postern demo instance (see docs/configuration.md for every key)
hostname = localhost
data_dir = $run/data
user = $runuser
smtp_listen = 127.0.0.1:2525 [::1]:2525
submission_listen = 127.0.0.1:2587
submissions_listen = 127.0.0.1:2465
pop3_listen = 127.0.0.1:2110
pop3s_listen = 127.0.0.1:2995
imap_listen = 127.0.0.1:2143
imaps_listen = 127.0.0.1:2993
# the web admin (HTTPS only): https://127.0.0.1:2443/
admin_listen = 127.0.0.1:2443
tls_cert = $run/cert.pem
tls_key = $run/key.pem
log_level = info
CONF
	# [::1] may be missing (IPv6 off): keep only what binds.
	if ! python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
		sed -i 's/ \[::1\]:2525//' "$run/postern.conf"
	fi
fi
if [ ! -f "$run/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
	chmod 600 "$run/key.pem"
fi
if ! $ctl domain list 2>/dev/null | grep -qx example.test; then
	$ctl domain add example.test
	pw=$(openssl rand -base64 12)
	printf '%s\n' "$pw" | $ctl user add alice@example.test
	printf '%s\n' "$pw" >"$run/alice.password"
	chmod 600 "$run/alice.password"
fi
# An instance made before the web admin existed: turn it on.
if ! grep -q '^admin_listen' "$run/postern.conf"; then
	$ctl config set admin_listen 127.0.0.1:2443 >/dev/null
fi
if ! $ctl admin list 2>/dev/null | grep -q '^admin	'; then
	apw=$(openssl rand -base64 12)
	printf '%s\n' "$apw" | $ctl admin add admin
	printf '%s\n' "$apw" >"$run/admin.password"
	chmod 600 "$run/admin.password"
fi
cat <<MSG

postern demo: SMTP 127.0.0.1:2525, submission 2587 (STARTTLS), submissions 2465 (TLS),
POP3 2110 (STLS), POP3S 2995, IMAP 2143 (STARTTLS), IMAPS 2993
user alice@example.test, password: $(cat "$run/alice.password")

Send alice a message (in another terminal):
  swaks -s 127.0.0.1 -p 2525 -f demo@example.net -t alice@example.test
It lands in: $run/data/mail/example.test/alice/Maildir/new/
Read it over POP3:
  curl -k --ssl-reqd -u 'alice@example.test:$(cat "$run/alice.password")' pop3://127.0.0.1:2110/1
or over IMAP:
  curl -k --ssl-reqd -u 'alice@example.test:$(cat "$run/alice.password")' 'imap://127.0.0.1:2143/INBOX;UID=1'

The web admin: https://127.0.0.1:2443/ (the demo certificate is self-signed)
  admin name: admin, password: $(cat "$run/admin.password")

Stop with Ctrl-C.
MSG
exec "$top/bin/posternd" -f -c "$run/postern.conf"
