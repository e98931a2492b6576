#!/bin/bash
# Self-check of the test programs, run by `make -C testbins check`:
#  1. every .expect line names a function that exists (nm) in the binaries of
#     the variants it applies to (a `not` line: in at least one of them), a
#     line limited by @variants names a function that does NOT exist at the
#     other variants (so the limit is real), and the syntax is right (kinds,
#     roles, positions, variant names);
#  2. every variant of every program prints the same stdout/stderr and exits
#     with the same status as its -O0 build (also for the error-path arguments).
# Needs only bash, nm and cmp. Exits non-zero on the first kind of failure found.
set -u
cd "$(dirname "$0")"
OUT=out
VARIANTS="O0 O2 O2nopie O2strip"
fail=0

bin_of() {   # program variant → binary path (the unstripped twin for O2strip)
    local p=$1 v=$2
    [ "$v" = O2strip ] && v=O2
    if [[ $p == lib* ]]; then echo "$OUT/$p.$v.so"; else echo "$OUT/$p.$v"; fi
}

applies() {  # limit variant → 0 if a line limited to `limit` applies at variant
    local lim=$1 v=$2
    [ -z "$lim" ] && return 0
    local IFS=,
    for l in $lim; do
        [ "$l" = "$v" ] && return 0
        [ "$v" = O2strip ] && [ "$l" = O2 ] && return 0
    done
    return 1
}

declare -A seen   # "exp name" → 1 once a `not` name was found at some variant
for exp in *.expect; do
    prog=${exp%.expect}
    for v in $VARIANTS; do
        bin=$(bin_of "$prog" "$v")
        [ -f "$bin" ] || { echo "MISSING $bin"; fail=1; continue; }
        syms=$(nm --defined-only -f posix "$bin" | awk '$2 ~ /^[TtWw]$/ { print $1 }')
        while read -r line; do
            line=${line%%#*}
            set -- $line
            [ $# -eq 0 ] && continue
            neg=0
            if [ "$1" = not ]; then neg=1; shift; fi
            name=$1
            lim=""
            last=${!#}
            [[ $last == @* ]] && lim=${last#@}
            if [ $neg = 0 ] && [ "$v" = O0 ]; then   # syntax, once per line
                case ${2:-} in alloc|realloc|free|suballoc|ctor) ;; *) echo "$exp: $name: bad kind '${2:-}'"; fail=1 ;; esac
                for w in "${@:3}"; do
                    [[ $w == @* || $w == needs=dwarf ]] && continue
                    [[ $w =~ ^(size|count|ptr|out)=[0-9]+$ ]] || { echo "$exp: $name: bad role '$w'"; fail=1; }
                done
            fi
            if [ -n "$lim" ]; then
                for l in ${lim//,/ }; do
                    case $l in O0|O2|O2nopie|O2strip) ;; *) echo "$exp: $name: bad variant '$l'"; fail=1 ;; esac
                done
            fi
            present=0
            grep -qxF -- "$name" <<<"$syms" && present=1
            if applies "$lim" "$v"; then
                [ $neg = 1 ] && [ $present = 1 ] && seen["$exp $name"]=1
                if [ $neg = 0 ] && [ $present = 0 ]; then
                    echo "$exp: $name expected at $v but $bin has no such function"; fail=1
                fi
            elif [ -n "$lim" ] && [ $present = 1 ]; then
                echo "$exp: $name is limited to @$lim but exists at $v too"; fail=1
            fi
        done < "$exp"
    done
done
# A `not NAME` must exist at some variant it applies to (catches typos).
for exp in *.expect; do
    while read -r kw name _; do
        [ "$kw" = not ] || continue
        [ -n "${seen["$exp $name"]:-}" ] || { echo "$exp: not $name: no such function at any variant"; fail=1; }
    done < <(sed 's/#.*//' "$exp")
done
[ $fail = 0 ] && echo "check: every .expect name exists where it applies"

# Same behaviour at every variant.
run() {  # binary args... → "stdout\n--stderr--\nstderr\n--status N--"
    local b=$1; shift
    local o e s
    o=$("$b" "$@" 2>/tmp/check-testbins-err.$$); s=$?
    e=$(cat /tmp/check-testbins-err.$$)
    printf '%s\n--stderr--\n%s\n--status %d--\n' "$o" "$e" "$s"
}
cases=(wrappers "wrappers oom" "wrappers die" "wrappers abort" sizes nested "nested fatal" fnptr pool negatives
       cxxalloc stress "stress 2 1000" demo slabuser)
for c in "${cases[@]}"; do
    set -- $c
    prog=$1; shift
    ref=$(run "$OUT/$prog.O0" "$@")
    for v in O2 O2nopie O2strip $( [ "$prog" = wrappers ] && echo O2noplt O2cet ); do
        got=$(run "$OUT/$prog.$v" "$@")
        if [ "$got" != "$ref" ]; then
            echo "DIFFERENT: $prog.$v $* vs $prog.O0"; fail=1
        fi
    done
done 2>/dev/null
rm -f /tmp/check-testbins-err.$$
[ $fail = 0 ] && echo "check: every variant behaves like -O0 (stdout, stderr, status)"
exit $fail
