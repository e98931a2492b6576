//! Text and liballocs renderings of a classification (JSON is serde's).

use crate::classification::{AllocFn, Classification, Kind};
use std::fmt::Write;

/// One line per function, then its evidence chain indented: the allocation
/// functions, then the constructors in their own section.
pub fn text(c: &Classification) -> String {
    let mut s = String::new();
    let (ctors, allocs): (Vec<&AllocFn>, Vec<&AllocFn>) = c.functions.iter().partition(|f| f.kind == Kind::Ctor);
    let _ = writeln!(s, "{}: {} allocation function(s)", c.binary, allocs.len());
    for f in allocs {
        line(&mut s, f);
    }
    if !ctors.is_empty() {
        let _ = writeln!(s, "{} constructor(s) (fixed-size storage; not allocation functions)", ctors.len());
        for f in ctors {
            line(&mut s, f);
        }
    }
    if !c.imports.is_empty() {
        let _ = writeln!(s, "{} imported allocation function(s) called", c.imports.len());
        for f in &c.imports {
            line(&mut s, f);
        }
    }
    if !c.calls.is_empty() {
        let pt = c.calls.iter().filter(|k| k.pass_through).count();
        let _ = writeln!(s, "{} call(s) of allocation functions: {} classified, {pt} pass-through", c.calls.len(), c.calls.len() - pt);
    }
    s
}

fn line(s: &mut String, f: &AllocFn) {
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
    // Constructors are not liballocs allocation functions; their own line keeps
    // them apart (liballocs ignores variables it does not know).
    format!(
        "LIBALLOCS_ALLOC_FNS=\"{}\"\nLIBALLOCS_FREE_FNS=\"{}\"\nLIBALLOCS_SUBALLOC_FNS=\"{}\"\nLIBALLOCS_CTOR_FNS=\"{}\"\n",
        list(&|k| matches!(k, Kind::Alloc | Kind::Realloc)),
        list(&|k| k == Kind::Free),
        list(&|k| k == Kind::Suballoc),
        list(&|k| k == Kind::Ctor),
    )
}
