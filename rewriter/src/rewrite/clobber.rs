//! Which caller-saved registers a trampoline may use without saving them.
//!
//! Callers compiled with `-fipa-ra` (gcc's default at -O2) may keep values in
//! caller-saved registers across a call of a function in the same translation unit
//! when gcc saw that the function (with everything it calls) leaves them alone. A
//! trampoline seen by such a caller as the function itself must then preserve every
//! register it uses. But when the function's code can reach a call gcc could not see
//! into — an indirect call, or a call or tail call of a PLT stub (another object) —
//! gcc had to assume that call clobbers every caller-saved register, and so must every
//! caller of the function: a trampoline may then clobber rcx, rsi, rdi, r8–r11 after
//! the call returns and r11 before (the other registers carry arguments or results).
//! Calls gcc may have seen into (direct calls of functions in the binary) are followed.

use super::cfi::EhFrameIndex;
use super::elf::InputElf;
use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};
use object::elf;
use std::collections::HashMap;

/// How many direct calls deep the search follows.
const MAX_DEPTH: u32 = 6;

pub struct Clobbers<'a> {
    elf: &'a InputElf<'a>,
    eh: &'a EhFrameIndex<'a>,
    memo: HashMap<u64, bool>,
}

impl<'a> Clobbers<'a> {
    pub fn new(elf: &'a InputElf<'a>, eh: &'a EhFrameIndex<'a>) -> Self {
        Clobbers { elf, eh, memo: HashMap::new() }
    }

    /// Whether every caller of the function at `entry` must already assume that the
    /// call clobbers all caller-saved registers (see the module comment). `false` when
    /// unsure.
    pub fn clobbers_all(&mut self, entry: u64) -> bool {
        self.search(entry, 0)
    }

    fn extent(&self, a: u64) -> Option<u64> {
        self.elf
            .symbols
            .iter()
            .find(|s| s.value == a && s.size > 0 && s.st_type == elf::STT_FUNC)
            .map(|s| a + s.size)
            .or_else(|| self.eh.covering(a).filter(|f| f.start == a).map(|f| f.start + f.len))
    }

    fn in_plt(&self, a: u64) -> bool {
        self.elf.shdrs.iter().any(|s| s.name.starts_with(".plt") && a >= s.sh_addr && a < s.sh_addr + s.sh_size)
    }

    fn search(&mut self, entry: u64, depth: u32) -> bool {
        if let Some(&v) = self.memo.get(&entry) {
            return v;
        }
        // (a cycle or a deep chain counts as "unsure" until proven)
        self.memo.insert(entry, false);
        let v = self.scan(entry, depth);
        self.memo.insert(entry, v);
        v
    }

    fn scan(&mut self, entry: u64, depth: u32) -> bool {
        let Some(end) = self.extent(entry) else { return false };
        let Some(code) = self.elf.bytes_at(entry, end.saturating_sub(entry)) else { return false };
        let mut direct = Vec::new();
        for i in Decoder::with_ip(64, code, entry, DecoderOptions::NONE) {
            if i.is_invalid() {
                return false;
            }
            match i.flow_control() {
                FlowControl::IndirectCall => return true,
                // `jmp [rip+GOT]`: a tail call into another object (-fno-plt); a jump
                // through a register may be a switch, which says nothing
                FlowControl::IndirectBranch if i.is_ip_rel_memory_operand() => return true,
                // calls and (tail) jumps, conditional ones and `jmp rel8` included
                FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch if i.op0_kind() == OpKind::NearBranch64 => {
                    let t = i.near_branch_target();
                    if self.in_plt(t) {
                        return true;
                    }
                    if t < entry || t >= end {
                        direct.push(t);
                    }
                }
                _ => {}
            }
        }
        depth < MAX_DEPTH && direct.into_iter().any(|t| self.search(t, depth + 1))
    }
}
