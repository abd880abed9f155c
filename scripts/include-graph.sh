#!/bin/sh
# include-graph.sh: the #include edges between src/ subfolders, and a
# check that they form no cycle (run by `make test`).
#
# A header include/X.h belongs to the folder that implements it: the one
# holding X.c, else X_*.c (include/pop3.h -> src/pop3/pop3_*.c); a header
# with neither belongs to the folder of its name's first part, X_ of X_Y.h
# (include/imap_server.h -> src/imap/imap_*.c), and one with none of
# these is shared and belongs to no folder.  A file's folder is its
# src/ subfolder (a header in include/: the folder it belongs to).  Every
# `#include "X.h"` from a file in folder A of a header of folder B != A
# is an edge A -> B, and so is one reached through shared headers
# (A's file includes shared S, S includes B's header: A -> B via S).  Prints "A -> B  (file: header, ...)" per edge, then
# "acyclic" and exits 0, or prints the cycle and exits 1.
# Usage: scripts/include-graph.sh [-q]   (-q: only the verdict)
set -eu
cd "$(dirname "$0")/.."
quiet=${1:-}

folder_of_header() {
	local h c d p
	h=${1%.h}
	p=${h%%_*}
	# The folder named like the prefix first (smtp_x.h is smtp's, not
	# queue's smtp_reply.c's), then any folder's X.c or X_*.c.
	for c in src/*/"$h".c src/*/"$h"_*.c src/*/"$h".h \
	    src/"$p"/*.c src/*/"$p".c src/*/"$p"_*.c; do
		[ -e "$c" ] || continue
		d=${c#src/}
		echo "${d%%/*}"
		return
	done
}

folder_of_file() {
	case $1 in
	src/*) d=${1#src/}; echo "${d%%/*}" ;;
	include/*) folder_of_header "${1#include/}" ;;
	esac
}

includes_of() {
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"
}

# The folder headers file $2 reaches, as "header via" lines: its own
# includes, and through each shared header (one of no folder) that
# header's includes, transitively; $3 lists the shared headers already
# walked (include cycles between shared headers stop there).
reached() {
	local inc h to
	includes_of "$2" | while read -r inc; do
		h=${inc##*/}
		to=$(folder_of_header "$h")
		if [ -n "$to" ]; then
			echo "$to $1:$inc"
		elif [ -e "include/$h" ]; then
			case " $3 " in *" $h "*) continue ;; esac
			reached "$1:$inc" "include/$h" "$3 $h"
		fi
	done
}

edges=$(mktemp)
trap 'rm -f "$edges" "$edges.pairs" "$edges.err"' EXIT
for f in include/*.h src/*/*.c src/*/*.h; do
	from=$(folder_of_file "$f")
	[ -n "$from" ] || continue
	reached "$f" "$f" "" | while read -r to via; do
		if [ "$to" != "$from" ]; then
			echo "$from $to $via"
		fi
	done
done | sort -u >"$edges"

if [ "$quiet" != -q ]; then
	awk '{k = $1 " -> " $2; w[k] = w[k] (w[k] == "" ? "" : ", ") $3}
	    END {for (k in w) print k "  (" w[k] ")"}' "$edges" | sort
fi
awk '{print $1, $2}' "$edges" | sort -u >"$edges.pairs"
if tsort <"$edges.pairs" >/dev/null 2>"$edges.err"; then
	echo "include graph: acyclic"
	exit 0
fi
echo "include graph: CYCLE between src/ subfolders:" >&2
grep -v "input contains a loop" "$edges.err" |
    sed 's/^tsort: /  /' >&2 || true
exit 1
