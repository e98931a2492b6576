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

pub fn render(r: &Report, top: usize, by_outermost: bool) -> String {
    let t = &r.totals;
    let mut out = String::new();
    let _ = writeln!(out, "allocsite report: {} (pid {}, {})", r.program, r.pid, if r.reason.is_empty() { "?" } else { &r.reason });
    let per_chunk = if t.live_chunks > 0 { format!(" = {:.1} B per live chunk", t.meta_bytes as f64 / t.live_chunks as f64) } else { String::new() };
    let _ = writeln!(
        out,
        "{} allocation calls, {} requested; live{}: {} chunks, {}; runtime metadata {}{per_chunk}",
        t.calls,
        human(t.bytes),
        if r.reason == "exit" { " at exit (leaks)" } else { " when written" },
        t.live_chunks,
        human(t.live_bytes),
        human(t.meta_bytes)
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
}
