#!/usr/bin/env bash
# Workload for the zstd CLI: usage: zstd.sh ZSTD_BINARY
# Compresses generated text at several levels (single- and multi-threaded, long mode),
# trains a dictionary on many small files and uses it, decompresses everything and
# checks the round trips. Prints sizes and hashes of the compressed data: deterministic.
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
awk -v lines=40000 -v seed=7 -f "$here/gen-text.awk" >text
head -c 600000 text >head
mkdir small
awk -v lines=8000 -v seed=11 -f "$here/gen-text.awk" | split -l 20 -a 3 - small/s
for opt in -1 -3 "-3 -T2" -9 "--long=24 -5" -16 "-19 -T2"; do
  # shellcheck disable=SC2086
  "$bin" -q -c $opt <head >out.zst
  "$bin" -q -d -c out.zst | cmp - head
  echo "level $opt: $(stat -c %s out.zst) bytes $(sha256sum <out.zst | cut -c1-16)"
done
"$bin" -q -6 -T2 text -o text.zst
"$bin" -q -t text.zst && echo "test ok"
"$bin" -q --train small/* -o dict --maxdict=16384
echo "dict $(stat -c %s dict) bytes $(sha256sum <dict | cut -c1-16)"
for f in small/saaa small/saab small/sapj; do
  "$bin" -q -c -D dict "$f" >one.zst
  "$bin" -q -d -c -D dict one.zst | cmp - "$f"
  echo "$(basename "$f") $(stat -c %s "$f") -> $(stat -c %s one.zst)"
done
mkdir zdir
"$bin" -q -r -D dict small --output-dir-flat zdir
echo "$(ls zdir | wc -l) files compressed with the dictionary"
"$bin" -q -d -c text.zst | sha256sum | cut -c1-16
"$bin" -l text.zst | tail -1 | tr -s ' '
