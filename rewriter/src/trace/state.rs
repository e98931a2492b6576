//! Per-task state, split by how often it is touched.
//!
//! Hot (`Thread`, one per tid): read at every stop — which process it belongs to, a
//! pending single-step, the calls being watched on its stack. Cold (`Proc`, one per
//! process): tree node, address space, counters. Nothing is keyed by system call:
//! the tracer never stops at system calls, so a failed `execve` (no event at all)
//! leaves nothing behind; a successful one resets the process's space.

use super::breakpoints::Space;
use super::learn::ActiveCall;
use super::sys::Pid;
use std::collections::HashMap;

pub type SpaceId = u64;

#[derive(Default)]
pub struct Thread {
    pub tgid: Pid,
    /// A breakpoint lifted for this thread's single-step, to put back after it.
    pub step: Option<u64>,
    /// The single-step under way is a probe's: the callee's entry is where it lands.
    pub probing: bool,
    /// Where the tracer last resumed it after a breakpoint (0: unknown). Stopped there
    /// again, it ran nothing: the SIGTRAP is not an int3's.
    pub resumed_at: u64,
    /// Watched calls active on this thread's stack (innermost last).
    pub calls: Vec<ActiveCall>,
}

pub struct Proc {
    pub node: usize,
    pub space: SpaceId,
    /// Consecutive allocator hits that taught nothing (for `--detach-after`).
    pub idle_hits: u64,
    pub news_seen: u64,
}

#[derive(Default)]
pub struct State {
    pub threads: HashMap<Pid, Thread>,
    pub procs: HashMap<Pid, Proc>,
    pub spaces: HashMap<SpaceId, Space>,
    next_space: SpaceId,
}

impl State {
    pub fn new_space(&mut self, mut space: Space) -> SpaceId {
        space.users = 1;
        self.next_space += 1;
        self.spaces.insert(self.next_space, space);
        self.next_space
    }

    pub fn space_of(&self, tid: Pid) -> Option<SpaceId> {
        let t = self.threads.get(&tid)?;
        Some(self.procs.get(&t.tgid)?.space)
    }

    /// Drop a process's reference to a space; the last one frees it.
    pub fn release_space(&mut self, id: SpaceId) {
        if let Some(s) = self.spaces.get_mut(&id) {
            s.users = s.users.saturating_sub(1);
            if s.users == 0 {
                self.spaces.remove(&id);
            }
        }
    }
}
