//! Where a function keeps a parameter's block instead of releasing it, and
//! whether that counts as a release for the free rule (`paths.rs`).
//!
//! Keeping the block in a member of an object a parameter reaches is what a
//! cache or a free list does (`if (c->slot == NULL) c->slot = p; else free(p);`,
//! `n->next = a->free; a->free = n;`), so such a path is excused like a release.
//! But the same store is how an attach-or-delete function takes ownership
//! (`if (w) w->part = part; else delete(part);`: SQLite's sqlite3WindowAssemble,
//! sqlite3WindowAttach, fts3EvalPhraseMergeToken): there the slot is simply
//! overwritten. A keep in a member is therefore excused only when the slot was
//! found empty on every path to it (a one-slot cache), or when the slot's old
//! value was linked into the block (a push onto a list).

use super::value::{Val, LOAD, LOAD2, OTHER_BASE};

/// A member slot: (parameter, or `LOAD2 | parameter` for `param->[via]`),
/// the first load's offset when two-level (else 0), the member's offset.
pub type Slot = (u8, i64, i32);

/// The slot a value was loaded from, when it is exactly such a load.
pub fn slot_of(v: &Val) -> Option<Slot> {
    if v.kinds != LOAD || v.params != 0 || v.calls != 0 || v.outcalls != 0 {
        return None;
    }
    let b = v.load_base;
    if b < 8 {
        Some((b, 0, v.load_off))
    } else if b != OTHER_BASE && b & LOAD2 != 0 {
        Some((b, v.num, v.load_off))
    } else {
        None
    }
}

/// What the interpreter records about keeps in member slots.
#[derive(Debug, Clone, Default)]
pub struct SlotKeeps {
    /// (block, parameter kept, slot it was stored into).
    pub keeps: Vec<(usize, u8, Slot)>,
    /// (block whose branch tests the slot for NULL, instruction its NULL edge goes to).
    pub tests: Vec<(usize, Slot, usize)>,
    /// (parameter, slot): the slot's value was stored into the parameter's block.
    pub links: Vec<(u8, Slot)>,
}

impl SlotKeeps {
    pub fn keep(&mut self, block: usize, p: u8, s: Slot) {
        if !self.keeps.contains(&(block, p, s)) && self.keeps.len() < 256 {
            self.keeps.push((block, p, s));
        }
    }
    pub fn test(&mut self, block: usize, s: Slot, null_to: usize) {
        if !self.tests.contains(&(block, s, null_to)) && self.tests.len() < 256 {
            self.tests.push((block, s, null_to));
        }
    }
    pub fn link(&mut self, p: u8, s: Slot) {
        if !self.links.contains(&(p, s)) && self.links.len() < 256 {
            self.links.push((p, s));
        }
    }

    /// Add to `keeps` (per block, bit p) every keep that counts as a release.
    /// `block_of` maps an instruction index to its block.
    pub fn excused_into(&self, succ: &[Vec<usize>], block_of: impl Fn(usize) -> usize, keeps: &mut [u8]) {
        for &(b, p, s) in &self.keeps {
            let pushed = self.links.contains(&(p, s));
            if pushed || self.found_empty(succ, &block_of, b, s) {
                if let Some(m) = keeps.get_mut(b) {
                    *m |= 1 << p;
                }
            }
        }
    }

    /// Every path from the entry to block `b` takes the NULL edge of a test of slot `s`.
    fn found_empty(&self, succ: &[Vec<usize>], block_of: &impl Fn(usize) -> usize, b: usize, s: Slot) -> bool {
        let null_edges: Vec<(usize, usize)> = self.tests.iter().filter(|t| t.1 == s).map(|t| (t.0, block_of(t.2))).collect();
        if null_edges.is_empty() || b == 0 {
            return false;
        }
        let mut seen = vec![false; succ.len()];
        let mut stack = vec![0usize];
        seen[0] = true;
        while let Some(x) = stack.pop() {
            if x == b {
                return false;
            }
            for &n in &succ[x] {
                if !seen[n] && !null_edges.contains(&(x, n)) {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        true
    }
}
