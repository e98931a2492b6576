//! `allocsite sites BIN`: the allocation-site table.

use crate::atomic::write_atomic;
use allocsite_analysis as analysis;
use std::path::Path;

pub fn run(bin: &Path, json: bool, output: Option<&Path>, reanalyze: bool) -> Result<(), String> {
    let name = bin.display();
    let data = std::fs::read(bin).map_err(|e| format!("{name}: cannot read: {e}"))?;
    // A link-time table (`allocsite cc`) was made with the dependencies' summaries.
    let embedded = if reanalyze { None } else { crate::cc::embed::read_sites(&data) };
    let table = match embedded {
        Some(mut t) => {
            t.binary = name.to_string();
            t
        }
        None => {
            let mut cls = analysis::analyze_bytes(&data, &analysis::Options::default()).map_err(|e| format!("{name}: {e}"))?;
            cls.binary = name.to_string();
            analysis::sites::table(&data, &cls).map_err(|e| format!("{name}: {e}"))?
        }
    };
    let text = if json { table.to_json() + "\n" } else { table.text() };
    match output {
        Some(path) => write_atomic(path, text.as_bytes(), None).map_err(|e| format!("{}: cannot write: {e}", path.display())),
        None => crate::stdout::write(&text),
    }
}
