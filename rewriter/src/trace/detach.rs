//! Letting processes go: `--detach-after` (one process that stopped teaching anything)
//! and `--detach-on-exit` (every tracee, when the tracer is told to leave). Each thread
//! is interrupted, its stop taken, its space's breakpoints removed (a thread caught on
//! one of them is rewound), and then detached with any signal it was stopped for.

use super::sys::{self, Pid};
use super::tree::Exit;
use super::Tracer;

const SI_KERNEL: i32 = 0x80;

impl Tracer {
    pub fn detach_pending(&mut self) {
        let pending: Vec<Pid> = std::mem::take(&mut self.detach_soon);
        for tgid in pending {
            self.detach_proc(tgid);
        }
    }

    pub fn detach_all(&mut self) {
        let all: Vec<Pid> = self.st.procs.keys().copied().collect();
        for tgid in all {
            self.detach_proc(tgid);
        }
    }

    fn detach_proc(&mut self, tgid: Pid) {
        let Some(p) = self.st.procs.get(&tgid) else { return };
        let space = p.space;
        let node = p.node;
        // A space shared with another traced process (vfork) keeps its breakpoints.
        let shared = self.st.spaces.get(&space).is_some_and(|s| s.users > 1);
        if shared {
            return;
        }
        let tids: Vec<Pid> = self.st.threads.iter().filter(|(_, t)| t.tgid == tgid).map(|(&tid, _)| tid).collect();
        let bps: std::collections::HashSet<u64> = self.st.spaces.get(&space).map(|s| s.bps.keys().copied().collect()).unwrap_or_default();
        let mut stopped = Vec::new();
        for tid in tids {
            let _ = sys::interrupt(tid);
            let mut st = 0;
            // SAFETY: waiting for one of our tracees.
            let w = unsafe { libc::waitpid(tid, &mut st, libc::__WALL) };
            if w != tid {
                continue;
            }
            if libc::WIFEXITED(st) {
                self.gone(tid, Exit::Code(libc::WEXITSTATUS(st)));
                continue;
            }
            if libc::WIFSIGNALED(st) {
                self.gone(tid, Exit::Signal(libc::WTERMSIG(st), libc::WCOREDUMP(st)));
                continue;
            }
            let sig = libc::WSTOPSIG(st);
            let event = st >> 16;
            let mut deliver = if event == 0 && sig != libc::SIGTRAP { sig } else { 0 };
            if event == 0 && sig == libc::SIGTRAP {
                if let (Ok(code), Ok(mut r)) = (sys::si_code(tid), sys::regs(tid)) {
                    if code == SI_KERNEL && bps.contains(&r.rip.wrapping_sub(1)) {
                        r.rip -= 1;
                        let _ = sys::set_regs(tid, &r);
                    } else if code != 2 {
                        deliver = sig;
                    }
                }
            }
            stopped.push((tid, deliver));
        }
        if let Some(&(tid, _)) = stopped.first() {
            self.bp_clear(tid);
        }
        for (tid, sig) in stopped {
            let _ = sys::detach(tid, sig);
            self.st.threads.remove(&tid);
        }
        if let Some(p) = self.st.procs.remove(&tgid) {
            self.st.release_space(p.space);
        }
        self.tree.nodes[node].detached = true;
    }
}
