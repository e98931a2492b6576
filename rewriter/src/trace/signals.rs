//! The tracer's own signals, and leaving with CMD's status.
//!
//! A signal sent to the tracer by another process (`kill`, SI_USER) is forwarded to
//! CMD, so a supervisor that signals the tracer reaches the program it runs. A signal
//! from the terminal (Ctrl-C, SI_KERNEL) already reached CMD, which is in the same
//! process group: it is not sent twice.

use std::sync::atomic::{AtomicU64, Ordering};

static PENDING: AtomicU64 = AtomicU64::new(0);

pub const FORWARDED: [i32; 6] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    if code <= 0 {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

pub fn install() {
    for sig in FORWARDED {
        // SAFETY: installing a handler that only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            // No SA_RESTART: waitpid returns EINTR so the signal is forwarded at once.
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Signals received from other processes since the last call.
pub fn take() -> Vec<i32> {
    let bits = PENDING.swap(0, Ordering::SeqCst);
    (1..64).filter(|s| bits & (1 << s) != 0).collect()
}

/// Leave the way CMD left: the same exit code, or death by the same signal (without
/// a core dump of the tracer itself: CMD's own core was already written by the kernel).
pub fn exit_like(status: super::tree::Exit) -> ! {
    match status {
        super::tree::Exit::Code(c) => std::process::exit(c),
        super::tree::Exit::Signal(s, _) => {
            // SAFETY: resetting our own disposition and raising the signal.
            unsafe {
                let lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::setrlimit(libc::RLIMIT_CORE, &lim);
                libc::signal(s, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, s);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(s);
            }
            std::process::exit(128 + s)
        }
    }
}
