#!/bin/sh
# A private PostgreSQL cluster for the tests (never the machine's own):
#
#   pgtest.sh start DIR          new cluster in DIR, running
#   pgtest.sh createdb DIR NAME  a fresh empty database NAME owned by postern
#   pgtest.sh stop DIR           stop it (fast) and remove DIR
#   pgtest.sh run [--] CMD ARGS  start one in a temp dir, run CMD with
#                                POSTERN_TEST_PG_CONNINFO, _PASSFILE, _DIR
#                                exported, stop it (also on failure), exit
#                                with CMD's status
#
# What start leaves in DIR:
#   DIR/data       the cluster (initdb)
#   DIR/.s.PGSQL.N its Unix socket (unix_socket_directories = DIR)
#   DIR/conninfo   "host=127.0.0.1 port=N dbname=postern user=postern"
#   DIR/passfile   role postern's (random) password, one line, mode 0600
#   DIR/env        shell exports for the superuser over the socket
#                  (. DIR/env; psql -c '...'): PGHOST PGPORT PGUSER
#                  PGDATABASE PGBIN
#   DIR/log        the server's log
#
# Authentication: TCP (127.0.0.1 only) needs the password (scram-sha-256);
# the socket trusts whoever can connect to it, and the socket is mode 0700
# (unix_socket_permissions), so that is the cluster's owner and root only.
#
# Users.  PostgreSQL refuses to run as root.  Run as root (CI, the
# developers' machines), the cluster is owned and run by the system user
# postern-pgtest, created here if missing: not nobody, because the daemon
# under test runs as nobody, and it must not be able to read the cluster's
# files or reach the trusted socket.  DIR is then owned by postern-pgtest
# with mode 0711: nobody can open DIR/passfile by name (it is chowned to
# nobody, 0600: the daemon reads it at each connect, as the run user) but
# cannot list DIR or connect to the socket.  Run as another user,
# everything belongs to that user.  DIR's parents must be searchable by
# postern-pgtest (and nobody); tempfile.mkdtemp under /tmp is.
set -eu

PGTEST_USER=postern-pgtest
DAEMON_USER=nobody

pg_bindir() {
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	echo "pgtest: no PostgreSQL server (apt-get install postgresql)" >&2
	return 1
}

is_root() {
	[ "$(id -u)" -eq 0 ]
}

# Runs "$@" as the cluster's owner, from inside DIR (the caller's cwd may
# be /root, which that user cannot enter).
as_owner() {
	if is_root; then
		(cd "$dir" && runuser -u "$PGTEST_USER" -- "$@")
	else
		(cd "$dir" && "$@")
	fi
}

ensure_user() {
	is_root || return 0
	id -u "$PGTEST_USER" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin "$PGTEST_USER"
}

free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Superuser psql over the socket: DIR/env's settings.
su_psql() {
	(. "$dir/env" && "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@")
}

cmd_start() {
	dir=$1
	bin=$(pg_bindir)
	ensure_user
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ -e "$dir/data" ]; then
		echo "pgtest: $dir/data exists" >&2
		return 1
	fi
	if is_root; then
		chown "$PGTEST_USER" "$dir"
		chmod 0711 "$dir"
		if ! runuser -u "$PGTEST_USER" -- test -w "$dir/."; then
			echo "pgtest: $PGTEST_USER cannot write $dir (are its parents searchable?)" >&2
			return 1
		fi
	else
		chmod 0700 "$dir"
	fi
	as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 \
		--no-locale --auth-local=trust --auth-host=scram-sha-256 \
		>"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		return 1
	}
	# Host connections from 127.0.0.1 only; initdb's default hba also has
	# ::1 and replication lines, none of which the tests want.
	printf '%s\n' 'local all all trust' \
		'host all all 127.0.0.1/32 scram-sha-256' |
		as_owner sh -c "cat >'$dir/data/pg_hba.conf'"
	tries=0
	while :; do
		port=$(free_port)
		as_owner sh -c "cat >>'$dir/data/postgresql.conf'" <<EOF
# pgtest.sh
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
unix_socket_permissions = 0700
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
EOF
		if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
			start >/dev/null 2>&1; then
			break
		fi
		tries=$((tries + 1))
		if [ $tries -ge 5 ]; then
			echo "pgtest: the server does not start:" >&2
			tail -n 20 "$dir/log" >&2 || :
			return 1
		fi
	done
	cat >"$dir/env" <<EOF
export PGHOST='$dir'
export PGPORT=$port
export PGUSER=postgres
export PGDATABASE=postgres
export PGBIN='$bin'
EOF
	chmod 0600 "$dir/env"
	pass=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
	# The password goes through stdin, not argv (ps).
	su_psql <<EOF
CREATE ROLE postern LOGIN PASSWORD '$pass';
CREATE DATABASE postern OWNER postern;
EOF
	umask_old=$(umask)
	umask 077
	printf '%s\n' "$pass" >"$dir/passfile"
	umask "$umask_old"
	if is_root; then
		chown "$DAEMON_USER" "$dir/passfile"
	fi
	printf 'host=127.0.0.1 port=%s dbname=postern user=postern\n' "$port" \
		>"$dir/conninfo"
	chmod 0644 "$dir/conninfo"
}

cmd_createdb() {
	dir=$(cd "$1" && pwd)
	name=$2
	case $name in
	'' | *[!a-z0-9_]*)
		echo "pgtest: database name: [a-z0-9_]+ only" >&2
		return 1
		;;
	esac
	su_psql -c "CREATE DATABASE $name OWNER postern"
}

cmd_stop() {
	dir=$1
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	if [ -f "$dir/data/postmaster.pid" ]; then
		bin=$(pg_bindir)
		as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop \
			>/dev/null 2>&1 || :
	fi
	rm -rf "$dir"
}

cmd_run() {
	[ "${1:-}" = "--" ] && shift
	if [ $# -eq 0 ]; then
		echo "usage: pgtest.sh run [--] CMD ARGS..." >&2
		return 2
	fi
	tmp=$(mktemp -d /tmp/postern-pg.XXXXXX)
	chmod 0755 "$tmp"
	trap 'cmd_stop "$tmp/pg"; rm -rf "$tmp"' EXIT
	trap 'exit 130' INT TERM
	cmd_start "$tmp/pg"
	POSTERN_TEST_PG_DIR=$tmp/pg
	POSTERN_TEST_PG_CONNINFO=$(cat "$tmp/pg/conninfo")
	POSTERN_TEST_PG_PASSFILE=$tmp/pg/passfile
	export POSTERN_TEST_PG_DIR POSTERN_TEST_PG_CONNINFO POSTERN_TEST_PG_PASSFILE
	rc=0
	"$@" || rc=$?
	return $rc
}

usage() {
	echo "usage: pgtest.sh start DIR | stop DIR | createdb DIR NAME | run [--] CMD ARGS..." >&2
	exit 2
}

[ $# -ge 1 ] || usage
what=$1
shift
case $what in
start) [ $# -eq 1 ] || usage; cmd_start "$1" ;;
stop) [ $# -eq 1 ] || usage; cmd_stop "$1" ;;
createdb) [ $# -eq 2 ] || usage; cmd_createdb "$1" "$2" ;;
run) cmd_run "$@" ;;
*) usage ;;
esac
