//! The worklist over one function's blocks: each block is interpreted from the
//! join of its predecessors' states until nothing changes, then the block graph
//! (successors, exits, NULL tests, checks, keeps) is handed to `paths.rs`, which
//! decides which calls every path must pass. Apart from the step so that the
//! per-instruction code and the per-function bookkeeping read separately.

use super::{is_padding, Env, Interp, Succs, MAX_VISITS_PER_BLOCK};
use crate::flow::state::State;
use crate::flow::value::Val;
use iced_x86::{FlowControl, Mnemonic};

impl<E: Env> Interp<'_, E> {
    pub(super) fn run(&mut self) {
        if self.insns.is_empty() {
            return;
        }
        let leaders = self.leaders();
        let block_of = |i: usize| leaders.partition_point(|&l| l <= i) - 1;
        let nblocks = leaders.len();
        let mut input: Vec<Option<State>> = vec![None; nblocks];
        let mut visits = vec![0usize; nblocks];
        input[0] = Some(State::entry());
        let mut work: Vec<usize> = vec![0];
        let mut queued = vec![false; nblocks];
        queued[0] = true;
        let mut reached = vec![false; nblocks];
        let mut succ_of: Vec<Vec<usize>> = vec![Vec::new(); nblocks];
        let mut guard: Vec<Option<u8>> = vec![None; nblocks];
        // (parameter, instruction the branch goes to when it is NULL)
        let mut null_edge: Vec<Option<(u8, usize)>> = vec![None; nblocks];
        let mut checks: Vec<u8> = vec![0; nblocks];
        // The values each block's checking branch compares (see `stored_back`).
        let mut tested: Vec<[Val; 2]> = vec![[Val::TOP; 2]; nblocks];
        self.keeps = vec![0; nblocks];
        let mut switch_blocks: Vec<usize> = Vec::new();
        let mut range_test: Vec<Option<u8>> = vec![None; nblocks];
        let mut switch_jump = vec![false; nblocks];
        // Scratch kept across block visits, so that a visit reuses their memory:
        // the state being interpreted (a copy of the block's input), and the
        // values the block stores into objects (not its own frame).
        let mut st = State::unknown();
        let mut written: Vec<Val> = Vec::new();
        loop {
            while let Some(b) = work.pop() {
                queued[b] = false;
                reached[b] = true;
                visits[b] += 1;
                if visits[b] > MAX_VISITS_PER_BLOCK {
                    self.sum.imprecise = true;
                    continue;
                }
                let Some(inp) = &input[b] else { continue };
                st.clone_from(inp);
                self.cur_block = b;
                self.fwd = None;
                let first = leaders[b];
                let last = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                let mut succs = Succs::NONE;
                written.clear();
                // A call's result tested for NULL, and the instruction its NULL edge goes to.
                let mut null_result: Option<(Val, usize)> = None;
                // What the branch checks is judged on this visit's state, the widest
                // so far: an early visit may have seen only some of the paths in
                // (SQLite's rtreeUpdate reaches `nBusy--; if (nBusy == 0)` from a
                // path that did not decrement yet, then from those that did).
                checks[b] = 0;
                for i in first..last {
                    if i > first && self.insns[i].flow_control() == FlowControl::ConditionalBranch {
                        let (cmp, jcc) = (&self.insns[i - 1], &self.insns[i]);
                        guard[b] = guard[b].or(self.pool_test(cmp, jcc, &st));
                        // The check may sit a few moves before its branch (bzip2's
                        // `cmpb $0,writing(%rsi); movl $0,lastErr(%rsi); jne`).
                        if let Some(setter) = (first..i).rev().map(|j| &self.insns[j]).find(|x| x.rflags_modified() != 0) {
                            if !self.tests_written_counter(setter, &st, &written) {
                                checks[b] |= self.checked_params(setter, &st);
                                tested[b] = self.tested_values(setter, &st);
                            }
                        }
                        null_edge[b] = null_edge[b].or_else(|| {
                            let p = self.null_test(cmp, &st)?;
                            let taken = self.local_target(jcc)?;
                            match jcc.mnemonic() {
                                Mnemonic::Je => Some((p, taken)),
                                Mnemonic::Jne => Some((p, i + 1)),
                                _ => None,
                            }
                        });
                        range_test[b] = range_test[b].or(self.tag_range_test(cmp, jcc, &st));
                        null_result = self.null_result_test(cmp, jcc, i, &st);
                        if let Some((s, to)) = self.null_slot_test(cmp, jcc, i, &st) {
                            self.slot_keeps.test(b, s, to);
                        }
                    }
                    if let Some(v) = self.stored_to_object(i, &st) {
                        written.push(v);
                    }
                    self.note_reads(i, &mut st);
                    let verdict_of = self.setcc_source(first, i, &st);
                    let step = self.step(i, &mut st);
                    if let Some((g, v)) = verdict_of {
                        st.regs[g] = v;
                    }
                    if let Some(next) = step {
                        // An indirect jump that is no tail call: a switch.
                        switch_jump[b] |= self.insns[i].flow_control() == FlowControl::IndirectBranch && !self.call_idx.contains_key(&i);
                        succs = next;
                        break;
                    }
                    if i + 1 == last && last < self.insns.len() {
                        succs.push(last);
                    }
                }
                for s in succs.iter() {
                    let sb = block_of(s);
                    if !succ_of[b].contains(&sb) {
                        succ_of[b].push(sb);
                    }
                    // On the edge where a call's result was found NULL, that value is
                    // the constant 0 wherever it is held: `*out = p` on the failure
                    // path of `p = realloc(...); if (!p) { *out = p; return ERR; }`
                    // hands back no storage.
                    let nulled;
                    let out_st = match null_result {
                        Some((v, t)) if t == s => {
                            nulled = st.nulled(&v);
                            &nulled
                        }
                        _ => &st,
                    };
                    let changed = match &mut input[sb] {
                        Some(old) => old.join_from(out_st),
                        slot @ None => {
                            *slot = Some(out_st.clone());
                            true
                        }
                    };
                    if changed && !queued[sb] {
                        queued[sb] = true;
                        work.push(sb);
                    }
                }
            }
            // Blocks reached only through jump tables or by the unwinder (landing
            // pads): analyze them from an unknown state. Alignment padding is skipped;
            // a `ret` reached this way makes the returns imprecise.
            let next = (0..nblocks).find(|&b| {
                let (lo, hi) = (leaders[b], leaders.get(b + 1).copied().unwrap_or(self.insns.len()));
                !reached[b] && input[b].is_none() && !self.insns[lo..hi].iter().all(is_padding)
            });
            match next {
                // Dead code after a noreturn call, and what only it branches to:
                // analyzing it from an unknown state would make the returns it
                // jumps back into unknown too.
                Some(b) if self.after_noreturn.contains(&leaders[b]) => {
                    reached[b] = true;
                    for t in self.static_succs(leaders[b], leaders.get(b + 1).copied().unwrap_or(self.insns.len())) {
                        if !self.after_noreturn.contains(&t) {
                            self.after_noreturn.push(t);
                        }
                    }
                }
                Some(b) => {
                    let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                    if self.insns[leaders[b]..hi].iter().any(|i| i.flow_control() == FlowControl::Return) {
                        self.sum.imprecise = true;
                    }
                    // A case of a switch starts from the state at the switch jump
                    // (Lua's `freeobj(L, o)` frees `o` in every case); without a
                    // switch, from an unknown state.
                    input[b] = Some(self.switch_state.clone().unwrap_or_else(State::unknown));
                    if self.switch_state.is_some() {
                        switch_blocks.push(b);
                    }
                    queued[b] = true;
                    work.push(b);
                }
                None => {
                    // Switch jumps found since some cases were seeded widen their entry.
                    let Some(sw) = self.switch_state.clone() else { break };
                    let mut again = false;
                    for &b in &switch_blocks {
                        if input[b].as_mut().is_some_and(|st| st.join_from(&sw)) && !queued[b] {
                            queued[b] = true;
                            work.push(b);
                            again = true;
                        }
                    }
                    if !again {
                        break;
                    }
                }
            }
        }
        // A tested value that the function writes back into the member it was read
        // from, in any block, is a counter being updated (`if (--p->busy == 0)
        // free(p)` where gcc tests before it stores): a reference count reaching
        // zero, no check of p's state whose other edge refuses p.
        for b in 0..nblocks {
            if checks[b] != 0 && tested[b].iter().any(|v| self.stored_back(v)) {
                checks[b] = 0;
            }
        }
        let exits: Vec<bool> = (0..nblocks)
            .map(|b| {
                let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                self.ret_at.range(leaders[b]..hi).next().is_some()
            })
            .collect();
        // The range check in front of a switch on the pointee's type tag
        // (`switch (o->tt)` in Lua's freeobj): a tag no case handles is no object
        // the function is given, so its path is excused like a NULL test's.
        for b in 0..nblocks {
            if let Some(p) = range_test[b].filter(|_| guard[b].is_none() && succ_of[b].iter().any(|&n| switch_jump[n])) {
                guard[b] = Some(p);
            }
        }
        let null_block: Vec<Option<(u8, usize)>> = null_edge.iter().map(|e| e.and_then(|(p, i)| (i < self.insns.len()).then(|| (p, block_of(i))))).collect();
        // Behind a partial-inlining clone's entry tests every branch on the
        // pointer being NULL counts, both of its edges (see `split_clone_free`).
        let entry_guard: Vec<Option<u8>> = guard.iter().zip(&null_block).map(|(g, e)| g.or(e.map(|(p, _)| p))).collect();
        let calls: Vec<(usize, usize)> = self.call_idx.iter().map(|(&i, &c)| (c, block_of(i))).collect();
        let mut has_call = vec![false; nblocks];
        for &(_, bc) in &calls {
            has_call[bc] = true;
        }
        // Parameters handed back by the `ret`s of each block.
        let returns: Vec<u8> = (0..nblocks)
            .map(|b| {
                let hi = leaders.get(b + 1).copied().unwrap_or(self.insns.len());
                self.ret_at.range(leaders[b]..hi).fold(0u8, |m, (_, v)| m | v.params)
            })
            .collect();
        let (quiet, quiet_returns) = crate::flow::paths::quiet_blocks(&succ_of, &has_call, &returns);
        self.slot_keeps.excused_into(&succ_of, block_of, &mut self.keeps);
        let graph = crate::flow::paths::Graph { succ: succ_of, exits, guard, null_edge: null_block, checks, quiet, quiet_returns, keeps: std::mem::take(&mut self.keeps) };
        let loose = crate::flow::paths::Graph { guard: entry_guard, null_edge: Vec::new(), checks: Vec::new(), ..graph.clone() };
        for (c, bc) in calls {
            let mask = self.sum.calls[c].args.iter().fold(0u8, |m, a| m | a.params) & 0x3f;
            self.sum.calls[c].unavoidable = graph.view().unavoidable(bc, mask);
            self.sum.calls[c].behind_entry_tests = loose.view().unavoidable(bc, mask);
            self.sum.calls[c].block = bc;
        }
        self.sum.paths = graph;
    }
}
