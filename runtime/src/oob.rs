//! Out-of-band records of the heap index (`chunkmap`): where the record — site id and
//! slack — of a chunk without 8 spare usable bytes (a 24-byte request in a 24-byte
//! chunk) goes.
//!
//! A bitmap page's out-of-band records are kept per 1 KiB region of heap (64 granules,
//! whose bits are 2 bitmap words) in a fixed array of 32 slots, one per pair of
//! granules (glibc's chunks are at least 32 bytes apart, so no two live chunks start
//! in one pair): `site id << 3 | slack`, 2 bytes each while every site id in the
//! region is below 2^13, else 4 (a program with fewer sites than that: half the
//! memory). The block is made when the region gets its first out-of-band chunk, found
//! through a 512-entry directory per page (`chunkmap::Slot::oob`), and tagged wide in
//! bit 0 of its directory entry. A slot holds the record of the granule of its pair
//! whose start and out-of-band bits are both set; finding it is one load, and neither
//! an insert nor a removal moves other records (the dense arrays this replaced kept the
//! records in address order, indexed by a popcount of the bits below, and shifted on
//! every insert and removal). Out-of-band bits change only together with their slot
//! (under the page's stripe lock once there are threads). A chunk freed by a signal
//! handler that interrupted the runtime loses only its start bit: its out-of-band bit
//! stays (an orphan) until a chunk starts in that pair again.
use crate::arena::{class_of, POOL};
use crate::index::child;
use crate::sys::Spin;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A region: 1 KiB of heap, 64 granules, two bitmap words.
pub const REGION_SHIFT: u32 = 10;
/// Regions per directory (one bitmap page covers 512 KiB of heap).
pub const REGIONS: usize = 512;
/// Site ids below this fit a record (`id << 3 | slack` in 32 bits).
pub const ID_LIMIT: u32 = 1 << 29;
/// Slots per region: one per pair of granules.
const SLOTS: usize = 32;
/// Slot widths (log2 of the bytes), tagged in bits 0-1 of a directory entry: a
/// region's records take 1 byte each while every site id in it is below 2^5 (the
/// common sites of a program with few), 2 while below 2^13, else 4.
const BYTE: usize = 0;
const WIDEST: usize = 2;

/// Striped locks of the out-of-band records (by page key), taken once there are threads.
static LOCKS: [Spin; 64] = [const { Spin::new() }; 64];
#[inline(always)]
pub fn lock(key: usize) -> &'static Spin {
    &LOCKS[key & 63]
}

/// fork: hold every stripe lock, then the blocks' lock, across it (`lib.rs`, through
/// `chunkmap::lock_oob`; the order in which `set_slow` takes them).
pub fn lock_all() {
    for l in &LOCKS {
        l.lock();
    }
    BLK_LOCK.lock();
}
pub fn unlock_all() {
    BLK_LOCK.unlock();
    for l in LOCKS.iter().rev() {
        l.unlock();
    }
}

// Blocks of exactly 32, 64 or 128 bytes, carved from 4 KiB pool blocks (the pool's
// size classes would make them 40, 72 and 136 bytes: a fifth more for the 1-byte
// blocks most regions of a program with few sites have). Freed blocks (a region
// widened) go to a list per width. Cold: only a region's first record and a widening
// come here.
const SLAB: usize = 4096;
static BLK_LOCK: Spin = Spin::new();
static BLK_FREE: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static BLK_BUMP: AtomicUsize = AtomicUsize::new(0);
static BLK_LEFT: AtomicUsize = AtomicUsize::new(0);

/// A block for 32 slots of width `w`; null past the metadata cap.
unsafe fn block_alloc(w: usize) -> *mut u8 {
    let sz = SLOTS << w;
    BLK_LOCK.lock();
    let mut p = BLK_FREE[w].load(Ordering::Relaxed);
    if p != 0 {
        BLK_FREE[w].store(*(p as *const usize), Ordering::Relaxed);
    } else {
        if BLK_LEFT.load(Ordering::Relaxed) < sz {
            let m = POOL.alloc(class_of(SLAB));
            if m.is_null() {
                BLK_LOCK.unlock();
                return core::ptr::null_mut();
            }
            BLK_BUMP.store(m as usize, Ordering::Relaxed);
            BLK_LEFT.store(SLAB, Ordering::Relaxed);
        }
        p = BLK_BUMP.load(Ordering::Relaxed);
        BLK_BUMP.store(p + sz, Ordering::Relaxed);
        BLK_LEFT.store(BLK_LEFT.load(Ordering::Relaxed) - sz, Ordering::Relaxed);
    }
    BLK_LOCK.unlock();
    p as *mut u8
}

unsafe fn block_free(w: usize, p: *mut u8) {
    BLK_LOCK.lock();
    *(p as *mut usize) = BLK_FREE[w].load(Ordering::Relaxed);
    BLK_FREE[w].store(p as usize, Ordering::Relaxed);
    BLK_LOCK.unlock();
}

/// The region's block entry in the page's directory `dir` (the directory made when
/// `create`).
#[inline(always)]
unsafe fn region(dir: &AtomicPtr<u32>, p: usize, create: bool) -> Option<&'static AtomicUsize> {
    let mut d = dir.load(Ordering::Acquire) as *mut u8;
    if d.is_null() {
        d = child(&*(dir as *const AtomicPtr<u32> as *const AtomicPtr<u8>), create, REGIONS * 8)?;
    }
    Some(&(*(d as *const [AtomicUsize; REGIONS]))[(p >> REGION_SHIFT) & (REGIONS - 1)])
}

/// The slot of the chunk at `p` in its region's block.
#[inline(always)]
fn slot(p: usize) -> usize {
    (p >> 5) & (SLOTS - 1)
}

/// The width a record needs.
#[inline(always)]
fn width(e: u32) -> usize {
    if e < 1 << 8 {
        0
    } else if e < 1 << 16 {
        1
    } else {
        2
    }
}

/// Set the record of the chunk at `p`. Err when the metadata cap refused memory.
#[inline(always)]
pub unsafe fn set(dir: &AtomicPtr<u32>, p: usize, e: u32) -> Result<(), ()> {
    let r = region(dir, p, true).ok_or(())?;
    let b = r.load(Ordering::Relaxed);
    let (at, w) = (b & !3, b & 3);
    if at != 0 && (e as u64) >> (8 << w) == 0 {
        match w {
            BYTE => *(at as *mut u8).add(slot(p)) = e as u8,
            1 => *(at as *mut u16).add(slot(p)) = e as u16,
            _ => *(at as *mut u32).add(slot(p)) = e,
        }
        return Ok(());
    }
    set_slow(r, p, e)
}

/// `set` when the region's block exists and is wide enough (true), else nothing
/// (false).
#[inline(always)]
pub unsafe fn set_existing(dir: &AtomicPtr<u32>, p: usize, e: u32) -> bool {
    let d = dir.load(Ordering::Relaxed) as *const AtomicUsize;
    if d.is_null() {
        return false;
    }
    let b = (*d.add((p >> REGION_SHIFT) & (REGIONS - 1))).load(Ordering::Relaxed);
    let (at, w) = (b & !3, b & 3);
    if at == 0 || (e as u64) >> (8 << w) != 0 {
        return false;
    }
    match w {
        BYTE => *(at as *mut u8).add(slot(p)) = e as u8,
        1 => *(at as *mut u16).add(slot(p)) = e as u16,
        _ => *(at as *mut u32).add(slot(p)) = e,
    }
    true
}

/// The region's first record, or the first one too wide for its block: make or widen
/// the block (the records already there copied).
#[cold]
#[inline(never)]
unsafe fn set_slow(r: &AtomicUsize, p: usize, e: u32) -> Result<(), ()> {
    let b = r.load(Ordering::Relaxed);
    let (at, old) = (b & !3, b & 3);
    let w = if at == 0 { width(e) } else { width(e).max(old) };
    let n = block_alloc(w);
    if n.is_null() {
        return Err(());
    }
    let r_at = |k: usize| -> u32 {
        match old {
            BYTE => *(at as *const u8).add(k) as u32,
            1 => *(at as *const u16).add(k) as u32,
            _ => *(at as *const u32).add(k),
        }
    };
    let put = |k: usize, v: u32| match w {
        BYTE => *n.add(k) = v as u8,
        1 => *(n as *mut u16).add(k) = v as u16,
        _ => *(n as *mut u32).add(k) = v,
    };
    if at != 0 {
        for k in 0..SLOTS {
            put(k, r_at(k));
        }
    }
    put(slot(p), e);
    debug_assert!(n as usize & 3 == 0 && w <= WIDEST);
    r.store(n as usize | w, Ordering::Release);
    if at != 0 {
        block_free(old, at as *mut u8);
    }
    Ok(())
}

/// The record in the slot of the chunk at `p` (whose bits say it is there).
#[inline(always)]
pub unsafe fn get(dir: &AtomicPtr<u32>, p: usize) -> Option<u32> {
    let b = region(dir, p, false)?.load(Ordering::Acquire);
    let at = b & !3;
    if at == 0 {
        return None;
    }
    Some(match b & 3 {
        BYTE => *(at as *const u8).add(slot(p)) as u32,
        1 => *(at as *const u16).add(slot(p)) as u32,
        _ => *(at as *const u32).add(slot(p)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::null_mut;

    /// A region's slots: one per granule pair, narrow until a site id ≥ 2^13 comes,
    /// then every record kept as it widens.
    #[test]
    fn out_of_band_slots_keep_records_and_widen() {
        let dir = AtomicPtr::new(null_mut());
        let base = 0x7000_0000_0400usize; // some region of the page
        let mut model = [None; SLOTS];
        unsafe {
            assert_eq!(get(&dir, base), None);
            for k in 0..SLOTS {
                // chunks at either granule of the pair
                let p = base + k * 32 + (k & 1) * 16;
                let e = (k as u32 + 1) << 3 | (k as u32 & 7);
                set(&dir, p, e).unwrap();
                model[k] = Some((p, e));
            }
            let b = region(&dir, base, false).unwrap().load(Ordering::Relaxed);
            assert!(b & 3 == 1, "2 bytes while ids are below 2^13: {b:x}");
            let wide = 9000 << 3 | 5;
            set(&dir, base + 3 * 32, wide).unwrap();
            model[3] = Some((base + 3 * 32, wide));
            set(&dir, base + 10 * 32 + 16, 77 << 3).unwrap(); // replace
            model[10] = Some((base + 10 * 32 + 16, 77 << 3));
            let b = region(&dir, base, false).unwrap().load(Ordering::Relaxed);
            assert!(b & 3 == 2, "wide");
            // a region with small ids only: 1 byte a record
            let small = base + 4096;
            set(&dir, small + 32, 3 << 3 | 1).unwrap();
            assert!(region(&dir, small, false).unwrap().load(Ordering::Relaxed) & 3 == 0);
            assert_eq!(get(&dir, small + 32), Some(3 << 3 | 1));
            for (k, m) in model.iter().enumerate() {
                let (p, e) = m.unwrap();
                assert_eq!(get(&dir, p), Some(e), "slot {k}");
            }
            // the next region is still empty
            assert_eq!(get(&dir, base + 1024), None);
        }
    }
}
