//! Thin, checked wrappers over the ptrace, wait and memory system calls the tracer uses.
//! Every call that can race with a tracee's death returns an error instead of panicking:
//! a tracee killed by SIGKILL disappears between any two calls, and its exit is
//! reported by `waitpid` later.

use libc::{c_long, c_void, pid_t};
use std::io;

pub type Pid = pid_t;

fn check(r: c_long) -> io::Result<c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ptrace(req: libc::c_uint, pid: Pid, addr: usize, data: usize) -> io::Result<c_long> {
    // SAFETY: every request used here takes integer or caller-owned pointer arguments.
    check(unsafe { libc::ptrace(req, pid, addr as *mut c_void, data as *mut c_void) })
}

pub const OPTIONS: i32 = libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESYSGOOD;

pub fn seize(pid: Pid, exitkill: bool) -> io::Result<()> {
    let opts = OPTIONS | if exitkill { libc::PTRACE_O_EXITKILL } else { 0 };
    ptrace(libc::PTRACE_SEIZE, pid, 0, opts as usize).map(drop)
}

pub fn cont(pid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, pid, 0, sig as usize).map(drop)
}

pub fn step(pid: Pid) -> io::Result<()> {
    ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0).map(drop)
}

pub fn listen(pid: Pid) -> io::Result<()> {
    ptrace(libc::PTRACE_LISTEN, pid, 0, 0).map(drop)
}

pub fn interrupt(pid: Pid) -> io::Result<()> {
    ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

pub fn detach(pid: Pid, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

pub fn event_msg(pid: Pid) -> io::Result<u64> {
    let mut v: libc::c_ulong = 0;
    ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut v as *mut _ as usize)?;
    Ok(v as u64)
}

/// `si_code` of the signal that stopped `pid` (SI_KERNEL for int3, TRAP_TRACE for a step).
pub fn si_code(pid: Pid) -> io::Result<i32> {
    // SAFETY: siginfo_t is plain data; the kernel fills it.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si as *mut _ as usize)?;
    Ok(si.si_code)
}

pub type Regs = libc::user_regs_struct;

pub fn regs(pid: Pid) -> io::Result<Regs> {
    // SAFETY: user_regs_struct is plain data; the kernel fills it.
    let mut r: Regs = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r as *mut _ as usize)?;
    Ok(r)
}

pub fn set_regs(pid: Pid, r: &Regs) -> io::Result<()> {
    ptrace(libc::PTRACE_SETREGS, pid, 0, r as *const _ as usize).map(drop)
}

/// Read tracee memory in one system call; false when any byte is unreadable.
pub fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut c_void, iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut c_void, iov_len: buf.len() };
    // SAFETY: `local` covers exactly `buf`; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

pub fn read_u64(pid: Pid, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read(pid, addr, &mut b).then(|| u64::from_le_bytes(b))
}

/// A copy of the top of a tracee's stack, read in one system call. An allocator hit
/// unwinds several frames, each reading saved registers and a return address: one
/// `process_vm_readv` per word was most of the tracer's own time (25 per stop).
/// Reads outside the copy go to the tracee.
pub struct Stack {
    pid: Pid,
    lo: u64,
    buf: Vec<u8>,
}

/// Bytes of stack copied at an allocator hit: eight frames of ordinary functions.
pub const STACK_COPY: usize = 16 << 10;

impl Stack {
    pub fn read(pid: Pid, lo: u64, len: usize) -> Stack {
        let mut buf = vec![0u8; len];
        // One remote piece per page: a read stops at the first unmapped page (the top
        // of the stack) and returns what it got before it.
        let mut remote = Vec::with_capacity(len / 4096 + 2);
        let mut at = lo;
        let end = lo.saturating_add(len as u64);
        while at < end {
            // (rsp is the tracee's to set: no overflow near the top of the space.)
            let next = (at | 0xfff).checked_add(1).map_or(end, |n| n.min(end));
            remote.push(libc::iovec { iov_base: at as *mut c_void, iov_len: (next - at) as usize });
            at = next;
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut c_void, iov_len: len };
        // SAFETY: `local` covers exactly `buf`; the kernel checks every remote piece.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), remote.len() as libc::c_ulong, 0) };
        buf.truncate(n.max(0) as usize);
        Stack { pid, lo, buf }
    }

    pub fn u64(&self, addr: u64) -> Option<u64> {
        let off = addr.wrapping_sub(self.lo);
        if off < self.buf.len() as u64 && off + 8 <= self.buf.len() as u64 {
            let o = off as usize;
            return Some(u64::from_le_bytes(self.buf[o..o + 8].try_into().ok()?));
        }
        read_u64(self.pid, addr)
    }
}

/// Write one byte through ptrace (works on read-only text, unlike process_vm_writev);
/// returns the byte it replaced. PTRACE_POKETEXT writes a whole word: the aligned word
/// holding `addr` is read, its one byte changed and written back, so the seven others
/// are rewritten with what they held a moment before, all in the same page (an aligned
/// word never crosses one), which the caller checked is code (`Tracer::bp_add`): no
/// thread writes there, and no neighbour of the byte can be made stale.
pub fn poke_byte(pid: Pid, addr: u64, byte: u8) -> io::Result<u8> {
    let word = addr & !7;
    let shift = (addr & 7) * 8;
    // SAFETY: errno must be cleared to tell a -1 word from an error.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: PEEKTEXT takes an address and returns the word.
    let w = unsafe { libc::ptrace(libc::PTRACE_PEEKTEXT, pid, word as *mut c_void, std::ptr::null_mut::<c_void>()) };
    let e = io::Error::last_os_error();
    if w == -1 && e.raw_os_error().unwrap_or(0) != 0 {
        return Err(e);
    }
    let old = (w as u64 >> shift) as u8;
    let new = (w as u64 & !(0xff << shift)) | (byte as u64) << shift;
    ptrace(libc::PTRACE_POKETEXT, pid, word as usize, new as usize)?;
    Ok(old)
}

pub enum Waited {
    Exited(Pid, i32),
    Signaled(Pid, i32, bool),
    Stopped(Pid, i32),
    Interrupted,
    NoChildren,
}

pub fn wait_any() -> io::Result<Waited> {
    let mut st = 0;
    // SAFETY: plain system call.
    let pid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL) };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINTR) => Ok(Waited::Interrupted),
            Some(libc::ECHILD) => Ok(Waited::NoChildren),
            _ => Err(e),
        };
    }
    Ok(if libc::WIFEXITED(st) {
        Waited::Exited(pid, libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Waited::Signaled(pid, libc::WTERMSIG(st), libc::WCOREDUMP(st))
    } else {
        Waited::Stopped(pid, st)
    })
}

/// Whether two tasks share one address space (`kcmp(KCMP_VM)`); None when the kernel
/// cannot tell (no kcmp, a task gone).
pub fn same_vm(a: Pid, b: Pid) -> Option<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp takes two pids, a type and two unused integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a as libc::c_long, b as libc::c_long, KCMP_VM, 0 as libc::c_long, 0 as libc::c_long) };
    (r >= 0).then_some(r == 0)
}

/// `Tgid` and `PPid` of a task, from /proc.
pub fn tgid_ppid(tid: Pid) -> Option<(Pid, Pid)> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<Pid>().ok());
    Some((field("Tgid:")?, field("PPid:")?))
}

pub fn exe_path(pid: Pid) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.display().to_string()).unwrap_or_default()
}
