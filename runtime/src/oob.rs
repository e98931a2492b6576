//! Out-of-band records of the heap index (`chunkmap`): where the record — site id and
//! slack — of a chunk without 8 spare usable bytes (a 24-byte request in a 24-byte
//! chunk) goes.
//!
//! A bitmap page's out-of-band records are kept per 1 KiB region of heap (64 granules,
//! whose bits are 2 bitmap words): a dense array of 2-byte (4-byte once a site id ≥
//! 2^13 joins) records `site id << 3 | slack` in address order, in one arena block
//! `[len: u16, cap: u15, wide: 1, records…]`, found through a 512-pointer directory per
//! page (`chunkmap::Slot::oob`). A record's index is the number of out-of-band bits
//! below its granule in the region (a few popcounts on the line `free` and `malloc`
//! read anyway), so finding it is one load. Invariant: a region's array holds exactly
//! one record per out-of-band bit set in its words, in order. Out-of-band bits change
//! only together with the array (under the page's stripe lock once there are threads).
//! A chunk freed by a signal handler that interrupted the runtime loses only its start
//! bit: its out-of-band bit and record stay (an orphan) until a chunk starts at that
//! granule again.
use crate::arena::{class_of, POOL};
use crate::index::child;
use crate::sys::Spin;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

/// A region: 1 KiB of heap, 64 granules, two bitmap words.
pub const REGION_SHIFT: u32 = 10;
/// Regions per directory (one bitmap page covers 512 KiB of heap).
pub const REGIONS: usize = 512;
/// Site ids below this fit a record (`id << 3 | slack` in 32 bits).
pub const ID_LIMIT: u32 = 1 << 29;
/// Out-of-band bits of the 32 granules of a bitmap word (the even bits are start bits).
pub const OOBS: u64 = 0xaaaa_aaaa_aaaa_aaaa;
/// Record block sizes: the arena pool's classes that hold `4 + 2·cap` or `4 + 4·cap`
/// bytes (a region holds at most 32 chunks, and at most 64 records with orphans).
const SIZES: [usize; 8] = [16, 24, 40, 56, 72, 104, 136, 264];

/// Striped locks of the out-of-band records (by page key), taken once there are threads.
static LOCKS: [Spin; 64] = [const { Spin::new() }; 64];
#[inline(always)]
pub fn lock(key: usize) -> &'static Spin {
    &LOCKS[key & 63]
}

/// fork: hold every stripe lock across it (`lib.rs`, through `chunkmap::lock_oob`).
pub fn lock_all() {
    for l in &LOCKS {
        l.lock();
    }
}
pub fn unlock_all() {
    for l in LOCKS.iter().rev() {
        l.unlock();
    }
}

/// The region's record block slot in the page's directory `dir` (the directory made
/// when `create`).
#[inline(always)]
pub unsafe fn region(dir: &AtomicPtr<u32>, p: usize, create: bool) -> Option<&'static AtomicPtr<u32>> {
    let mut d = dir.load(Ordering::Acquire) as *mut u8;
    if d.is_null() {
        d = child(&*(dir as *const AtomicPtr<u32> as *const AtomicPtr<u8>), create, REGIONS * 8)?;
    }
    Some(&(*(d as *const [AtomicPtr<u32>; REGIONS]))[(p >> REGION_SHIFT) & (REGIONS - 1)])
}

/// (len, cap, wide) of a record block: records are `u16` while every site id in the
/// array is below 2^13 (a program with fewer sites than that: half the memory), else
/// `u32`.
#[inline(always)]
pub unsafe fn head(b: *mut u32) -> (usize, usize, bool) {
    let h = *b;
    ((h & 0xffff) as usize, ((h >> 16) & 0x7fff) as usize, h >> 31 != 0)
}
#[inline(always)]
fn bytes(cap: usize, wide: bool) -> usize {
    4 + cap * if wide { 4 } else { 2 }
}
#[inline(always)]
pub unsafe fn rec_get(b: *mut u32, wide: bool, i: usize) -> u32 {
    if wide {
        *b.add(1 + i)
    } else {
        *(b.add(1) as *const u16).add(i) as u32
    }
}
#[inline(always)]
unsafe fn rec_set(b: *mut u32, wide: bool, i: usize, v: u32) {
    if wide {
        *b.add(1 + i) = v;
    } else {
        *(b.add(1) as *mut u16).add(i) = v as u16;
    }
}

/// Whether the CPU has `popcnt` (0 = not asked yet, 1 = no, 2 = yes): the runtime is
/// built for baseline x86-64, whose software bit count costs ~15 instructions a word.
static POPCNT: AtomicU8 = AtomicU8::new(0);
#[cold]
fn detect_popcnt() -> bool {
    let yes = core::arch::x86_64::__cpuid(1).ecx & (1 << 23) != 0;
    POPCNT.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
    yes
}
#[inline(always)]
fn popcnt(x: u64) -> u32 {
    let r: u64;
    unsafe { core::arch::asm!("popcnt {r}, {x}", x = in(reg) x, r = lateout(reg) r, options(pure, nomem, nostack)) };
    r as u32
}

/// Index of a chunk's record in its region's array: the out-of-band bits below its
/// granule, whose bits are at shift `sh` of word `w` of the bitmap page `pg`.
#[inline(always)]
pub unsafe fn rank(pg: *const AtomicU64, w: usize, sh: u32) -> usize {
    let last = (*pg.add(w)).load(Ordering::Relaxed) & OOBS & ((1u64 << sh) - 1);
    let hw = match POPCNT.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => detect_popcnt(),
    };
    let mut n = 0;
    if hw {
        n += popcnt(last);
        for i in (w & !1)..w {
            n += popcnt((*pg.add(i)).load(Ordering::Relaxed) & OOBS);
        }
    } else {
        n += last.count_ones();
        for i in (w & !1)..w {
            n += ((*pg.add(i)).load(Ordering::Relaxed) & OOBS).count_ones();
        }
    }
    n as usize
}

/// Put a record at index `i` of the array of `p`'s region (`replace`: overwrite the one
/// there). Err when the metadata cap refused memory.
#[inline(always)]
pub unsafe fn insert(dir: &AtomicPtr<u32>, p: usize, i: usize, e: u32, replace: bool) -> Result<(), ()> {
    let r = region(dir, p, true).ok_or(())?;
    let b = r.load(Ordering::Relaxed);
    if !b.is_null() && !replace {
        let (len, cap, w) = head(b);
        if len < cap && i <= len && (w || e <= 0xffff) {
            // (the common case: room, and no widening)
            let mut j = len;
            while j > i {
                rec_set(b, w, j, rec_get(b, w, j - 1));
                j -= 1;
            }
            rec_set(b, w, i, e);
            *b = (*b & !0xffff) | (len + 1) as u32;
            return Ok(());
        }
    }
    insert_slow(r, i, e, replace)
}

#[inline(never)]
unsafe fn insert_slow(r: &AtomicPtr<u32>, i: usize, e: u32, replace: bool) -> Result<(), ()> {
    let mut b = r.load(Ordering::Relaxed);
    let (len, cap, wide) = if b.is_null() { (0, 0, false) } else { head(b) };
    if i > len {
        return Err(()); // (the invariant is broken: never expected)
    }
    let replacing = replace && i < len;
    let need = if replacing { len } else { len + 1 };
    let w = wide || e > 0xffff;
    if need > cap || w != wide {
        let per = if w { 4 } else { 2 };
        let nb = SIZES.iter().copied().find(|&x| (x - 4) / per >= need).ok_or(())?;
        let n = POOL.alloc(class_of(nb)) as *mut u32;
        if n.is_null() {
            return Err(());
        }
        for k in 0..len {
            rec_set(n, w, k, rec_get(b, wide, k));
        }
        *n = len as u32 | (((nb - 4) / per) as u32) << 16 | (w as u32) << 31;
        r.store(n, Ordering::Release);
        if !b.is_null() {
            POOL.free(class_of(bytes(cap, wide)), b.cast());
        }
        b = n;
    }
    if replacing {
        rec_set(b, w, i, e);
        return Ok(());
    }
    let mut j = len;
    while j > i {
        rec_set(b, w, j, rec_get(b, w, j - 1));
        j -= 1;
    }
    rec_set(b, w, i, e);
    *b = (*b & !0xffff) | (len + 1) as u32;
    Ok(())
}

/// Take the record at index `i` out of the array of `p`'s region.
#[inline(always)]
pub unsafe fn remove(dir: &AtomicPtr<u32>, p: usize, i: usize) -> Option<u32> {
    let r = region(dir, p, false)?;
    let b = r.load(Ordering::Relaxed);
    if b.is_null() {
        return None;
    }
    let (len, _, w) = head(b);
    if i >= len {
        return None;
    }
    let e = rec_get(b, w, i);
    for j in i + 1..len {
        rec_set(b, w, j - 1, rec_get(b, w, j));
    }
    *b = (*b & !0xffff) | (len - 1) as u32;
    Some(e)
}

/// The record at index `i` of the array of `p`'s region (readers, under the stripe lock).
pub unsafe fn get(dir: &AtomicPtr<u32>, p: usize, i: usize) -> Option<u32> {
    let b = region(dir, p, false)?.load(Ordering::Acquire);
    if b.is_null() {
        return None;
    }
    let (len, _, w) = head(b);
    (i < len).then(|| rec_get(b, w, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::null_mut;

    /// A region's record array: inserts and removals by rank keep the order, records
    /// widen from 2 to 4 bytes when a site id ≥ 2^13 joins, and orphans fit (64).
    #[test]
    fn out_of_band_arrays_keep_order_and_widen() {
        let dir = AtomicPtr::new(null_mut());
        let p = 0x7000_0000_0400usize; // some region of the page
        let mut model: Vec<u32> = Vec::new();
        unsafe {
            for k in 0..40u32 {
                let e = (k + 1) << 3 | (k & 7);
                let i = (k as usize * 7) % (model.len() + 1);
                insert(&dir, p, i, e, false).unwrap();
                model.insert(i, e);
            }
            let b = region(&dir, p, false).unwrap().load(Ordering::Relaxed);
            assert!(!head(b).2, "narrow while ids are small");
            let wide = 9000 << 3 | 5;
            insert(&dir, p, 3, wide, false).unwrap();
            model.insert(3, wide);
            insert(&dir, p, 10, 77 << 3, true).unwrap(); // replace
            model[10] = 77 << 3;
            while model.len() < 64 {
                insert(&dir, p, model.len(), 5 << 3, false).unwrap();
                model.push(5 << 3);
            }
            let b = region(&dir, p, false).unwrap().load(Ordering::Relaxed);
            let (len, _, w) = head(b);
            assert!(w && len == 64);
            for (i, &e) in model.iter().enumerate() {
                assert_eq!(rec_get(b, true, i), e, "record {i}");
                assert_eq!(get(&dir, p, i), Some(e));
            }
            for i in [0usize, 2, 30, 60] {
                let i = i.min(model.len() - 1);
                assert_eq!(remove(&dir, p, i), Some(model.remove(i)));
            }
            let b = region(&dir, p, false).unwrap().load(Ordering::Relaxed);
            for (i, &e) in model.iter().enumerate() {
                assert_eq!(rec_get(b, true, i), e, "record {i} after removals");
            }
            assert_eq!(remove(&dir, p, model.len()), None);
        }
    }
}
