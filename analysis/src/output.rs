//! Text and liballocs renderings of a classification (JSON is serde's).

use crate::classification::{Classification, Kind};
use std::fmt::Write;

/// One line per function, then its evidence chain indented.
pub fn text(c: &Classification) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: {} allocation function(s)", c.binary, c.functions.len());
    for f in &c.functions {
        let roles: Vec<String> = f.args.iter().map(|(r, p)| format!("{}={p}", r.as_str())).collect();
        let _ = writeln!(
            s,
            "  {:<28} {:>10}  {:<8} {:<20} {}",
            f.name,
            f.address.to_string(),
            f.kind.as_str(),
            roles.join(" "),
            f.descriptor
        );
        if !f.evidence.is_empty() {
            let _ = writeln!(s, "      {}", f.evidence.join("; "));
        }
    }
    s
}

/// `LIBALLOCS_*_FNS=...` lines liballocs accepts.
pub fn liballocs(c: &Classification) -> String {
    let list = |pred: &dyn Fn(Kind) -> bool| -> String {
        c.functions
            .iter()
            .filter(|f| pred(f.kind) && !f.name.contains('.'))
            .map(|f| f.descriptor.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "LIBALLOCS_ALLOC_FNS=\"{}\"\nLIBALLOCS_FREE_FNS=\"{}\"\nLIBALLOCS_SUBALLOC_FNS=\"{}\"\n",
        list(&|k| matches!(k, Kind::Alloc | Kind::Realloc)),
        list(&|k| k == Kind::Free),
        list(&|k| k == Kind::Suballoc),
    )
}
