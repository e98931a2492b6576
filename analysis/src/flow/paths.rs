//! Must-pass analysis on the block graph: does every path from the entry to a
//! return go through a given call? A free function releases its argument on
//! every path, not only on an error path (`bindText` frees its text only when
//! binding fails). Paths that leave through a branch testing the pointer for
//! NULL are excused: `if (p) free(p);` is still a free function; so are paths
//! through a test of the pointer against the bounds of a pool its context owns
//! (SQLite's lookaside: `p < db->lookaside.pEnd`), and paths that keep the block
//! in memory instead (a one-slot cache, a lookaside list).

/// Blocks beyond this are not searched (no bit is set: the call is treated as avoidable).
const MAX_BLOCKS: usize = 4000;

/// Bit p set: every entry→exit path passes block `call_block`, unless it branches
/// at a block whose `guard` (a NULL or pool-bounds test) is parameter p. Only bits of `params` are computed.
pub fn unavoidable(succ: &[Vec<usize>], exits: &[bool], guard: &[Option<u8>], keeps: &[u8], call_block: usize, params: u8) -> u8 {
    if succ.len() > MAX_BLOCKS || params == 0 {
        return 0;
    }
    let mut out = 0u8;
    for p in 0..6u8 {
        if params & (1 << p) == 0 {
            continue;
        }
        if call_block == 0 || !reaches_exit(succ, exits, guard, keeps, call_block, p) {
            out |= 1 << p;
        }
    }
    out
}

fn reaches_exit(succ: &[Vec<usize>], exits: &[bool], guard: &[Option<u8>], keeps: &[u8], avoid: usize, p: u8) -> bool {
    let mut seen = vec![false; succ.len()];
    let mut stack = vec![0usize];
    seen[0] = true;
    while let Some(b) = stack.pop() {
        if guard[b] == Some(p) || keeps.get(b).is_some_and(|k| k & (1 << p) != 0) {
            continue;
        }
        if exits[b] {
            return true;
        }
        for &n in &succ[b] {
            if n != avoid && !seen[n] {
                seen[n] = true;
                stack.push(n);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::unavoidable;

    #[test]
    fn error_path_free_is_avoidable_but_null_guarded_free_is_not() {
        // 0 → 1 (free) → 2 (exit); 0 → 2 directly.
        let succ = vec![vec![1, 2], vec![2], vec![]];
        let exits = vec![false, false, true];
        let none = [0u8; 3];
        assert_eq!(unavoidable(&succ, &exits, &[None, None, None], &none, 1, 1), 0);
        // The same shape, but block 0 branches on p0 being NULL.
        assert_eq!(unavoidable(&succ, &exits, &[Some(0), None, None], &none, 1, 1), 1);
        // Straight line: 0 → 1 (free) → 2.
        let line = vec![vec![1], vec![2], vec![]];
        assert_eq!(unavoidable(&line, &exits, &[None, None, None], &none, 1, 1), 1);
        // 0 → 1 (free) → 3; 0 → 2 (keeps p0 in a cache slot) → 3.
        let cache = vec![vec![1, 2], vec![3], vec![3], vec![]];
        let exits4 = vec![false, false, false, true];
        assert_eq!(unavoidable(&cache, &exits4, &[None; 4], &[0, 0, 1, 0], 1, 1), 1);
        assert_eq!(unavoidable(&cache, &exits4, &[None; 4], &[0; 4], 1, 1), 0);
    }
}
