//! The per-site table, sorted by bytes allocated.
use super::model::{Report, Site};
use std::fmt::Write;

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The runtime's memory against the most chunks it indexed at once (what its cost per
/// chunk is about); older reports without the peak: against the chunks live at the end.
fn metadata(t: &super::model::Totals) -> String {
    match (t.peak_live_chunks, t.meta_bytes_peak) {
        (Some(peak), Some(meta_peak)) if peak > 0 => format!(
            "runtime metadata {} at the end, {} at most = {:.1} B per chunk at the peak of {} live chunks",
            human(t.meta_bytes),
            human(meta_peak),
            meta_peak as f64 / peak as f64,
            peak
        ),
        (Some(_), Some(meta_peak)) => format!("runtime metadata {} at the end, {} at most (no chunk was live)", human(t.meta_bytes), human(meta_peak)),
        _ if t.live_chunks > 0 => {
            format!("runtime metadata {} = {:.1} B per live chunk", human(t.meta_bytes), t.meta_bytes as f64 / t.live_chunks as f64)
        }
        _ => format!("runtime metadata {}", human(t.meta_bytes)),
    }
}

fn header(out: &mut String, r: &Report) {
    let t = &r.totals;
    let _ = writeln!(out, "allocsite report: {} (pid {}, {})", r.program, r.pid, if r.reason.is_empty() { "?" } else { &r.reason });
    let _ = writeln!(
        out,
        "{} allocation calls, {} requested; live{}: {} chunks, {}; {}",
        t.calls,
        human(t.bytes),
        if r.reason == "exit" { " at exit (leaks)" } else { " when written" },
        t.live_chunks,
        human(t.live_bytes),
        metadata(t)
    );
    if t.indexing_stopped || t.dropped > 0 {
        let cap = t.meta_cap.map(|c| format!(" (ALLOCSITE_MAX_META={c})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "warning: {} allocations were not indexed{}{cap}; their live counts are missing",
            t.dropped,
            if t.indexing_stopped { ", indexing stopped at the metadata cap" } else { "" }
        );
    }
}

/// Innermost sites holding live chunks, by live bytes, each with its line: the leaks
/// when the report was written at exit. Pieces of suballocators are left out (their
/// pool's chunk is listed).
fn leaks(out: &mut String, r: &Report, top: usize) {
    let mut rows: Vec<&Site> = r.sites.iter().filter(|s| s.live_chunks > 0 && !s.suballoc).collect();
    rows.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(b.live_chunks.cmp(&a.live_chunks)).then(a.symbol.cmp(&b.symbol)));
    let (chunks, bytes) = rows.iter().fold((0, 0), |(c, b), s| (c + s.live_chunks, b + s.live_bytes));
    let what = if r.reason == "exit" { "leaks at exit" } else { "live when written" };
    if rows.is_empty() {
        let _ = writeln!(out, "\n{what}: none");
        return;
    }
    let shown = rows.len().min(top);
    let _ = writeln!(
        out,
        "\n{what}: {chunks} chunks, {} at {} innermost sites{}:",
        human(bytes),
        rows.len(),
        if shown < rows.len() { format!(" (top {shown} by bytes)") } else { String::new() }
    );
    let _ = writeln!(out, "{:>3}  {:>10} {:>12}  {:<16} site", "#", "chunks", "bytes", "allocator");
    for (i, s) in rows.iter().take(top).enumerate() {
        let _ = writeln!(out, "{:>3}  {:>10} {:>12}  {:<16} {}", i + 1, s.live_chunks, s.live_bytes, s.allocator, s.label());
    }
}

/// `allocsite report --leaks`: the header and the leak list.
pub fn render_leaks(r: &Report, top: usize) -> String {
    let mut out = String::new();
    header(&mut out, r);
    leaks(&mut out, r, top);
    out
}

pub fn render(r: &Report, top: usize, by_outermost: bool) -> String {
    let mut out = String::new();
    header(&mut out, r);
    let mut rows: Vec<&Site> = if by_outermost { r.outermost.iter().collect() } else { r.sites.iter().collect() };
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.calls.cmp(&a.calls)).then(a.symbol.cmp(&b.symbol)));
    let shown = rows.len().min(top);
    let _ = writeln!(
        out,
        "\n{} {} sites by bytes{}:",
        if shown < rows.len() { format!("top {shown} of {}", rows.len()) } else { format!("all {}", rows.len()) },
        if by_outermost { "outermost" } else { "innermost" },
        if by_outermost { " (each with its innermost sites)" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>12} {:>10} {:>12} {:>10} {:>12}  {:<16} site",
        "#", "bytes", "calls", "peak live", "live", "live bytes", "allocator"
    );
    for (i, s) in rows.iter().take(top).enumerate() {
        let _ = writeln!(
            out,
            "{:>3}  {:>12} {:>10} {:>12} {:>10} {:>12}  {:<16} {}",
            i + 1,
            s.bytes,
            s.calls,
            s.peak_live_bytes,
            s.live_chunks,
            s.live_bytes,
            s.allocator,
            s.label()
        );
        if by_outermost {
            let mut subs: Vec<&Site> = s.innermost.iter().filter(|x| x.site != s.site).collect();
            subs.sort_by(|a, b| b.bytes.cmp(&a.bytes));
            for x in subs {
                let _ = writeln!(
                    out,
                    "{:>3}  {:>12} {:>10} {:>12} {:>10} {:>12}    {:<14} └ {}",
                    "",
                    x.bytes,
                    x.calls,
                    x.peak_live_bytes,
                    x.live_chunks,
                    x.live_bytes,
                    x.allocator,
                    x.label()
                );
            }
        }
    }
    leaks(&mut out, r, top);
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::{parse, SAMPLE};
    use super::*;

    #[test]
    fn sorted_by_bytes_and_limited() {
        let r = parse(SAMPLE).unwrap();
        let t = render(&r, 1, false);
        assert!(t.contains("top 1 of 2 innermost sites"), "{t}");
        assert!(t.contains("ckd_2d+0x5 (d.c:3)"));
        assert!(!t.contains("  malloc "), "{t}");
        let t = render(&r, 10, true);
        assert!(t.contains("all 1 outermost sites"), "{t}");
        assert!(t.contains("└ ckd_2d+0x5"), "{t}");
        assert!(t.contains("700"), "{t}");
    }

    #[test]
    fn leaks_per_site_with_line() {
        let r = parse(SAMPLE).unwrap();
        let t = render_leaks(&r, 10);
        let rows: Vec<&str> = t.lines().skip_while(|l| !l.starts_with("leaks at exit")).collect();
        assert_eq!(rows[0], "leaks at exit: 2 chunks, 300 B at 2 innermost sites:", "{t}");
        assert_eq!(rows[2], "  1           1          250  __ckd_calloc__   ckd_2d+0x5 (d.c:3)", "{t}");
        assert_eq!(rows[3], "  2           1           50  malloc           main+0x9", "{t}");
        // the full table ends with the same list, limited by --top
        let full = render(&r, 1, false);
        assert!(full.contains("leaks at exit: 2 chunks, 300 B at 2 innermost sites (top 1 by bytes):"), "{full}");
        let none = parse(&SAMPLE.replace("\"live_chunks\":1", "\"live_chunks\":0")).unwrap();
        assert!(render_leaks(&none, 10).ends_with("leaks at exit: none\n"));
    }

    #[test]
    fn metadata_per_peak_live_chunk() {
        let r = parse(SAMPLE).unwrap();
        // an older report without the peak: per chunk live at the end
        assert!(render(&r, 1, false).contains("runtime metadata 4.0 KiB = 2048.0 B per live chunk"));
        let r = parse(&SAMPLE.replace("\"indexing_stopped\":false", "\"indexing_stopped\":false,\"peak_live_chunks\":1000,\"meta_bytes_peak\":20480")).unwrap();
        let t = render(&r, 1, false);
        assert!(t.contains("runtime metadata 4.0 KiB at the end, 20.0 KiB at most = 20.5 B per chunk at the peak of 1000 live chunks"), "{t}");
    }
}
