//! Raw system helpers that never allocate.
use core::sync::atomic::{AtomicU32, Ordering};

pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

pub fn gettid() -> u32 {
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// `getenv` that returns nothing in AT_SECURE processes.
pub fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return None;
    }
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    let s = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// A tiny spin lock (one word). `lock` spins with `pause` and yields; `try_lock` never waits.
pub struct Spin(AtomicU32);
impl Spin {
    pub const fn new() -> Spin {
        Spin(AtomicU32::new(0))
    }
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.0.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }
    #[inline]
    pub fn lock(&self) {
        if self.try_lock() {
            return;
        }
        let mut n = 0u32;
        loop {
            while self.0.load(Ordering::Relaxed) != 0 {
                n += 1;
                if n < 64 {
                    core::hint::spin_loop();
                } else {
                    unsafe { libc::sched_yield() };
                }
            }
            if self.try_lock() {
                return;
            }
        }
    }
    #[inline]
    pub fn unlock(&self) {
        self.0.store(0, Ordering::Release);
    }
    /// Only for the fork child: the thread that held the lock no longer exists.
    pub fn force_unlock(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Fixed-capacity byte buffer formatting without allocation.
pub struct Buf<const N: usize> {
    pub b: [u8; N],
    pub n: usize,
}
impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf { b: [0; N], n: 0 }
    }
    #[inline]
    pub fn s(&mut self, s: &[u8]) -> &mut Self {
        let k = s.len().min(N - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s[..k]);
        self.n += k;
        self
    }
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut t = [0u8; 20];
        let mut i = 20;
        loop {
            i -= 1;
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.s(&t[i..])
    }
    pub fn hex(&mut self, mut v: u64) -> &mut Self {
        let mut t = [0u8; 18];
        let mut i = 18;
        loop {
            i -= 1;
            t[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        t[i] = b'0';
        t[i + 1] = b'x';
        self.s(&t[i..])
    }
    pub fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

/// Copy `tmpl` into `out` with `%p` replaced by the pid; NUL-terminated. Returns the
/// length (0 when it does not fit).
pub fn expand_pid(tmpl: &[u8], out: &mut [u8]) -> usize {
    let mut b = Buf::<4096>::new();
    let mut i = 0;
    while i < tmpl.len() {
        if tmpl[i] == b'%' && i + 1 < tmpl.len() && tmpl[i + 1] == b'p' {
            b.dec(unsafe { libc::getpid() } as u64);
            i += 2;
        } else {
            b.s(&tmpl[i..i + 1]);
            i += 1;
        }
    }
    let n = b.n;
    if n + 1 > out.len() || n + 1 > 4096 {
        return 0;
    }
    out[..n].copy_from_slice(b.bytes());
    out[n] = 0;
    n
}

/// The rewriter's data segment of a loaded object, if it has one: the writable
/// PT_LOAD that starts with the object's PT_DYNAMIC (the new `.dynamic`, then
/// `.allocsite.data`). Returns (load base, PT_DYNAMIC, that PT_LOAD).
pub unsafe fn rewriter_segment(info: &libc::dl_phdr_info) -> Option<(usize, &libc::Elf64_Phdr, &libc::Elf64_Phdr)> {
    let ph = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let dynamic = ph.iter().find(|p| p.p_type == libc::PT_DYNAMIC)?;
    let seg = ph.iter().find(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W != 0 && p.p_vaddr == dynamic.p_vaddr)?;
    Some((info.dlpi_addr as usize, dynamic, seg))
}
