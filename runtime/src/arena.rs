//! The runtime's own memory: mmap-backed, counted, capped (`ALLOCSITE_MAX_META`).
//! Small blocks come in size classes with per-class free lists; nothing is returned to
//! the system. Every mmap'd byte counts as metadata.
use crate::sys::Spin;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes of metadata memory mapped so far.
/// (The index's static tables are added at load time, `lib.rs` `init`.)
pub static META_BYTES: AtomicU64 = AtomicU64::new(0);
/// Highest META_BYTES reached.
pub static META_PEAK: AtomicU64 = AtomicU64::new(0);
/// Cap on META_BYTES (u64::MAX = none).
pub static META_CAP: AtomicU64 = AtomicU64::new(u64::MAX);
/// Cleared when the metadata cap refused memory: no new chunks are indexed.
pub static INDEXING: AtomicBool = AtomicBool::new(true);
/// Set once a request was refused because of the cap.
pub static CAP_HIT: AtomicU64 = AtomicU64::new(0);

/// Map `bytes` (page multiple) of zeroed memory, counted against the cap; null when the
/// cap or the system refuses.
pub fn map(bytes: usize) -> *mut u8 {
    if !charge(bytes as u64) {
        return null_mut();
    }
    let p = unsafe {
        libc::mmap(null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if p == libc::MAP_FAILED {
        META_BYTES.fetch_sub(bytes as u64, Ordering::Relaxed);
        return null_mut();
    }
    p.cast()
}

/// Reserve address space without counting it (pages are counted by the caller as they
/// are first used, with `charge`).
pub fn reserve(bytes: usize) -> *mut u8 {
    let p = unsafe {
        libc::mmap(
            null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// Count `bytes` of metadata; false (and nothing counted) when over the cap.
pub fn charge(bytes: u64) -> bool {
    let cap = META_CAP.load(Ordering::Relaxed);
    let old = META_BYTES.fetch_add(bytes, Ordering::Relaxed);
    if old.saturating_add(bytes) > cap {
        META_BYTES.fetch_sub(bytes, Ordering::Relaxed);
        CAP_HIT.store(1, Ordering::Relaxed);
        return false;
    }
    if old + bytes > META_PEAK.load(Ordering::Relaxed) {
        META_PEAK.fetch_max(old + bytes, Ordering::Relaxed);
    }
    true
}

/// Block sizes in bytes. Region record arrays are an 8-byte header plus 1, 2, 4, 6, 8, 12,
/// 16, 24, 32, 48, 64, ... records; 512 is a directory leaf, 4096 an interior node, 8192
/// a bitmap page of the heap index.
pub const CLASSES: [usize; 19] = [16, 24, 40, 56, 72, 104, 136, 200, 264, 392, 512, 520, 776, 1032, 1544, 2056, 3080, 4096, 8192];
const CHUNK: usize = 16 * 1024;

struct Class {
    lock: Spin,
    free: *mut u8,
    bump: *mut u8,
    left: usize,
}

pub struct Pool {
    classes: [core::cell::UnsafeCell<Class>; CLASSES.len()],
}
unsafe impl Sync for Pool {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: core::cell::UnsafeCell<Class> =
    core::cell::UnsafeCell::new(Class { lock: Spin::new(), free: null_mut(), bump: null_mut(), left: 0 });
pub static POOL: Pool = Pool { classes: [EMPTY; CLASSES.len()] };

/// Smallest class holding `bytes`.
#[inline]
pub fn class_of(bytes: usize) -> usize {
    CLASSES.iter().position(|&c| c >= bytes).expect("block too large")
}

impl Pool {
    /// A block of class `k` (not zeroed when reused); null past the cap.
    pub fn alloc(&self, k: usize) -> *mut u8 {
        let c = unsafe { &mut *self.classes[k].get() };
        c.lock.lock();
        let p = if !c.free.is_null() {
            let p = c.free;
            c.free = unsafe { *(p as *mut *mut u8) };
            p
        } else {
            let sz = CLASSES[k];
            if c.left < sz {
                let m = map(CHUNK);
                if m.is_null() {
                    c.lock.unlock();
                    return null_mut();
                }
                c.bump = m;
                c.left = CHUNK;
            }
            let p = c.bump;
            c.bump = unsafe { p.add(sz) };
            c.left -= sz;
            p
        };
        c.lock.unlock();
        p
    }
    pub fn free(&self, k: usize, p: *mut u8) {
        let c = unsafe { &mut *self.classes[k].get() };
        c.lock.lock();
        unsafe { *(p as *mut *mut u8) = c.free };
        c.free = p;
        c.lock.unlock();
    }
    pub fn lock_all(&self) {
        for c in &self.classes {
            unsafe { (*c.get()).lock.lock() };
        }
    }
    pub fn unlock_all(&self, force: bool) {
        for c in &self.classes {
            let l = unsafe { &(*c.get()).lock };
            if force {
                l.force_unlock()
            } else {
                l.unlock()
            }
        }
    }
}
