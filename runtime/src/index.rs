//! The index of pieces that hooked suballocators carve out of glibc chunks (they have no
//! glibc header and no room for a trailer, unlike the chunks in `chunkmap`): every live
//! piece as one 8-byte record in a per-region sorted array. Also the sorted table of big
//! chunks that `chunkmap` keeps outside its bitmap.
//!
//! Pieces are split into levels by their size:
//!   L0: size ≤ 256 B, 2 KiB regions;    L1: ≤ 2 KiB, 16 KiB regions;
//!   L2: ≤ 16 KiB, 128 KiB regions;        L3: ≤ 128 KiB, 1 MiB regions;
//!   big: larger chunks (mmap'd by glibc), one sorted array of 24-byte records.
//! A region holds at most 64 records (glibc's minimum chunk is 32 bytes); its array grows
//! by ~25% in arena blocks (and shrinks when a third full). A chunk is never larger than its level's region, so it starts in
//! the region of a pointer into it or in the one before: an interior-pointer lookup is
//! ≤2 binary searches per level. Regions are found through a radix directory (1024-entry
//! top table, then 9 bits per 4 KiB node).
//! Each region has its own spin lock (never held across anything that can block);
//! the runtime's reentrancy guard keeps signal handlers out while a lock is held.
//!
//! Record: `off << 41 | size << 23 | site id` (off < 2^19, size ≤ 2^17, id < 2^23).
use crate::arena::{self, class_of, CLASSES, POOL};
use crate::sys::Spin;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

pub const ID_BITS: u32 = 23;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const SIZE_SHIFT: u32 = ID_BITS;
const OFF_SHIFT: u32 = 41;
const SIZE_MASK: u64 = (1 << (OFF_SHIFT - SIZE_SHIFT)) - 1;
/// Largest size per level; region size is 8× the level's largest chunk so a
/// region holds at most ~64 chunks (a search of ≤6 steps, moves of ≤512 bytes).
pub const LEVEL_MAX: [usize; 4] = [256, 2048, 16 * 1024, 128 * 1024];

/// A region's records live in one arena block: `[len: u32, cap: u32, rec...]`. The
/// directory's leaf slot holds the block address with bit 0 as the region's spin lock,
/// so finding, locking and reading a region touch two cache lines.
#[repr(C)]
pub struct Block {
    /// Records in use (live ones and tombstones).
    pub len: u16,
    pub cap: u16,
    /// Tombstones among them: a freed chunk's record keeps its place with site id 0
    /// until the address is reused or the block is compacted.
    pub dead: u16,
    pub _r: u16,
}

#[inline]
pub fn live(r: u64) -> bool {
    r & ID_MASK != 0
}

#[inline]
fn block_recs<'a>(b: *mut Block) -> &'a [u64] {
    if b.is_null() {
        &[]
    } else {
        unsafe { core::slice::from_raw_parts((b as *mut u64).add(1), (*b).len as usize) }
    }
}
#[inline]
fn recs_ptr(b: *mut Block) -> *mut u64 {
    unsafe { (b as *mut u64).add(1) }
}

/// A locked region: the slot and the block it pointed at.
pub struct Locked<'a> {
    slot: &'a AtomicUsize,
    pub block: *mut Block,
}
impl Drop for Locked<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slot.store(self.block as usize, Ordering::Release);
    }
}
impl Locked<'_> {
    #[inline]
    pub fn recs(&self) -> &[u64] {
        block_recs(self.block)
    }
}

#[inline]
fn lock_slot(slot: &AtomicUsize, wait: bool) -> Option<Locked<'_>> {
    let mut n = 0u32;
    loop {
        let v = slot.load(Ordering::Relaxed);
        if v & 1 == 0 && slot.compare_exchange_weak(v, v | 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Some(Locked { slot, block: v as *mut Block });
        }
        if !wait {
            return None;
        }
        n += 1;
        if n < 64 {
            core::hint::spin_loop();
        } else {
            unsafe { libc::sched_yield() };
        }
    }
}

pub struct Level {
    shift: u32,
    /// 9-bit interior directory levels between the top table and the 64-slot leaves.
    nint: u32,
    top: [AtomicPtr<u8>; TOP],
}
const TOP: usize = 1024;
const LEAF_BITS: u32 = 6;
const LEAF: usize = 1 << LEAF_BITS;

const fn levels() -> [Level; 4] {
    [
        Level { shift: 11, nint: 3, top: [const { AtomicPtr::new(null_mut()) }; TOP] },
        Level { shift: 14, nint: 2, top: [const { AtomicPtr::new(null_mut()) }; TOP] },
        Level { shift: 17, nint: 2, top: [const { AtomicPtr::new(null_mut()) }; TOP] },
        Level { shift: 20, nint: 2, top: [const { AtomicPtr::new(null_mut()) }; TOP] },
    ]
}

/// One index: four levels of regions plus the array of big pieces.
pub struct Index {
    pub levels: [Level; 4],
    pub big: BigTab,
}
pub static SUB: Index = Index { levels: levels(), big: BigTab::new() };
/// Set once a suballocated piece was indexed.
pub static SUB_USED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The static top tables, counted as metadata.
pub const STATIC_BYTES: u64 = (4 * TOP * 8) as u64;

#[inline]
pub fn rec_off(r: u64) -> usize {
    (r >> OFF_SHIFT) as usize
}
#[inline]
pub fn rec_size(r: u64) -> usize {
    ((r >> SIZE_SHIFT) & SIZE_MASK) as usize
}
#[inline]
pub fn rec_id(r: u64) -> u32 {
    (r & ID_MASK) as u32
}

/// The node an entry points at, created (zeroed) when asked.
#[inline]
pub fn child(entry: &AtomicPtr<u8>, create: bool, bytes: usize) -> Option<*mut u8> {
    let p = entry.load(Ordering::Acquire);
    if !p.is_null() {
        return Some(p);
    }
    if !create {
        return None;
    }
    let n = new_node(bytes)?;
    match entry.compare_exchange(null_mut(), n, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(n),
        Err(cur) => {
            POOL.free(class_of(bytes), n);
            Some(cur)
        }
    }
}

impl Level {
    /// The region slot for `key` (= addr >> shift): top table, `nint` 512-entry nodes,
    /// a 64-entry leaf. Creates directory nodes when asked.
    #[inline]
    fn slot(&self, key: usize, create: bool) -> Option<&AtomicUsize> {
        let below = LEAF_BITS + 9 * self.nint;
        let mut entry: &AtomicPtr<u8> = &self.top[(key >> below) & (TOP - 1)];
        let mut i = self.nint;
        while i > 0 {
            i -= 1;
            let node = child(entry, create, 4096)?;
            entry = unsafe { &(*(node as *const [AtomicPtr<u8>; 512]))[(key >> (LEAF_BITS + 9 * i)) & 511] };
        }
        let leaf = child(entry, create, LEAF * 8)?;
        Some(unsafe { &(*(leaf as *const [AtomicUsize; LEAF]))[key & (LEAF - 1)] })
    }

    /// Visit every leaf slot (fork handlers) or every region with a block.
    pub fn for_each_slot(&self, f: &mut dyn FnMut(usize, &AtomicUsize)) {
        fn walk(node: *mut u8, depth: u32, prefix: usize, f: &mut dyn FnMut(usize, &AtomicUsize)) {
            if depth == 0 {
                let leaf = unsafe { &*(node as *const [AtomicUsize; LEAF]) };
                for (i, s) in leaf.iter().enumerate() {
                    f((prefix << LEAF_BITS) | i, s);
                }
                return;
            }
            let t = unsafe { &*(node as *const [AtomicPtr<u8>; 512]) };
            for (i, e) in t.iter().enumerate() {
                let p = e.load(Ordering::Acquire);
                if !p.is_null() {
                    walk(p, depth - 1, (prefix << 9) | i, f);
                }
            }
        }
        for (i, t) in self.top.iter().enumerate() {
            let p = t.load(Ordering::Acquire);
            if !p.is_null() {
                walk(p, self.nint, i, f);
            }
        }
    }
    pub fn shift(&self) -> u32 {
        self.shift
    }
}

fn new_node(bytes: usize) -> Option<*mut u8> {
    let p = POOL.alloc(class_of(bytes));
    if p.is_null() {
        return None;
    }
    unsafe { core::ptr::write_bytes(p, 0, bytes) };
    Some(p)
}

/// Index of the first record with offset ≥ off (branch-free binary search).
#[inline]
fn lower_bound(recs: &[u64], off: usize) -> usize {
    let key = (off as u64) << OFF_SHIFT;
    recs.partition_point(|&r| r < key)
}

impl Locked<'_> {
    /// Insert. Returns Ok(Some(old)) when a stale record had the same base.
    fn insert(&mut self, rec: u64) -> Result<Option<u64>, ()> {
        let off = rec_off(rec);
        let b = self.block;
        let mut len = if b.is_null() { 0 } else { unsafe { (*b).len as usize } };
        // glibc often carves new chunks at increasing addresses: append without a search
        let mut i = if len == 0 || rec_off(unsafe { *recs_ptr(b).add(len - 1) }) < off { len } else { lower_bound(self.recs(), off) };
        unsafe {
            if i < len && rec_off(*recs_ptr(b).add(i)) == off {
                // the same base again (glibc reused a freed chunk): no move at all
                let old = *recs_ptr(b).add(i);
                *recs_ptr(b).add(i) = rec;
                if live(old) {
                    return Ok(Some(old));
                }
                (*b).dead -= 1;
                return Ok(None);
            }
            // a neighbouring tombstone can take the record without breaking the order
            if i < len && !live(*recs_ptr(b).add(i)) {
                *recs_ptr(b).add(i) = rec;
                (*b).dead -= 1;
                return Ok(None);
            }
            if i > 0 && !live(*recs_ptr(b).add(i - 1)) {
                *recs_ptr(b).add(i - 1) = rec;
                (*b).dead -= 1;
                return Ok(None);
            }
        }
        let cap = if b.is_null() { 0 } else { unsafe { (*b).cap as usize } };
        if len == cap && !b.is_null() && unsafe { (*b).dead } != 0 {
            len = compact(b);
            i = lower_bound(self.recs(), off);
        }
        if len == cap {
            let want = if len == 0 { 1 } else { len + (len / 4).max(2) };
            if 8 + want * 8 > CLASSES[CLASSES.len() - 1] {
                return Err(()); // only stale records could fill a region this much
            }
            let k = class_of(8 + want * 8);
            let n = POOL.alloc(k) as *mut Block;
            if n.is_null() {
                return Err(());
            }
            unsafe {
                (*n).len = len as u16;
                (*n).cap = ((CLASSES[k] - 8) / 8) as u16;
                (*n).dead = 0;
                if !b.is_null() {
                    core::ptr::copy_nonoverlapping(recs_ptr(b), recs_ptr(n), len);
                    POOL.free(class_of(8 + cap * 8), b.cast());
                }
            }
            self.block = n;
        }
        let b = self.block;
        unsafe {
            let r = recs_ptr(b);
            let mut j = len;
            while j > i {
                *r.add(j) = *r.add(j - 1);
                j -= 1;
            }
            *r.add(i) = rec;
            (*b).len += 1;
        }
        Ok(None)
    }
    /// Mark the live record based at `off` dead; returns it.
    fn remove(&mut self, off: usize) -> Option<u64> {
        let recs = self.recs();
        let len = recs.len();
        let i = lower_bound(recs, off);
        if i >= len || rec_off(recs[i]) != off || !live(recs[i]) {
            return None;
        }
        let r = recs[i];
        unsafe {
            let b = self.block;
            let p = recs_ptr(b);
            *p.add(i) = r & !ID_MASK;
            (*b).dead += 1;
            // drop trailing tombstones; compact (and maybe shrink) when half are dead
            let mut n = len;
            while n > 0 && !live(*p.add(n - 1)) {
                n -= 1;
                (*b).dead -= 1;
            }
            (*b).len = n as u16;
            if (*b).dead as usize * 2 > n && n >= 8 {
                let n = compact(b);
                let cap = (*b).cap as usize;
                if cap >= 16 && n * 3 <= cap {
                    let k = class_of(8 + 8 * (n + (n / 4).max(2)));
                    let nb = POOL.alloc(k) as *mut Block;
                    if !nb.is_null() {
                        (*nb).len = n as u16;
                        (*nb).cap = ((CLASSES[k] - 8) / 8) as u16;
                        (*nb).dead = 0;
                        core::ptr::copy_nonoverlapping(p, recs_ptr(nb), n);
                        POOL.free(class_of(8 + cap * 8), b.cast());
                        self.block = nb;
                    }
                }
            }
        }
        Some(r)
    }
    /// The live record with the greatest offset ≤ off.
    fn floor(&self, off: usize) -> Option<u64> {
        let recs = self.recs();
        let i = lower_bound(recs, off + 1);
        recs[..i].iter().rev().find(|&&r| live(r)).copied()
    }
    /// The live record with the greatest offset.
    fn last_live(&self) -> Option<u64> {
        self.recs().iter().rev().find(|&&r| live(r)).copied()
    }
}

/// Drop a block's tombstones; returns the new length.
fn compact(b: *mut Block) -> usize {
    unsafe {
        let p = recs_ptr(b);
        let len = (*b).len as usize;
        let mut w = 0;
        for r in 0..len {
            let v = *p.add(r);
            if live(v) {
                *p.add(w) = v;
                w += 1;
            }
        }
        (*b).len = w as u16;
        (*b).dead = 0;
        w
    }
}

// ---------------------------------------------------------------- L2: big chunks

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Big {
    pub base: usize,
    pub size: usize,
    pub id: u64,
}
pub struct BigTab {
    pub lock: Spin,
    pub v: core::cell::UnsafeCell<(*mut Big, usize, usize, usize)>, // ptr, len, cap, mapped bytes
}
unsafe impl Sync for BigTab {}

impl BigTab {
    pub const fn new() -> BigTab {
        BigTab { lock: Spin::new(), v: core::cell::UnsafeCell::new((null_mut(), 0, 0, 0)) }
    }
    pub fn items(&self) -> &[Big] {
        let v = unsafe { &*self.v.get() };
        if v.1 == 0 {
            &[]
        } else {
            unsafe { core::slice::from_raw_parts(v.0, v.1) }
        }
    }
    pub fn len(&self) -> usize {
        unsafe { core::ptr::read_volatile(&(*self.v.get()).1) }
    }
    fn pos(&self, base: usize) -> usize {
        self.items().partition_point(|b| b.base < base)
    }
    pub fn insert(&self, b: Big) -> Result<Option<Big>, ()> {
        let i = self.pos(b.base);
        let v = unsafe { &mut *self.v.get() };
        if i < v.1 && unsafe { (*v.0.add(i)).base } == b.base {
            let old = unsafe { *v.0.add(i) };
            unsafe { *v.0.add(i) = b };
            return Ok(Some(old));
        }
        if v.1 == v.2 {
            let bytes = ((v.2.max(64) * 2 * 24) + 4095) & !4095;
            let n = arena::map(bytes) as *mut Big;
            if n.is_null() {
                return Err(());
            }
            unsafe {
                core::ptr::copy_nonoverlapping(v.0, n, v.1);
                if v.3 != 0 {
                    libc::munmap(v.0.cast(), v.3);
                    arena::META_BYTES.fetch_sub(v.3 as u64, Ordering::Relaxed);
                }
            }
            *v = (n, v.1, bytes / 24, bytes);
        }
        unsafe {
            core::ptr::copy(v.0.add(i), v.0.add(i + 1), v.1 - i);
            *v.0.add(i) = b;
        }
        v.1 += 1;
        Ok(None)
    }
    pub fn remove(&self, base: usize) -> Option<Big> {
        let i = self.pos(base);
        let v = unsafe { &mut *self.v.get() };
        if i >= v.1 || unsafe { (*v.0.add(i)).base } != base {
            return None;
        }
        let old = unsafe { *v.0.add(i) };
        unsafe { core::ptr::copy(v.0.add(i + 1), v.0.add(i), v.1 - i - 1) };
        v.1 -= 1;
        Some(old)
    }
    /// The i-th big chunk, read under the lock with the guard set (so a signal
    /// handler's allocation cannot wait for the lock on this thread).
    pub fn nth(&self, i: usize) -> Option<Big> {
        crate::tls::guarded(crate::tls::GUARD_WORK, || {
            self.lock.lock();
            let b = self.items().get(i).copied();
            self.lock.unlock();
            b
        })
    }
    pub fn find(&self, p: usize) -> Option<Big> {
        let i = self.items().partition_point(|b| b.base <= p);
        if i == 0 {
            return None;
        }
        let b = self.items()[i - 1];
        (p < b.base + b.size.max(1)).then_some(b)
    }
}

// ---------------------------------------------------------------- operations

/// A chunk as found in the index.
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    pub base: usize,
    pub size: usize,
    pub id: u32,
}

#[inline]
fn level_of(usable: usize) -> usize {
    if usable <= LEVEL_MAX[0] {
        0
    } else if usable <= LEVEL_MAX[1] {
        1
    } else if usable <= LEVEL_MAX[2] {
        2
    } else if usable <= LEVEL_MAX[3] {
        3
    } else {
        4
    }
}

const ADDR_LIMIT: usize = 1 << 47;

/// Index a chunk. Err when over the metadata cap; Ok(Some(old)) when a stale record
/// (a chunk freed without the index seeing it) had the same base.
pub unsafe fn insert(ix: &Index, p: usize, size: usize, id: u32) -> Result<Option<Chunk>, ()> {
    if p >= ADDR_LIMIT || id as u64 > ID_MASK {
        return Err(());
    }
    let lv = level_of(size);
    if lv == 4 {
        ix.big.lock.lock();
        let r = ix.big.insert(Big { base: p, size, id: id as u64 });
        ix.big.lock.unlock();
        return r.map(|o| o.map(|b| Chunk { base: b.base, size: b.size, id: b.id as u32 }));
    }
    let l = &ix.levels[lv];
    let Some(slot) = l.slot(p >> l.shift, true) else {
        return Err(());
    };
    let off = p & ((1 << l.shift) - 1);
    let rec = ((off as u64) << OFF_SHIFT) | ((size as u64) << SIZE_SHIFT) | id as u64;
    let mut g = lock_slot(slot, true).unwrap();
    let res = g.insert(rec);
    drop(g);
    res.map(|o| o.map(|old| Chunk { base: p, size: rec_size(old), id: rec_id(old) }))
}

/// Remove the piece based at p. None when unknown.
pub unsafe fn remove(ix: &Index, p: usize) -> Option<Chunk> {
    if p >= ADDR_LIMIT {
        return None;
    }
    // the piece's size (hence level) is unknown: try each
    for lv in 0..5 {
        if let Some(c) = remove_at(ix, lv, p) {
            return Some(c);
        }
    }
    None
}

unsafe fn remove_at(ix: &Index, lv: usize, p: usize) -> Option<Chunk> {
    if lv == 4 {
        ix.big.lock.lock();
        let r = ix.big.remove(p);
        ix.big.lock.unlock();
        return r.map(|b| Chunk { base: b.base, size: b.size, id: b.id as u32 });
    }
    let l = &ix.levels[lv];
    let slot = l.slot(p >> l.shift, false)?;
    if slot.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut g = lock_slot(slot, true).unwrap();
    let res = g.remove(p & ((1 << l.shift) - 1));
    drop(g);
    res.map(|rec| Chunk { base: p, size: rec_size(rec), id: rec_id(rec) })
}

/// Remove every SUB piece based in [b, e) (the glibc chunk holding a pool was freed).
pub unsafe fn remove_range(ix: &Index, b: usize, e: usize, f: &mut dyn FnMut(Chunk)) {
    for l in ix.levels.iter() {
        let mask = (1usize << l.shift) - 1;
        for key in (b >> l.shift)..=((e.max(b + 1) - 1) >> l.shift) {
            let Some(slot) = l.slot(key, false) else {
                continue;
            };
            if slot.load(Ordering::Relaxed) & !1 == 0 {
                continue;
            }
            let mut g = lock_slot(slot, true).unwrap();
            let lo = if key == b >> l.shift { b & mask } else { 0 };
            let mut i = lower_bound(g.recs(), lo);
            loop {
                let Some(&r) = g.recs().get(i) else { break };
                let base = (key << l.shift) + rec_off(r);
                if base >= e {
                    break;
                }
                if live(r) {
                    // (remove may compact the block: search again from this offset)
                    g.remove(rec_off(r));
                    f(Chunk { base, size: rec_size(r), id: rec_id(r) });
                    i = lower_bound(g.recs(), rec_off(r) + 1);
                } else {
                    i += 1;
                }
            }
            drop(g);
        }
    }
    if unsafe { core::ptr::read_volatile(&(*ix.big.v.get()).1) } == 0 {
        return;
    }
    ix.big.lock.lock();
    loop {
        let i = ix.big.pos(b);
        let Some(&x) = ix.big.items().get(i) else {
            break;
        };
        if x.base >= e {
            break;
        }
        ix.big.remove(x.base);
        f(Chunk { base: x.base, size: x.size, id: x.id as u32 });
    }
    ix.big.lock.unlock();
}

/// The chunk containing p (any interior pointer). `wait`: false → give up (None) rather
/// than wait for a lock (signal-handler callers).
pub fn lookup(ix: &Index, p: usize, wait: bool) -> Option<Chunk> {
    if p >= ADDR_LIMIT {
        return None;
    }
    for l in ix.levels.iter() {
        let mask = (1usize << l.shift) - 1;
        let key = p >> l.shift;
        if let Some(slot) = l.slot(key, false) {
            let g = lock_slot(slot, wait)?;
            let f = g.floor(p & mask);
            drop(g);
            if let Some(rec) = f {
                let base = (key << l.shift) + rec_off(rec);
                if p < base + rec_size(rec).max(1) {
                    return Some(Chunk { base, size: rec_size(rec), id: rec_id(rec) });
                }
                continue;
            }
        }
        if key == 0 {
            continue;
        }
        if let Some(slot) = l.slot(key - 1, false) {
            let g = lock_slot(slot, wait)?;
            let last = g.last_live();
            drop(g);
            if let Some(rec) = last {
                let base = ((key - 1) << l.shift) + rec_off(rec);
                if p < base + rec_size(rec).max(1) {
                    return Some(Chunk { base, size: rec_size(rec), id: rec_id(rec) });
                }
            }
        }
    }
    if !(if wait {
        ix.big.lock.lock();
        true
    } else {
        ix.big.lock.try_lock()
    }) {
        return None;
    }
    let b = ix.big.find(p);
    ix.big.lock.unlock();
    b.map(|b| Chunk { base: b.base, size: b.size, id: b.id as u32 })
}

/// Copy out the records of every region, calling `f` with each chunk outside any lock.
pub fn for_each_chunk(ix: &Index, f: &mut dyn FnMut(Chunk) -> bool) -> usize {
    let mut n = 0usize;
    let mut stop = false;
    let mut buf = [0u64; 512];
    for l in ix.levels.iter() {
        let shift = l.shift;
        l.for_each_slot(&mut |key, slot| {
            if stop || slot.load(Ordering::Relaxed) & !1 == 0 {
                return;
            }
            let k = crate::tls::guarded(crate::tls::GUARD_WORK, || {
                let g = lock_slot(slot, true).unwrap();
                let recs = g.recs();
                let k = recs.len().min(buf.len());
                buf[..k].copy_from_slice(&recs[..k]);
                k
            });
            for &rec in buf[..k].iter().filter(|&&r| live(r)) {
                n += 1;
                if f(Chunk { base: (key << shift) + rec_off(rec), size: rec_size(rec), id: rec_id(rec) }) {
                    stop = true;
                    return;
                }
            }
        });
    }
    if !stop {
        let mut i = 0;
        loop {
            let Some(b) = ix.big.nth(i) else { break };
            n += 1;
            if f(Chunk { base: b.base, size: b.size, id: b.id as u32 }) {
                break;
            }
            i += 1;
        }
    }
    n
}

/// fork: lock every region of `ix` (`lib.rs` takes the other locks after these).
pub fn lock_regions(ix: &Index) {
    for l in ix.levels.iter() {
        l.for_each_slot(&mut |_, s| core::mem::forget(lock_slot(s, true)));
    }
}
/// fork: release what `lock_regions` took (also in the child).
pub fn unlock_regions(ix: &Index) {
    for l in ix.levels.iter() {
        l.for_each_slot(&mut |_, s| s.store(s.load(Ordering::Relaxed) & !1, Ordering::Release));
    }
}
