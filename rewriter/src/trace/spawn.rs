//! Starting CMD under the tracer: the child stops itself before `execvp`, so it is
//! seized (and every option is in force) before CMD runs a single instruction.

use super::sys::{self, Pid};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

pub fn spawn(cmd: &[OsString], exitkill: bool) -> Result<Pid, String> {
    let name = cmd.first().ok_or("trace: no command given (usage: allocsite trace -- CMD ARGS…)")?;
    let args: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| format!("{}: argument contains a NUL byte", name.to_string_lossy())))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let msg = format!("allocsite: {}: cannot execute\n", name.to_string_lossy());
    // SAFETY: the child only calls async-signal-safe functions on memory prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("trace: fork failed: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; `_exit` never returns.
        unsafe {
            libc::raise(libc::SIGSTOP);
            libc::execvp(argv[0], argv.as_ptr());
            let code = if *libc::__errno_location() == libc::ENOENT { 127 } else { 126 };
            libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
            libc::_exit(code);
        }
    }
    let mut st = 0;
    // SAFETY: plain system call on our own child.
    let w = unsafe { libc::waitpid(pid, &mut st, libc::WUNTRACED) };
    if w != pid || !libc::WIFSTOPPED(st) {
        return Err(format!("{}: the child did not stop before exec", name.to_string_lossy()));
    }
    sys::seize(pid, exitkill).map_err(|e| format!("trace: PTRACE_SEIZE failed: {e} (is ptrace allowed here?)"))?;
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    Ok(pid)
}
