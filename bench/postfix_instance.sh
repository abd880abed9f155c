#!/bin/sh
# Creates and starts a private Postfix instance for benchmarks: its own
# config, queue and data directories under DIR, SMTP on 127.0.0.1:PORT,
# virtual Maildir delivery for USERS@example.test under DIR/mail.  Never
# touches /etc/postfix.  Usage: postfix_instance.sh DIR PORT USER...
# Stop it with: postfix -c DIR/etc stop.  RELAYHOST=[127.0.0.1]:PORT makes
# it relay everything for 127.0.0.0/8 clients to that host; POSTFIX_EXTRA
# (lines) is appended to main.cf (bench/auth_bench.py: smtpd_milters).
set -eu
dir=$1 port=$2
shift 2
mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
chown postfix "$dir/data"
chown nobody:nogroup "$dir/mail"
sed -e "s/^smtp      inet.*/127.0.0.1:$port inet n - n - - smtpd/" \
	-e 's/^\([a-z]*[ ]*[a-z]*[ ]*[-ny][ ]*[-ny][ ]*\)y/\1n/' \
	/usr/share/postfix/master.cf.dist >"$dir/etc/master.cf"
: >"$dir/etc/vmailbox"
for u in "$@"; do
	echo "$u@example.test example.test/$u/Maildir/" >>"$dir/etc/vmailbox"
done
cat >"$dir/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
myhostname = postfix-bench.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = example.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = hash:$dir/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_destination_concurrency_limit = 50
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 1100
disable_dns_lookups = yes
smtp_dns_support_level = disabled
relayhost = ${RELAYHOST:-}
default_destination_concurrency_limit = 20
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no
${POSTFIX_EXTRA:-}
CF
postmap "$dir/etc/vmailbox"
postfix -c "$dir/etc" check
postfix -c "$dir/etc" start
