#!/usr/bin/env bash
# Workload for the bzip2 CLI: usage: bzip2.sh BZIP2_BINARY
# Compresses generated text with small and large block sizes (file and stdin modes),
# tests, decompresses (also with the low-memory -s decoder) and checks the round trips.
# Prints sizes and hashes: deterministic.
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
awk -v lines=30000 -v seed=3 -f "$here/gen-text.awk" >text
for opt in -1 -5 -9; do
  "$bin" -c $opt <text >out.bz2
  "$bin" -d -c out.bz2 | cmp - text
  "$bin" -d -s -c out.bz2 | cmp - text
  echo "bzip2 $opt: $(stat -c %s out.bz2) bytes $(sha256sum <out.bz2 | cut -c1-16)"
done
cp text t2 && "$bin" -k -9 t2 && "$bin" -t t2.bz2 && echo "test ok"
rm t2 && "$bin" -d t2.bz2 && cmp t2 text && echo "file round trip ok"
printf 'tiny\n' | "$bin" -c | "$bin" -d -c
: | "$bin" -c | "$bin" -d -c | wc -c
