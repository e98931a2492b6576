# Deterministic pseudo-text generator shared by the compressor workloads.
# usage: awk -v lines=N -v seed=S -f gen-text.awk
# A 31-bit LCG on integers (exact in any awk's doubles) picks words and numbers.
function rnd(n) { state = (state * 1103515245 + 12345) % 2147483648; return int(state / 65536) % n }
BEGIN {
  split("alloc site heap chunk malloc free realloc wrapper pointer arena pool bump " \
        "lua table string sqlite page cache btree zstd frame block huffman entropy " \
        "the of and to in is that for it with as was on be by at this", w, " ")
  nw = 0; for (k in w) nw++
  state = seed + 0
  for (i = 0; i < lines; i++) {
    n = 4 + rnd(12); line = ""
    for (j = 0; j < n; j++) {
      if (rnd(10) == 0) line = line sprintf("%d ", rnd(100000))
      else line = line w[1 + rnd(nw)] " "
    }
    print i ": " line
  }
}
