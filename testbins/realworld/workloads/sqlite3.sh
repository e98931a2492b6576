#!/usr/bin/env bash
# Workload for the SQLite shell: usage: sqlite3.sh SQLITE3_BINARY
# Runs sqlite3.sql against an on-disk database in a fresh temporary directory and a
# few dot-commands; prints deterministic output.
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" -batch -bail "$tmp/w.db" <"$here/sqlite3.sql"
"$bin" -batch "$tmp/w.db" '.tables' '.schema customer' 'SELECT count(*) FROM orders;'
"$bin" -batch -csv -header :memory: "SELECT 1 AS a, 'x,y' AS b, NULL AS c, 2.5 AS d;"
