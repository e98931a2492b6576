//! The runtime's JSON report, as read back (see runtime/README.md, "Reports").
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize, Default)]
pub struct Report {
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub program: String,
    #[serde(default)]
    pub reason: String,
    pub totals: Totals,
    pub sites: Vec<Site>,
    /// Grouped by outermost site (older or hand-written reports may lack it).
    #[serde(default)]
    pub outermost: Vec<Site>,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Totals {
    pub calls: u64,
    pub bytes: u64,
    #[serde(default)]
    pub live_chunks: u64,
    #[serde(default)]
    pub live_bytes: u64,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub meta_bytes: u64,
    #[serde(default)]
    pub meta_cap: Option<u64>,
    #[serde(default)]
    pub indexing_stopped: bool,
    /// Highest number of live chunks during the run (absent from older reports).
    #[serde(default)]
    pub peak_live_chunks: Option<u64>,
    /// Highest runtime metadata memory (absent from older reports).
    #[serde(default)]
    pub meta_bytes_peak: Option<u64>,
}

/// One site (innermost, or outermost in the `outermost` grouping) with its breakdown
/// by the other kind of site.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct Site {
    pub site: String,
    #[serde(default)]
    pub object: String,
    pub symbol: String,
    #[serde(default)]
    pub line: Option<String>,
    /// The allocated type, when the program carries a site → type table.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub allocator: String,
    pub calls: u64,
    pub bytes: u64,
    #[serde(default)]
    pub peak_live_bytes: u64,
    pub live_chunks: u64,
    pub live_bytes: u64,
    #[serde(default)]
    pub dropped: u64,
    /// Pieces of a hooked suballocator (kept out of the heap totals).
    #[serde(default)]
    pub suballoc: bool,
    #[serde(default)]
    pub outermost: Vec<Site>,
    #[serde(default)]
    pub innermost: Vec<Site>,
}

impl Site {
    /// `symbol (file:line)`, then `[type]` when known.
    pub fn label(&self) -> String {
        let base = match &self.line {
            Some(l) => format!("{} ({l})", self.symbol),
            None => self.symbol.clone(),
        };
        match &self.ty {
            Some(t) => format!("{base} [{t}]"),
            None => base,
        }
    }
}

pub fn parse(text: &str) -> Result<Report, String> {
    let mut r: Report = serde_json::from_str(text).map_err(|e| format!("not an allocsite report: {e}"))?;
    if r.outermost.is_empty() && !r.sites.is_empty() {
        r.outermost = regroup(&r.sites);
    }
    Ok(r)
}

pub fn read(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Outermost grouping rebuilt from the innermost sites' breakdowns.
fn regroup(sites: &[Site]) -> Vec<Site> {
    let mut out: Vec<Site> = Vec::new();
    for s in sites {
        for o in &s.outermost {
            let idx = match out.iter().position(|g| g.site == o.site) {
                Some(i) => i,
                None => {
                    out.push(Site { innermost: Vec::new(), outermost: Vec::new(), calls: 0, bytes: 0, peak_live_bytes: 0, live_chunks: 0, live_bytes: 0, dropped: 0, ..o.clone() });
                    out.len() - 1
                }
            };
            let g = &mut out[idx];
            g.calls += o.calls;
            g.bytes += o.bytes;
            g.peak_live_bytes += o.peak_live_bytes;
            g.live_chunks += o.live_chunks;
            g.live_bytes += o.live_bytes;
            g.dropped += o.dropped;
            g.innermost.push(Site { outermost: Vec::new(), innermost: Vec::new(), calls: o.calls, bytes: o.bytes, peak_live_bytes: o.peak_live_bytes, live_chunks: o.live_chunks, live_bytes: o.live_bytes, dropped: o.dropped, ..s.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"{"allocsite_report":1,"pid":42,"program":"/bin/demo","reason":"exit",
      "totals":{"calls":7,"bytes":700,"live_chunks":2,"live_bytes":300,"dropped":0,"meta_bytes":4096,"meta_cap":null,"indexing_stopped":false},
      "sites":[
        {"site":"0x10","object":"demo","vaddr":"0x10","symbol":"ckd_2d+0x5","line":"d.c:3","allocator":"__ckd_calloc__","calls":2,"bytes":500,"peak_live_bytes":500,"live_chunks":1,"live_bytes":250,"dropped":0,
         "outermost":[{"site":"0x20","object":"demo","vaddr":"0x20","symbol":"main+0x9","line":null,"allocator":"__ckd_calloc__","calls":2,"bytes":500,"peak_live_bytes":500,"live_chunks":1,"live_bytes":250,"dropped":0}]},
        {"site":"0x20","object":"demo","vaddr":"0x20","symbol":"main+0x9","line":null,"allocator":"malloc","calls":5,"bytes":200,"peak_live_bytes":100,"live_chunks":1,"live_bytes":50,"dropped":0,
         "outermost":[{"site":"0x20","object":"demo","vaddr":"0x20","symbol":"main+0x9","line":null,"allocator":"malloc","calls":5,"bytes":200,"peak_live_bytes":100,"live_chunks":1,"live_bytes":50,"dropped":0}]}
      ]}"#;

    #[test]
    fn parses_and_regroups() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.sites.len(), 2);
        assert_eq!(r.outermost.len(), 1);
        assert_eq!(r.outermost[0].bytes, 700);
        assert_eq!(r.outermost[0].innermost.len(), 2);
        assert_eq!(r.sites[0].label(), "ckd_2d+0x5 (d.c:3)");
    }

    #[test]
    fn rejects_other_json() {
        let e = parse("{\"x\":1}").unwrap_err();
        assert!(e.starts_with("not an allocsite report"), "{e}");
        assert!(parse("nonsense").is_err());
    }
}

#[cfg(test)]
pub use tests::SAMPLE;
