//! Finding callers that tail-called an allocator. At an allocator hit the return
//! address may belong to a caller's caller: a wrapper that ends in `jmp malloc` leaves
//! no frame. The instruction before the return address tells: a direct call to a
//! function of a non-system image (not a PLT stub) named that wrapper; an indirect call
//! (`call *ops->release`) names nobody, so a one-shot probe breakpoint goes on it, and
//! the next time it runs, one single-step lands on the callee's entry, which becomes a
//! candidate like any unwound caller.

use super::images::{self, Mapped};
use super::learn::FnId;
use super::sys::{self, Pid};
use super::{unwind, Tracer};
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};

/// Return addresses looked at and call sites probed per address space, at most.
const MAX_PROBES: usize = 4096;

enum Before {
    /// A direct call to this address.
    Direct(u64),
    /// An indirect call starting here.
    Indirect(u64),
}

/// Longest caller body decoded to find a call site.
const MAX_BODY: u64 = 1 << 20;

/// The call instruction that ends at `ret`, found by decoding the caller from its entry
/// `start` (never backwards: a probe in the middle of an instruction would corrupt
/// it). `bps` gives the original bytes under our int3s.
fn call_before(pid: Pid, start: u64, ret: u64, bps: &std::collections::HashMap<u64, super::breakpoints::Bp>) -> Option<Before> {
    if ret <= start || ret - start > MAX_BODY {
        return None;
    }
    let mut code = vec![0u8; (ret - start) as usize];
    if !sys::read(pid, start, &mut code) {
        return None;
    }
    for (&a, bp) in bps.iter().filter(|(&a, _)| a >= start && a < ret) {
        code[(a - start) as usize] = bp.original();
    }
    let mut d = Decoder::with_ip(64, &code, start, DecoderOptions::NONE);
    let mut last = None;
    while d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            return None;
        }
        last = Some(i);
    }
    let i = last?;
    if i.next_ip() != ret || i.mnemonic() != Mnemonic::Call {
        return None;
    }
    Some(if i.op0_kind() == OpKind::NearBranch64 { Before::Direct(i.near_branch_target()) } else { Before::Indirect(i.ip()) })
}

impl Tracer {
    /// At an allocator's entry whose return address is `ret`: make the function that
    /// tail-called it a candidate, or probe the indirect call that reached it.
    pub fn tail_caller(&mut self, tid: Pid, alloc_entry: u64, ret: u64, maps: &[Mapped]) {
        let Some(m) = images::find(maps, ret) else { return };
        if m.file.system {
            return;
        }
        // Each return address is looked at once per address space.
        let Some(s) = self.st.space_of(tid).and_then(|s| self.st.spaces.get_mut(&s)) else { return };
        if s.probed.len() >= MAX_PROBES || !s.probed.insert(ret) {
            return;
        }
        self.mem.charge(16);
        let Some((start, _)) = unwind::fde_for(&m.file, ret.wrapping_sub(m.bias) - 1) else { return };
        let start = start.wrapping_add(m.bias);
        let Some(space) = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)) else { return };
        let before = call_before(tid, start, ret, &space.bps);
        match before {
            Some(Before::Direct(t)) if t != alloc_entry => {
                let Some(tm) = images::find(maps, t) else { return };
                let link = t.wrapping_sub(tm.bias);
                if tm.file.system || tm.file.in_plt(link) {
                    return;
                }
                if unwind::fde_for(&tm.file, link).is_some_and(|(start, _)| start == link) {
                    let file = tm.file.clone();
                    let id = self.function(&file, link);
                    self.watch_entry(tid, t, id);
                }
            }
            Some(Before::Indirect(at)) => {
                let Some(s) = self.st.space_of(tid).and_then(|s| self.st.spaces.get_mut(&s)) else { return };
                if s.probed.len() >= MAX_PROBES || !s.probed.insert(at) {
                    return;
                }
                self.mem.charge(16);
                self.bp_add(tid, at, |b| b.probe = true);
            }
            _ => {}
        }
    }

    pub fn watch_entry(&mut self, tid: Pid, at: u64, id: FnId) {
        if self.learn.fns[id].watched() {
            self.bp_add(tid, at, |b| b.func = Some(id));
        }
    }

    /// A probed call was single-stepped: `tid` stands at the callee's entry.
    pub fn probe_landed(&mut self, tid: Pid) {
        let Ok(r) = sys::regs(tid) else { return };
        let maps = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).map(|s| s.maps.clone()).unwrap_or_default();
        let Some(m) = images::find(&maps, r.rip) else { return };
        let link = r.rip.wrapping_sub(m.bias);
        if m.file.system || !unwind::fde_for(&m.file, link).is_some_and(|(start, _)| start == link) {
            return;
        }
        let file = m.file.clone();
        let id = self.function(&file, link);
        // Inserted where the thread stands: resuming it hits the entry at once.
        self.watch_entry(tid, r.rip, id);
    }
}
