#!/usr/bin/env bash
# Workload for pcre2test (PCRE2's test driver): usage: pcre2test.sh PCRE2TEST_BINARY
# Runs the package's own test inputs 1, 2, 4 and 5 as its RunTest does (pattern compilation, matching,
# DFA matching, UTF/UCP) copied by testbins/realworld/build into
# $ALLOCSITE_REALWORLD_DIR/data/pcre2; prints pcre2test's deterministic output.
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data=${ALLOCSITE_REALWORLD_DIR:-$here/../../../build/realworld}/data/pcre2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
cp "$data/testbtables" .     # testinput2 loads ./testbtables
"$bin" -C | head -20
"$bin" -q "$data/testinput1"
"$bin" -q "$data/testinput2"
"$bin" -q -error -70,-62,-2,-1,0,100,101,191,200
"$bin" -q "$data/testinput4"
"$bin" -q "$data/testinput5"
"$bin" -q -dfa "$data/testinput1" | sha256sum | cut -c1-16
