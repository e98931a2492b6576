//! Must-pass analysis on the block graph: does every path from the entry to a
//! return go through a given call? A free function releases its argument on
//! every path, not only on an error path (`bindText` frees its text only when
//! binding fails). The edge a branch takes when the pointer is NULL is excused:
//! `if (p) free(p);` is still a free function, but the other edge is not (a
//! function that tests its text for NULL, then copies it on one path and frees
//! it on another, is no free function). Paths through a test of the pointer
//! against the bounds of a pool its context owns (SQLite's lookaside:
//! `p < db->lookaside.pEnd`) are excused, and so are paths that keep the block
//! in memory instead (a one-slot cache, a lookaside list).

/// Blocks beyond this are not searched (no bit is set: the call is treated as avoidable).
const MAX_BLOCKS: usize = 4000;

/// The block graph of one function with what excuses a path, per block.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub succ: Vec<Vec<usize>>,
    pub exits: Vec<bool>,
    pub guard: Vec<Option<u8>>,
    pub null_edge: Vec<Option<(u8, usize)>>,
    pub checks: Vec<u8>,
    pub quiet: Vec<bool>,
    pub quiet_returns: Vec<u8>,
    pub keeps: Vec<u8>,
}

impl Graph {
    pub fn view(&self) -> Paths<'_> {
        Paths { succ: &self.succ, exits: &self.exits, guard: &self.guard, null_edge: &self.null_edge, checks: &self.checks, quiet: &self.quiet, quiet_returns: &self.quiet_returns, returns_value: true, keeps: &self.keeps }
    }
}

/// A borrowed `Graph`.
#[derive(Clone, Copy)]
pub struct Paths<'a> {
    pub succ: &'a [Vec<usize>],
    pub exits: &'a [bool],
    /// A test of parameter p (pool bounds, a tag's range) that excuses both edges.
    pub guard: &'a [Option<u8>],
    /// A NULL test of parameter p and the block its NULL edge goes to.
    pub null_edge: &'a [Option<(u8, usize)>],
    /// Bit p: the branch ending this block checks parameter p (itself, a member
    /// of its object, a call's verdict on it): an edge of it into quiet blocks
    /// is a refusal (`if (bzf->writing) { *err = SEQUENCE; return; }`).
    pub checks: &'a [u8],
    /// From this block every path returns without a call.
    pub quiet: &'a [bool],
    /// Bit p: a return reached from this block may hand parameter p back.
    pub quiet_returns: &'a [u8],
    /// The function returns a value (not `void`): a quiet path that returns
    /// p (`if (l->n < l->max) { append; return l; }`) is its work, no refusal.
    pub returns_value: bool,
    /// Bit p: this block keeps parameter p's block.
    pub keeps: &'a [u8],
}

impl Paths<'_> {
    /// Bit p set: every entry→exit path passes block `call_block`, unless it is
    /// excused for parameter p. Only bits of `params` are computed.
    pub fn unavoidable(&self, call_block: usize, params: u8) -> u8 {
        self.unavoidable_set(&[call_block], params)
    }

    /// As `unavoidable`, for a set of calls: every path passes one of them
    /// (`if (w) close_w(p); else close_r(p);`).
    pub fn unavoidable_set(&self, blocks: &[usize], params: u8) -> u8 {
        if self.succ.len() > MAX_BLOCKS || params == 0 || blocks.is_empty() {
            return 0;
        }
        let mut out = 0u8;
        for p in 0..6u8 {
            if params & (1 << p) == 0 {
                continue;
            }
            if blocks.contains(&0) || !self.reaches_exit(blocks, p) {
                out |= 1 << p;
            }
        }
        out
    }

    fn reaches_exit(&self, avoid: &[usize], p: u8) -> bool {
        let mut seen = vec![false; self.succ.len()];
        let mut stack = vec![0usize];
        seen[0] = true;
        while let Some(b) = stack.pop() {
            if self.guard[b] == Some(p) || self.keeps.get(b).is_some_and(|k| k & (1 << p) != 0) {
                continue;
            }
            if self.exits[b] {
                return true;
            }
            let null_to = self.null_edge.get(b).copied().flatten().filter(|&(q, _)| q == p).map(|(_, n)| n);
            let refusal = |n: usize| self.checks.get(b).is_some_and(|c| c & (1 << p) != 0) && self.quiet.get(n) == Some(&true)
                && !(self.returns_value && self.quiet_returns.get(n).is_some_and(|r| r & (1 << p) != 0));
            for &n in &self.succ[b] {
                if !avoid.contains(&n) && !seen[n] && null_to != Some(n) && !refusal(n) {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        false
    }
}

/// Blocks from which every path reaches a return without passing a call, and
/// the parameters those returns may hand back (in rax; leftover in a `void`
/// function).
pub fn quiet_blocks(succ: &[Vec<usize>], has_call: &[bool], returns: &[u8]) -> (Vec<bool>, Vec<u8>) {
    let mut quiet: Vec<bool> = has_call.iter().map(|&c| !c).collect();
    let mut ret = returns.to_vec();
    let mut changed = true;
    while changed {
        changed = false;
        for b in 0..succ.len() {
            if quiet[b] && succ[b].iter().any(|&n| !quiet[n]) {
                quiet[b] = false;
                changed = true;
            }
            let r = succ[b].iter().fold(ret[b], |m, &n| m | ret[n]);
            if r != ret[b] {
                ret[b] = r;
                changed = true;
            }
        }
    }
    (quiet, ret)
}

#[cfg(test)]
mod tests {
    use super::Paths;

    #[test]
    fn error_path_free_is_avoidable_but_null_guarded_free_is_not() {
        // 0 → 1 (free) → 2 (exit); 0 → 2 directly.
        let succ = vec![vec![1, 2], vec![2], vec![]];
        let exits = vec![false, false, true];
        let none = [0u8; 3];
        let g = Paths { succ: &succ, exits: &exits, guard: &[None; 3], null_edge: &[None; 3], checks: &[0; 3], quiet: &[false; 3], quiet_returns: &[0; 3], returns_value: true, keeps: &none };
        assert_eq!(g.unavoidable(1, 1), 0);
        // The same shape, but block 0 goes to 2 when p0 is NULL.
        assert_eq!(Paths { null_edge: &[Some((0, 2)), None, None], ..g }.unavoidable(1, 1), 1);
        // ... but when its NULL edge is the one to the free, the other path avoids it.
        assert_eq!(Paths { null_edge: &[Some((0, 1)), None, None], ..g }.unavoidable(1, 1), 0);
        // A check of p whose edge returns at once, without a call, refuses.
        assert_eq!(Paths { checks: &[1, 0, 0], quiet: &[false, false, true], ..g }.unavoidable(1, 1), 1);
        assert_eq!(Paths { checks: &[2, 0, 0], quiet: &[false, false, true], ..g }.unavoidable(1, 1), 0);
        // A pool-bounds test excuses both edges.
        assert_eq!(Paths { guard: &[Some(0), None, None], ..g }.unavoidable(1, 1), 1);
        // Straight line: 0 → 1 (free) → 2.
        let line = vec![vec![1], vec![2], vec![]];
        assert_eq!(Paths { succ: &line, ..g }.unavoidable(1, 1), 1);
        // 0 → 1 (free) → 3; 0 → 2 (keeps p0 in a cache slot) → 3.
        let cache = vec![vec![1, 2], vec![3], vec![3], vec![]];
        let exits4 = vec![false, false, false, true];
        let c = Paths { succ: &cache, exits: &exits4, guard: &[None; 4], null_edge: &[None; 4], checks: &[0; 4], quiet: &[false; 4], quiet_returns: &[0; 4], returns_value: true, keeps: &[0, 0, 1, 0] };
        assert_eq!(c.unavoidable(1, 1), 1);
        assert_eq!(Paths { keeps: &[0; 4], ..c }.unavoidable(1, 1), 0);
    }
}
