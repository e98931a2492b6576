//! Findings of the heap checks (check/), symbolized: the block printed on stderr when
//! one is raised, and the report's `"findings"` array. Runs with the guard set
//! (allocates normally).
use crate::check::finding::Finding;
use crate::sites;
use crate::symbolize::{demangle, symbolize, Sym};
use std::fmt::Write;

fn own_object() -> String {
    symbolize(own_object as *const () as usize).object
}

fn label(s: &Sym) -> String {
    match &s.line {
        Some(l) => format!("{} ({})", s.symbol, l),
        None => format!("{} [{}]", s.symbol, s.object),
    }
}

fn name(b: &[u8]) -> String {
    demangle(&String::from_utf8_lossy(b))
}

/// (innermost site, outermost site, function at each) of a site id.
fn site_pair(id: u32) -> Option<(usize, usize, String, String)> {
    if id == 0 || id >= sites::count() {
        return None;
    }
    let k = sites::key(id);
    Some((k.inner, k.outer, name(sites::allocator_name(k.key)), name(sites::outer_allocator_name(k.key, k.okey))))
}

/// Whether a frame is the runtime's own or one of the rewriter's trampolines (the
/// hooked function's own frame follows it).
fn noise(s: &Sym, own: &str) -> bool {
    s.object == own || s.symbol.contains(".allocsite_entry") || s.symbol.contains(".allocsite_mark")
}

/// The current stack without the runtime's own frames and the trampolines.
fn stack(f: &Finding) -> Vec<Sym> {
    let own = own_object();
    f.stack[..f.depth as usize].iter().map(|&a| symbolize(a)).filter(|s| !noise(s, &own)).collect()
}

fn hexbytes(f: &Finding) -> String {
    f.found[..f.nfound as usize].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The stderr block of a finding.
pub fn text(f: &Finding) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "allocsite: heap check: {} at 0x{:x} (tid {})", f.kind.name(), f.addr, f.tid);
    if f.base != 0 {
        let alloc = site_pair(f.alloc_id).map(|p| p.2).unwrap_or_else(|| "?".into());
        let _ = writeln!(o, "  chunk 0x{:x}, {} bytes, allocator {}", f.base, f.size, alloc);
    }
    if let Some(off) = f.offset {
        if f.nfound > 0 {
            let _ = writeln!(o, "  at offset {off}: found {}", hexbytes(f));
        } else {
            let _ = writeln!(o, "  at offset {off}");
        }
    }
    for (what, id) in [("allocated", f.alloc_id), ("last freed", f.free_id), ("freed now", f.this_free_id)] {
        if let Some((i, out, fi, fo)) = site_pair(id) {
            let _ = writeln!(o, "  {what} at {} -> {fi}", label(&symbolize(i)));
            let _ = writeln!(o, "  {:w$}  outermost {} -> {fo}", "", label(&symbolize(out)), w = what.len());
        }
    }
    let _ = writeln!(o, "  stack:");
    for (i, s) in stack(f).iter().enumerate() {
        let _ = writeln!(o, "    #{i} {}", label(s));
    }
    o
}

/// Print a finding's block on stderr.
pub fn print(f: &Finding) {
    crate::sys::write_all(2, text(f).as_bytes());
}

/// `s` as a JSON string (also the report's).
pub(crate) fn esc(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `"site":…,"object":…,"vaddr":…,"symbol":…,"line":…` of site `a` symbolized as `s`
/// (also the report's site fields).
pub(crate) fn site_fields(out: &mut String, a: usize, s: &crate::symbolize::Sym) {
    let _ = write!(out, "\"site\":\"0x{a:x}\",\"object\":");
    esc(out, &s.object);
    let _ = write!(out, ",\"vaddr\":\"0x{:x}\",\"symbol\":", s.vaddr);
    esc(out, &s.symbol);
    out.push_str(",\"line\":");
    match &s.line {
        Some(l) => esc(out, l),
        None => out.push_str("null"),
    }
}

fn site_json(out: &mut String, a: usize) {
    out.push('{');
    site_fields(out, a, &symbolize(a));
    out.push('}');
}

fn pair_json(out: &mut String, id: u32) {
    match site_pair(id) {
        None => out.push_str("null"),
        Some((i, o, fi, fo)) => {
            out.push_str("{\"innermost\":");
            site_json(out, i);
            out.push_str(",\"allocator\":");
            esc(out, &fi);
            out.push_str(",\"outermost\":");
            site_json(out, o);
            out.push_str(",\"outermost_allocator\":");
            esc(out, &fo);
            out.push('}');
        }
    }
}

/// The report's `"findings"` array.
pub fn json(out: &mut String) {
    out.push('[');
    for (n, f) in crate::check::finding::kept().iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"kind\":");
        esc(out, f.kind.name());
        let _ = write!(out, ",\"address\":\"0x{:x}\",\"tid\":{}", f.addr, f.tid);
        if f.base != 0 {
            let _ = write!(out, ",\"chunk\":\"0x{:x}\",\"size\":{}", f.base, f.size);
        } else {
            out.push_str(",\"chunk\":null,\"size\":null");
        }
        for (what, id) in [("allocated", f.alloc_id), ("last_free", f.free_id), ("this_free", f.this_free_id)] {
            let _ = write!(out, ",\"{what}\":");
            pair_json(out, id);
        }
        match f.offset {
            Some(o) => {
                let _ = write!(out, ",\"offset\":{o},\"found\":\"{}\"", hexbytes(f).replace(' ', ""));
            }
            None => out.push_str(",\"offset\":null,\"found\":null"),
        }
        out.push_str(",\"stack\":[");
        let own = own_object();
        let mut first = true;
        for &a in &f.stack[..f.depth as usize] {
            if noise(&symbolize(a), &own) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            site_json(out, a);
        }
        out.push_str("]}");
    }
    out.push(']');
}
