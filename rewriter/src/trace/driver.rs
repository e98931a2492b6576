//! The process-tree driver: one `waitpid(-1, __WALL)` loop over every tracee.
//!
//! Tracees are seized with fork/vfork/clone/exec events, so the kernel attaches new
//! tasks before they run; a new task may report its first stop before or after its
//! parent's fork event, and both orders create the same state. Group-stops (SIGSTOP,
//! SIGTSTP, SIGTTIN, SIGTTOU) are answered with PTRACE_LISTEN, which keeps the tracee
//! stopped the way job control expects until SIGCONT; every other signal is delivered
//! unchanged.

use super::state::{Proc, Thread};
use super::sys::{self, Pid, Waited};
use super::tree::Exit;
use super::{signals, Tracer};

const EV_FORK: i32 = libc::PTRACE_EVENT_FORK;
const EV_VFORK: i32 = libc::PTRACE_EVENT_VFORK;
const EV_CLONE: i32 = libc::PTRACE_EVENT_CLONE;
const EV_EXEC: i32 = libc::PTRACE_EVENT_EXEC;
const EV_STOP: i32 = 128;
const SYS_CLONE: u64 = 56;
const SYS_CLONE3: u64 = 435;

/// Restart a stopped tracee. A tracee that died meanwhile (ESRCH) is reported by
/// `waitpid` later, so the error is not one.
pub fn resume(tid: Pid, sig: i32) {
    let _ = sys::cont(tid, sig);
}

impl Tracer {
    pub fn run_loop(&mut self) -> Result<(), String> {
        loop {
            for sig in signals::take() {
                self.tracer_signal(sig);
            }
            match sys::wait_any().map_err(|e| format!("trace: waitpid failed: {e}"))? {
                Waited::Interrupted => continue,
                Waited::NoChildren => return Ok(()),
                Waited::Exited(tid, code) => self.gone(tid, Exit::Code(code)),
                Waited::Signaled(tid, sig, core) => self.gone(tid, Exit::Signal(sig, core)),
                Waited::Stopped(tid, status) => self.stopped(tid, status),
            }
            if !self.detach_soon.is_empty() {
                self.detach_pending();
            }
        }
    }

    fn tracer_signal(&mut self, sig: i32) {
        let leave = matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP);
        if self.opts.detach_on_exit && leave {
            self.detach_all();
            self.finish_output();
            std::process::exit(128 + sig);
        }
        if self.root_exit.is_none() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.root, sig) };
        }
    }

    pub fn gone(&mut self, tid: Pid, exit: Exit) {
        let tgid = self.st.threads.remove(&tid).map_or(tid, |t| t.tgid);
        // A process's leader is reported last, after every other thread.
        if tid == tgid {
            if let Some(p) = self.st.procs.remove(&tgid) {
                self.tree.nodes[p.node].exit = Some(exit);
                self.st.release_space(p.space);
                self.mem.release(super::memory::PROC);
            }
        }
        if tid == self.root {
            self.root_exit = Some(exit);
            if let Some(n) = self.tree.nodes.first_mut() {
                n.exit = Some(exit);
            }
        }
    }

    /// Make sure `tid` has state. `vm` names the space of a parent whose memory the
    /// new task shares (vfork, CLONE_VM).
    pub fn ensure(&mut self, tid: Pid, creator: Option<Pid>) {
        if self.st.threads.contains_key(&tid) {
            return;
        }
        let (tgid, ppid) = sys::tgid_ppid(tid).unwrap_or((tid, creator.unwrap_or(0)));
        if !self.st.procs.contains_key(&tgid) {
            let parent = if tgid == self.root { 0 } else { creator.and_then(|c| self.st.threads.get(&c)).map_or(ppid, |t| t.tgid) };
            let node = self.tree.add(tgid, parent);
            self.mem.charge(super::memory::NODE);
            // A fork child has a copy of the parent's memory, breakpoints included; a
            // vfork (CLONE_VM) child runs in the parent's own. Asked of the kernel
            // here: the child may report its first stop before the parent's event, and
            // run (even exec) before that event is seen.
            let space = match self.st.procs.get(&parent).map(|p| p.space) {
                Some(ps) if sys::same_vm(tgid, parent) == Some(true) => {
                    if let Some(s) = self.st.spaces.get_mut(&ps) {
                        s.users += 1;
                    }
                    ps
                }
                Some(ps) => self.fork_space(ps),
                None => self.st.new_space(Default::default()),
            };
            self.mem.charge(super::memory::PROC);
            self.st.procs.insert(tgid, Proc { node, space, idle_hits: 0, news_seen: 0 });
        } else if tid != tgid {
            let node = self.st.procs[&tgid].node;
            self.tree.nodes[node].threads += 1;
        }
        self.st.threads.insert(tid, Thread { tgid, ..Default::default() });
    }

    fn stopped(&mut self, tid: Pid, status: i32) {
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        self.ensure(tid, None);
        if super::debug() && (event != 0 || sig != libc::SIGTRAP) {
            eprintln!("trace: {tid}: stop sig {sig} event {event} space {:?}", self.st.space_of(tid));
        }
        match event {
            0 if sig == libc::SIGTRAP => {
                if !self.on_trap(tid) {
                    resume(tid, sig);
                }
            }
            // A system-call stop cannot happen (the tracer never asks for them).
            0 if sig == libc::SIGTRAP | 0x80 => resume(tid, 0),
            0 => resume(tid, sig),
            EV_FORK | EV_VFORK | EV_CLONE => {
                self.new_task(tid, event);
                resume(tid, 0);
            }
            EV_EXEC => {
                self.exec(tid);
                resume(tid, 0);
            }
            EV_STOP => {
                if matches!(sig, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
                    // Group-stop: stay stopped, but let SIGCONT and the parent's wait see it.
                    let _ = sys::listen(tid);
                } else {
                    resume(tid, 0);
                }
            }
            _ => resume(tid, 0),
        }
    }

    fn new_task(&mut self, tid: Pid, event: i32) {
        let Ok(child) = sys::event_msg(tid) else { return };
        let child = child as Pid;
        let shares_vm = match event {
            EV_VFORK => true,
            EV_CLONE => clone_flags(tid).is_some_and(|f| f & libc::CLONE_VM as u64 != 0),
            _ => false,
        };
        self.ensure(child, Some(tid));
        let (Some(ptgid), Some(ctgid)) = (self.st.threads.get(&tid).map(|t| t.tgid), self.st.threads.get(&child).map(|t| t.tgid)) else {
            return;
        };
        // A child that exec'd before this event was seen has its own memory now.
        let still_shared = sys::same_vm(ctgid, ptgid) != Some(false) && self.st.procs.get(&ctgid).is_some_and(|p| self.tree.nodes[p.node].execs.is_empty());
        if ptgid != ctgid && shares_vm && still_shared {
            // vfork / CLONE_VM: the same memory, so the same breakpoints.
            let pspace = self.st.procs[&ptgid].space;
            let cproc = self.st.procs.get_mut(&ctgid).expect("ensured above");
            if cproc.space != pspace {
                let old = std::mem::replace(&mut cproc.space, pspace);
                self.st.release_space(old);
                if let Some(s) = self.st.spaces.get_mut(&pspace) {
                    s.users += 1;
                }
            }
        }
    }

    fn exec(&mut self, tid: Pid) {
        // The execing thread now has the leader's tid; the tid it had is gone.
        if let Ok(former) = sys::event_msg(tid) {
            if former as Pid != tid {
                self.st.threads.remove(&(former as Pid));
            }
        }
        let tgid = tid;
        if let Some(t) = self.st.threads.get_mut(&tid) {
            *t = Thread { tgid, ..Default::default() };
        }
        let Some(p) = self.st.procs.get(&tgid) else { return };
        let (node, old) = (p.node, p.space);
        self.st.release_space(old);
        let space = self.st.new_space(Default::default());
        if let Some(p) = self.st.procs.get_mut(&tgid) {
            p.space = space;
            p.idle_hits = 0;
        }
        let path = sys::exe_path(tid);
        self.mem.charge(path.len() as u64);
        self.tree.nodes[node].execs.push(path);
        self.watch_exec(tid);
    }
}

/// The flags of the clone the stopped `tid` is making (clone or clone3).
fn clone_flags(tid: Pid) -> Option<u64> {
    let r = sys::regs(tid).ok()?;
    match r.orig_rax {
        SYS_CLONE => Some(r.rdi),
        SYS_CLONE3 => sys::read_u64(tid, r.rdi),
        _ => None,
    }
}
