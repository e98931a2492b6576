//! JSON reports: at exit (`ALLOCSITE_REPORT=PATH`, `%p` = pid) and on request.
//! Runs with the runtime guard set to "internal": its own (ordinary) allocations are
//! neither indexed nor counted.
use crate::findings::esc;
use crate::arena::{CAP_HIT, META_BYTES, META_CAP, META_PEAK};
use crate::arena::INDEXING;
use crate::tls::{guarded, GUARD_INTERNAL};
use crate::sites;
use crate::stats;
use crate::symbolize::{symbolize, Sym};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Clone, Copy)]
pub struct Agg {
    pub calls: u64,
    pub bytes: u64,
    pub live_chunks: u64,
    pub live_bytes: u64,
    pub peak: u64,
    pub dropped: u64,
}
impl Agg {
    fn add(&mut self, o: &Agg) {
        self.calls += o.calls;
        self.bytes += o.bytes;
        self.live_chunks += o.live_chunks;
        self.live_bytes += o.live_bytes;
        self.peak += o.peak;
        self.dropped += o.dropped;
    }
}

pub struct SiteRow {
    pub inner: usize,
    pub outer: usize,
    pub key: usize,
    pub okey: usize,
    pub agg: Agg,
}

impl SiteRow {
    /// The function called at the innermost (`inner`) or outermost site, as a key for
    /// `sites::allocator_name`.
    fn callee(&self, inner: bool) -> usize {
        if inner {
            self.key
        } else if self.okey != 0 {
            self.okey << 8
        } else {
            self.key & 0xff
        }
    }
}

/// Snapshot of every interned site with its counters, including the batches other
/// threads have not flushed yet (`sites::stats_with_pending`).
pub fn snapshot() -> Vec<SiteRow> {
    let st = sites::stats_with_pending();
    let n = st.len() as u32;
    let mut v = Vec::with_capacity(n as usize);
    // live chunks and bytes come from the index itself
    let mut live = vec![(0u64, 0u64); n as usize];
    live_by_site(|id, size| {
        if let Some(e) = live.get_mut(id as usize) {
            e.0 += 1;
            e.1 += size;
        }
    });
    for id in 1..n {
        let k = sites::key(id);
        if k.key & 0xff == sites::A_FREE as usize {
            continue; // (a free site, interned for the heap checks)
        }
        let s = &st[id as usize];
        let (live_chunks, live_bytes) = live[id as usize];
        v.push(SiteRow {
            inner: k.inner,
            outer: k.outer,
            key: k.key,
            okey: k.okey,
            agg: Agg { calls: s.calls, bytes: s.bytes, live_chunks, live_bytes, peak: s.peak, dropped: s.dropped },
        });
    }
    v
}

/// Pieces of hooked suballocators: reported per site, kept out of the heap totals (the
/// pool chunks they were carved from are counted there already).
pub fn is_sub(key: usize) -> bool {
    key & 0xff == sites::A_SUB as usize
}

pub struct Totals {
    pub agg: Agg,
    pub dropped: u64,
    pub meta_bytes: u64,
}
pub fn totals(rows: &[SiteRow]) -> Totals {
    let mut agg = Agg::default();
    for r in rows.iter().filter(|r| !is_sub(r.key)) {
        agg.add(&r.agg);
    }
    let no_site = stats::NO_SITE.load(Ordering::Relaxed);
    agg.calls += no_site;
    let dropped = agg.dropped + no_site + stats::REENTRANT.load(Ordering::Relaxed);
    Totals { agg, dropped, meta_bytes: META_BYTES.load(Ordering::Relaxed) }
}


struct Syms(HashMap<usize, Sym>);
impl Syms {
    fn get(&mut self, a: usize) -> &Sym {
        self.0.entry(a).or_insert_with(|| symbolize(a))
    }
    fn site_fields(&mut self, out: &mut String, a: usize) {
        let s = self.get(a);
        crate::findings::site_fields(out, a, s);
        // The allocated type, when the object carries a site → type table.
        if let Some(t) = crate::types::type_at(&s.path, s.vaddr) {
            out.push_str(",\"type\":");
            esc(out, &t.to_string_lossy());
        }
    }
}

fn agg_fields(out: &mut String, a: &Agg) {
    let _ = write!(
        out,
        ",\"calls\":{},\"bytes\":{},\"peak_live_bytes\":{},\"live_chunks\":{},\"live_bytes\":{},\"dropped\":{}",
        a.calls, a.bytes, a.peak, a.live_chunks, a.live_bytes, a.dropped
    );
}

fn callee_name(callee: usize) -> String {
    crate::symbolize::demangle(&String::from_utf8_lossy(sites::allocator_name(callee)))
}

/// The function called at a group's site (`inner`: the groups are innermost sites):
/// the one of its largest contributor (a site calling through a pointer may call more).
fn allocator_of(rows: &[&SiteRow], inner: bool) -> String {
    let r = rows.iter().max_by_key(|r| (r.agg.bytes, r.agg.calls)).unwrap();
    callee_name(r.callee(inner))
}

/// The report as JSON text.
pub fn render(reason: &str) -> String {
    let rows = snapshot();
    let t = totals(&rows);
    let mut syms = Syms(HashMap::new());
    let mut out = String::with_capacity(4096 + rows.len() * 300);
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = write!(out, "{{\"allocsite_report\":1,\"pid\":{},\"program\":", unsafe { libc::getpid() });
    esc(&mut out, &exe);
    out.push_str(",\"reason\":");
    esc(&mut out, reason);
    let cap = META_CAP.load(Ordering::Relaxed);
    // (the peak counts the chunks the interposed allocators index; at least the heap
    // chunks live now)
    let peak_chunks = crate::chunkmap::peak_live_chunks(t.agg.live_chunks);
    let meta_peak = META_PEAK.load(Ordering::Relaxed).max(t.meta_bytes);
    let mut sub = Agg::default();
    for r in rows.iter().filter(|r| is_sub(r.key)) {
        sub.add(&r.agg);
    }
    let _ = write!(
        out,
        ",\"totals\":{{\"calls\":{},\"bytes\":{},\"live_chunks\":{},\"live_bytes\":{},\"dropped\":{},\"dropped_reentrant\":{},\"dropped_no_site\":{},\"meta_bytes\":{},\"meta_cap\":{},\"indexing_stopped\":{},\"meta_bytes_per_live_chunk\":{:.2},\"peak_live_chunks\":{},\"meta_bytes_peak\":{},\"meta_bytes_per_peak_live_chunk\":{:.2},\"sites\":{},\"bitmap_pages\":{},\"overwritten_trailers\":{},\"stale_chunks\":{},\"depth_overflows\":{},\"suballoc_calls\":{},\"suballoc_bytes\":{},\"suballoc_live_chunks\":{}}}",
        t.agg.calls,
        t.agg.bytes,
        t.agg.live_chunks,
        t.agg.live_bytes,
        t.dropped,
        stats::REENTRANT.load(Ordering::Relaxed),
        stats::NO_SITE.load(Ordering::Relaxed),
        t.meta_bytes,
        if cap == u64::MAX { "null".to_string() } else { cap.to_string() },
        !INDEXING.load(Ordering::Relaxed) || CAP_HIT.load(Ordering::Relaxed) != 0,
        if t.agg.live_chunks == 0 { 0.0 } else { t.meta_bytes as f64 / t.agg.live_chunks as f64 },
        peak_chunks,
        meta_peak,
        if peak_chunks == 0 { 0.0 } else { meta_peak as f64 / peak_chunks as f64 },
        rows.len(),
        crate::chunkmap::PAGES.load(Ordering::Relaxed),
        crate::chunkmap::OVERWRITTEN.load(Ordering::Relaxed),
        crate::chunkmap::STALE.load(Ordering::Relaxed),
        stats::DEPTH_OVERFLOWS.load(Ordering::Relaxed),
        sub.calls,
        sub.bytes,
        sub.live_chunks,
    );

    // per innermost site, broken down by outermost site
    let group = |by_inner: bool| -> Vec<(usize, Vec<&SiteRow>)> {
        let mut m: BTreeMap<usize, Vec<&SiteRow>> = BTreeMap::new();
        for r in &rows {
            m.entry(if by_inner { r.inner } else { r.outer }).or_default().push(r);
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|(a, rs)| (std::cmp::Reverse(rs.iter().map(|r| r.agg.bytes).sum::<u64>()), *a));
        v
    };
    for (name, by_inner) in [("sites", true), ("outermost", false)] {
        let _ = write!(out, ",\"{name}\":[");
        for (i, (addr, rs)) in group(by_inner).into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            syms.site_fields(&mut out, addr);
            out.push_str(",\"allocator\":");
            esc(&mut out, &allocator_of(&rs, by_inner));
            if rs.iter().all(|r| is_sub(r.key)) {
                out.push_str(",\"suballoc\":true");
            }
            let mut a = Agg::default();
            for r in &rs {
                a.add(&r.agg);
            }
            agg_fields(&mut out, &a);
            // sub-groups: by the other site and the function called there
            let mut sub: BTreeMap<(usize, usize), Agg> = BTreeMap::new();
            for r in &rs {
                sub.entry((if by_inner { r.outer } else { r.inner }, r.callee(!by_inner))).or_default().add(&r.agg);
            }
            let mut sub: Vec<_> = sub.into_iter().collect();
            sub.sort_by_key(|(k, a)| (std::cmp::Reverse(a.bytes), *k));
            let _ = write!(out, ",\"{}\":[", if by_inner { "outermost" } else { "innermost" });
            for (j, ((a2, key), ag)) in sub.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('{');
                syms.site_fields(&mut out, *a2);
                out.push_str(",\"allocator\":");
                esc(&mut out, &callee_name(*key));
                agg_fields(&mut out, ag);
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push(']');
    }
    out.push_str(",\"findings\":");
    crate::findings::json(&mut out);
    out.push_str("}\n");
    out
}

/// Write a report to `path` (`%p` expanded) atomically (temporary file + rename). A
/// path that is not a regular file — `/dev/stdout`, `/dev/stderr`, a FIFO — is written
/// in place: a rename over it would replace the node (or the `/dev/stdout` link) with a
/// regular file, for every process on the machine when run as root. A symbolic link to
/// a regular file is written where it points and stays a link.
pub fn write(path: &[u8], reason: &str) -> std::io::Result<()> {
    guarded(GUARD_INTERNAL, || {
        let mut buf = [0u8; 4096];
        let n = crate::sys::expand_pid(path, &mut buf);
        if n == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let p = std::str::from_utf8(&buf[..n]).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let text = render(reason);
        let target = match std::fs::metadata(p) {
            Ok(m) if !m.is_file() && !m.is_dir() => {
                use std::io::Write;
                return std::fs::OpenOptions::new().write(true).open(p)?.write_all(text.as_bytes());
            }
            Ok(_) if std::fs::symlink_metadata(p).is_ok_and(|l| l.file_type().is_symlink()) => std::fs::canonicalize(p)?,
            _ => std::path::PathBuf::from(p),
        };
        let mut tmp = target.clone().into_os_string();
        tmp.push(format!(".tmp{}", unsafe { libc::getpid() }));
        std::fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &target).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    })
}

static mut REPORT_PATH: [u8; 4096] = [0; 4096];
static REPORT_LEN: AtomicU64 = AtomicU64::new(0);

/// The `ALLOCSITE_REPORT` template, if set.
pub fn path() -> Option<&'static [u8]> {
    let n = REPORT_LEN.load(Ordering::Acquire) as usize;
    if n == 0 {
        None
    } else {
        Some(unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(REPORT_PATH) as *const u8, n) })
    }
}

/// Keep the `ALLOCSITE_REPORT` template (load time). Returns false when it is too long.
pub fn set_path(p: &[u8]) -> bool {
    if p.len() >= 4000 {
        return false;
    }
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), core::ptr::addr_of_mut!(REPORT_PATH) as *mut u8, p.len()) };
    REPORT_LEN.store(p.len() as u64, Ordering::Release);
    true
}

/// Per-site live chunk counts and bytes, from the indexes themselves (reports).
pub fn live_by_site(mut f: impl FnMut(u32, u64)) {
    crate::chunkmap::for_each_chunk(&mut |c| {
        f(c.id, c.size as u64);
        false
    });
    crate::smallheap::for_each(&mut |c| {
        f(c.id, c.size as u64);
        false
    });
    crate::index::for_each_chunk(&crate::index::SUB, &mut |c| {
        f(c.id, c.size as u64);
        false
    });
}
