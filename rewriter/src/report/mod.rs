//! `allocsite report`: tables and flamegraphs from runtime reports
//! (`ALLOCSITE_REPORT=PATH`, JSON written by liballocsite_rt.so).
//!
//! read/model (`model.rs`) → per-site table (`table.rs`) → flamegraph (`flame.rs`).
use std::path::Path;

pub mod flame;
pub mod model;
pub mod table;

/// `leaks`: only the header and the leak list.
pub fn run(path: &Path, top: usize, by_outermost: bool, flamegraph: Option<&Path>, leaks: bool) -> Result<(), String> {
    let report = model::read(path)?;
    let text = if leaks { table::render_leaks(&report, top) } else { table::render(&report, top, by_outermost) };
    crate::stdout::write(&text)?;
    if let Some(out) = flamegraph {
        let svg = flame::svg(&report).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::atomic::write_atomic(out, &svg, Some(0o644)).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
        crate::stdout::write(&format!("flamegraph: {}\n", out.display()))?;
    }
    Ok(())
}
