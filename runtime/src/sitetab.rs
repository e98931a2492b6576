//! Interned allocation sites: (innermost site, outermost site, hooked function,
//! allocator code) → a small id stored in every chunk record, and the site table's
//! per-site statistics (cold data, one cache line per site, kept apart from the hot TLS
//! state); the per-thread caches in front of the table; the allocator codes and
//! names. How the statistics are counted (per-thread batches) is `sites`.
use crate::arena;
use crate::sys::Spin;
use crate::tls::Hot;
use crate::abi::FnDesc;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Hot-block flags (`Hot::flags`, kept by `sites`): bit 0 = the thread-exit destructor
/// is armed (see `sites::new_slot`); bit 2 = never register the block (the thread is
/// exiting and was deregistered, or the registry refused it); bit 1 in `sites`.
pub const F_DTOR: u16 = 1;
pub const F_EXITING: u16 = 4;

pub const MAX_SITES: usize = 1 << 18;
const HASH_SLOTS: usize = MAX_SITES * 4;

/// Allocator codes (the C/C++ entry point that produced a chunk).
pub const ALLOCATORS: [&str; 17] = [
    "unknown",
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "operator new",
    "operator new[]",
    "suballoc",
    "hooked",
    "free",
];
pub const A_MALLOC: u32 = 1;
pub const A_CALLOC: u32 = 2;
pub const A_REALLOC: u32 = 3;
pub const A_REALLOCARRAY: u32 = 4;
pub const A_POSIX_MEMALIGN: u32 = 5;
pub const A_ALIGNED_ALLOC: u32 = 6;
pub const A_MEMALIGN: u32 = 7;
pub const A_VALLOC: u32 = 8;
pub const A_PVALLOC: u32 = 9;
pub const A_STRDUP: u32 = 10;
pub const A_STRNDUP: u32 = 11;
pub const A_NEW: u32 = 12;
pub const A_NEW_ARR: u32 = 13;
/// A piece returned by a hooked suballocator (pool, bump arena).
pub const A_SUB: u32 = 14;
/// A chunk indexed from a hooked alloc function's result (runtime not interposing malloc).
pub const A_HOOKED: u32 = 15;
/// Free sites (heap checks: the last free site of a freed chunk); not in reports' tables.
pub const A_FREE: u32 = 16;

#[repr(C)]
pub struct Key {
    pub inner: usize,
    pub outer: usize,
    /// `(fn descriptor address << 8) | allocator code`: the function called at the
    /// innermost site (the hooked function, else the C/C++ entry point of the code).
    pub key: usize,
    /// The function called at the outermost site: the bottom active entry's descriptor,
    /// 0 = the C/C++ entry point of `key`'s code (no hooked call was active).
    pub okey: usize,
}

#[repr(C, align(64))]
pub struct Stats {
    pub calls: AtomicU64,
    pub bytes: AtomicU64,
    pub live_bytes: AtomicU64,
    pub peak_live_bytes: AtomicU64,
    /// Allocations counted in calls/bytes but not indexed (metadata cap).
    pub dropped: AtomicU64,
}

static KEYS: AtomicPtr<Key> = AtomicPtr::new(core::ptr::null_mut());
static STATS: AtomicPtr<Stats> = AtomicPtr::new(core::ptr::null_mut());
static HASH: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
static HASH_PAGES: [AtomicU64; HASH_SLOTS * 4 / 4096 / 64] = [const { AtomicU64::new(0) }; HASH_SLOTS * 4 / 4096 / 64];
/// Next free id; id 0 is never used.
pub static NEXT: AtomicU32 = AtomicU32::new(1);
pub static LOCK: Spin = Spin::new();
static INIT: AtomicU32 = AtomicU32::new(0);

/// Whether the table is set up (its statistics can be read and written).
#[inline]
pub fn ready() -> bool {
    INIT.load(Ordering::Acquire) == 2
}

#[inline]
pub fn make_key(f: *const FnDesc, code: u32) -> usize {
    ((f as usize) << 8) | code as usize
}

fn init() -> bool {
    loop {
        match INIT.compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                let k = arena::reserve(MAX_SITES * core::mem::size_of::<Key>());
                let s = arena::reserve(MAX_SITES * core::mem::size_of::<Stats>());
                let h = arena::reserve(HASH_SLOTS * 4);
                if k.is_null() || s.is_null() || h.is_null() {
                    INIT.store(3, Ordering::Release);
                    return false;
                }
                KEYS.store(k.cast(), Ordering::Relaxed);
                STATS.store(s.cast(), Ordering::Relaxed);
                HASH.store(h.cast(), Ordering::Relaxed);
                INIT.store(2, Ordering::Release);
                return true;
            }
            Err(2) => return true,
            Err(3) => return false,
            Err(_) => core::hint::spin_loop(),
        }
    }
}

/// The hash table's generations `(first slot, slots)`: a program with few sites touches
/// one page of it (a single table of `HASH_SLOTS` slots spreads even 40 sites over as
/// many pages: 160 KiB of resident memory). A site goes into the first generation that
/// is less than half full; lookups probe every generation in use.
const GENS: [(usize, usize); 3] = [(0, 1024), (1024, 16384), (1024 + 16384, MAX_SITES * 2)];
static GEN_USED: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

#[inline]
fn hash(inner: usize, outer: usize, key: usize, okey: usize) -> usize {
    let mut h = inner.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= outer.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(17);
    h ^= key.wrapping_mul(0x1656_67B1_9E37_79F9).rotate_left(31);
    h ^= okey.wrapping_mul(0x27D4_EB2F_1656_67C5).rotate_left(47);
    (h ^ (h >> 29)) & (HASH_SLOTS - 1)
}

#[inline]
pub fn key(id: u32) -> &'static Key {
    unsafe { &*KEYS.load(Ordering::Relaxed).add(id as usize) }
}
#[inline]
pub fn stats(id: u32) -> &'static Stats {
    unsafe { &*STATS.load(Ordering::Relaxed).add(id as usize) }
}
pub fn count() -> u32 {
    if INIT.load(Ordering::Acquire) != 2 {
        return 1;
    }
    NEXT.load(Ordering::Acquire)
}

/// A thread's direct-mapped cache of site ids, behind the two-entry MRU cache in the
/// hot block: allocation-heavy code alternates among more sites than two (Lua: every
/// object type has its own), and the shared table costs a few cache misses per probe.
#[repr(C)]
struct CacheEnt {
    inner: usize,
    outer: usize,
    key: usize,
    okey: usize,
    id: usize,
}
const CACHE_ENTS: usize = 64;
pub const CACHE_BYTES: usize = CACHE_ENTS * core::mem::size_of::<CacheEnt>();

/// The id of a site (0 when the table is full or over the metadata cap). A hit in the
/// one-entry cache in the hot block or in the thread's direct-mapped cache — the
/// common case — is inlined into the allocators.
#[inline(always)]
pub unsafe fn intern(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let id = cached(h, inner, outer, key, okey);
    if id != 0 {
        return id;
    }
    intern_miss(h, inner, outer, key, okey)
}

/// The id of a site if this thread's caches hold it, else 0 (nothing looked up or
/// made): the hot block's last-missed entry (a program allocating at one site hits it
/// with no address computation), then the direct-mapped cache, its slot by the
/// innermost site and the key. (A second MRU entry in the hot block, before session 8, hit
/// 0.5 % of Lua's calls and cost 5 instructions on each of the others.)
#[inline(always)]
pub unsafe fn cached(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    if (*h).c_inner == inner && (*h).c_outer == outer && (*h).c_key == key && (*h).c_okey == okey && (*h).c_id != 0 {
        return (*h).c_id;
    }
    let cache = (*h).site_cache as *const CacheEnt;
    if !cache.is_null() {
        let e = &*cache.add(cache_slot(inner, key));
        // (id 0 = an empty entry, or one a signal handler's intern is rewriting: a miss)
        if e.inner == inner && e.outer == outer && e.key == key && e.okey == okey {
            return e.id as u32;
        }
    }
    0
}

/// The direct-mapped cache's slot of a site: the top bits of its innermost return
/// address xor its key (function and allocator code) times a constant (Fibonacci
/// hashing, 5 instructions; `inner + code` instead compiled to as many and collided
/// more on Lua: 3 065 misses against 77). The key is in it because one call site can
/// make chunks under two keys in turn — `realloc(p, 0)` and `realloc(p, n)` of one call with
/// heap checks on (its free site, `A_FREE`, and its allocation site), a wrapper calling
/// `malloc` or `realloc` — and one slot for both missed on every call (Lua with all
/// checks: +232 M instructions in `intern_slow`). Return addresses have no alignment,
/// and shift-and-xor folds of them collide by the luck of the layout (on Lua,
/// `(a ^ a >> 6) & 63` put two hot sites in one slot: 1.2 M extra misses).
#[inline(always)]
fn cache_slot(inner: usize, key: usize) -> usize {
    ((inner ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - CACHE_ENTS.trailing_zeros())) as usize
}

/// Neither cache holds it: the thread's direct-mapped cache, then the table; the new
/// entry also takes the hot block's entry.
#[inline(never)]
unsafe fn intern_miss(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let id = intern_cached(h, inner, outer, key, okey);
    if id != 0 {
        // id 0 while the entry is rewritten: a signal handler's lookup meanwhile misses
        (*h).c_id = 0;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*h).c_inner = inner;
        (*h).c_outer = outer;
        (*h).c_key = key;
        (*h).c_okey = okey;
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        (*h).c_id = id;
    }
    id
}

#[inline]
unsafe fn intern_cached(h: *mut Hot, inner: usize, outer: usize, key: usize, okey: usize) -> u32 {
    let mut cache = (*h).site_cache as *mut CacheEnt;
    let slot = cache_slot(inner, key);
    if !cache.is_null() {
        let e = &*cache.add(slot);
        if e.inner == inner && e.outer == outer && e.key == key && e.okey == okey && e.id != 0 {
            return e.id as u32;
        }
    }
    let id = intern_slow(inner, outer, key, okey);
    if id == 0 {
        return 0;
    }
    if cache.is_null() {
        // (not for a thread whose exit destructor already ran: nothing would free it)
        if (*h).flags & F_EXITING != 0 {
            return id;
        }
        let p = arena::POOL.alloc(arena::class_of(CACHE_BYTES));
        if p.is_null() {
            return id;
        }
        core::ptr::write_bytes(p, 0, CACHE_BYTES);
        (*h).site_cache = p as usize;
        cache = p.cast();
    }
    // id last, and 0 while the entry is rewritten: a signal handler interning on this
    // thread meanwhile never matches a half-written entry
    let e = &mut *cache.add(slot);
    e.id = 0;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    e.inner = inner;
    e.outer = outer;
    e.key = key;
    e.okey = okey;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    e.id = id as usize;
    id
}

#[cold]
unsafe fn intern_slow(inner: usize, outer: usize, k: usize, okey: usize) -> u32 {
    if INIT.load(Ordering::Acquire) != 2 && !init() {
        return 0;
    }
    let tab = HASH.load(Ordering::Relaxed);
    let h0 = hash(inner, outer, k, okey);
    // Open addressing in generations (see `GENS`): each probed from its own home slot
    // up to an empty one; Err(the empty slot of the first generation with room).
    let find = |_locked: bool| -> Result<u32, usize> {
        let mut room = usize::MAX;
        for (g, &(lo, n)) in GENS.iter().enumerate() {
            let used = GEN_USED[g].load(Ordering::Acquire) as usize;
            if used == 0 && room != usize::MAX {
                break;
            }
            let mut i = h0 & (n - 1);
            loop {
                let id = (*tab.add(lo + i)).load(Ordering::Acquire);
                if id == 0 {
                    if room == usize::MAX && used < n / 2 {
                        room = lo + i;
                    }
                    break;
                }
                let e = key(id);
                if e.inner == inner && e.outer == outer && e.key == k && e.okey == okey {
                    return Ok(id);
                }
                i = (i + 1) & (n - 1);
            }
        }
        Err(room)
    };
    if let Ok(id) = find(false) {
        return id;
    }
    LOCK.lock();
    let r = match find(true) {
        Ok(id) => id,
        Err(slot) => {
            let id = NEXT.load(Ordering::Relaxed);
            let gen = GENS.iter().position(|&(lo, n)| slot >= lo && slot < lo + n).unwrap_or(GENS.len());
            // Count pages as they are first touched: keys, stats, hash slots.
            let ok = (id as usize) < MAX_SITES - 1
                && gen < GENS.len()
                && (id as usize % (4096 / 32) != 0 && id != 1 || arena::charge(4096))
                && (id as usize % (4096 / 64) != 0 && id != 1 || arena::charge(4096))
                && {
                    let pg = slot * 4 / 4096;
                    let bit = 1u64 << (pg % 64);
                    let w = &HASH_PAGES[pg / 64];
                    w.load(Ordering::Relaxed) & bit != 0 || (arena::charge(4096) && {
                        w.fetch_or(bit, Ordering::Relaxed);
                        true
                    })
                };
            if !ok {
                0
            } else {
                let e = &mut *KEYS.load(Ordering::Relaxed).add(id as usize);
                e.inner = inner;
                e.outer = outer;
                e.key = k;
                e.okey = okey;
                NEXT.store(id + 1, Ordering::Release);
                GEN_USED[gen].fetch_add(1, Ordering::Release);
                (*tab.add(slot)).store(id, Ordering::Release);
                id
            }
        }
    };
    LOCK.unlock();
    r
}

/// Name of the function called at a site's innermost site: the hooked function's
/// name, else the C/C++ entry point.
pub fn allocator_name(key: usize) -> &'static [u8] {
    let f = (key >> 8) as *const FnDesc;
    if !f.is_null() {
        return unsafe { crate::abi::FnDesc::name(f) };
    }
    ALLOCATORS.get(key & 0xff).copied().unwrap_or("unknown").as_bytes()
}

/// Name of the function called at a site's outermost site (`Key::okey`, else the C/C++
/// entry point of `key`'s code).
pub fn outer_allocator_name(key: usize, okey: usize) -> &'static [u8] {
    if okey != 0 {
        return unsafe { crate::abi::FnDesc::name(okey as *const FnDesc) };
    }
    allocator_name(key & 0xff)
}
pub fn libc_allocator_name(key: usize) -> &'static str {
    ALLOCATORS.get(key & 0xff).copied().unwrap_or("unknown")
}

const ALLOCATORS_C: [&core::ffi::CStr; 16] = [
    c"unknown",
    c"malloc",
    c"calloc",
    c"realloc",
    c"reallocarray",
    c"posix_memalign",
    c"aligned_alloc",
    c"memalign",
    c"valloc",
    c"pvalloc",
    c"strdup",
    c"strndup",
    c"operator new",
    c"operator new[]",
    c"suballoc",
    c"hooked",
];
/// NUL-terminated static allocator name (for the C API): `allocator_name`.
pub fn allocator_cname(key: usize) -> *const core::ffi::c_char {
    let f = (key >> 8) as *const FnDesc;
    if !f.is_null() {
        return (f as usize as i64 + unsafe { (*f).name_rel }) as *const core::ffi::c_char;
    }
    ALLOCATORS_C.get(key & 0xff).copied().unwrap_or(c"unknown").as_ptr()
}
/// NUL-terminated `outer_allocator_name`.
pub fn outer_allocator_cname(key: usize, okey: usize) -> *const core::ffi::c_char {
    if okey != 0 {
        return allocator_cname(okey << 8);
    }
    allocator_cname(key & 0xff)
}
