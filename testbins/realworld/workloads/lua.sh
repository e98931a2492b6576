#!/usr/bin/env bash
# Workload for the Lua 5.4 interpreter: usage: lua.sh LUA_BINARY
# Runs an allocation-heavy script (strings, tables, closures, coroutines, trees) and
# a few small one-liners; prints deterministic output.
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$bin" "$here/lua.lua" "${LUA_WORKLOAD_SCALE:-2}"
"$bin" -e 'local t = {} for i = 1, 1000 do t[i] = ("%05d"):format(i) end print(#table.concat(t, "|"))'
echo 'print(string.rep("ab", 3, "-"), select("#", 1, 2, 3), math.type(1), utf8.char(72, 228))' | "$bin" -
