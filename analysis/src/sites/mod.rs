//! The allocation-site table (`allocsite sites`): every classified call of an
//! allocation function (DESIGN.md §1), with its place in the source, the size
//! expression the call passes, and the allocated type DWARF gives for it.

mod calls;
mod debug;
mod infer;
mod size;

use crate::classification::{Addr, CallVia, Classification};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Write;

/// One classified allocation site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The return address of the call: the key the runtime records per chunk.
    pub site: Addr,
    /// Address of the call instruction.
    pub at: Addr,
    /// `function+0xoffset` of the site.
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The allocation function called (indirect: every candidate, joined by `|`).
    pub callee: String,
    pub via: CallVia,
    /// The size expression, e.g. `constant 24`, `sizeof 56 × arg1`, `arg1 + 25`.
    pub size: String,
    /// The allocated type, when inferred.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub ty: Option<String>,
    /// Why that type (or why none).
    pub evidence: String,
}

/// The site table of one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SiteTable {
    pub binary: String,
    pub sites: Vec<Site>,
}

impl SiteTable {
    pub fn typed(&self) -> usize {
        self.sites.iter().filter(|s| s.ty.is_some()).count()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}: {} classified allocation site(s), {} typed", self.binary, self.sites.len(), self.typed());
        for site in &self.sites {
            let line = match (&site.file, site.line) {
                (Some(f), Some(l)) => format!("{f}:{l}"),
                _ => "?".into(),
            };
            let _ = writeln!(
                s,
                "  {:>10}  {:<32} {:<18} {:<24} {:<28} {}",
                site.site.to_string(),
                site.function,
                line,
                site.callee,
                site.size,
                site.ty.as_deref().unwrap_or("?")
            );
        }
        s
    }

    /// The type at a site's return address.
    pub fn type_at(&self, site: u64) -> Option<&str> {
        self.sites.iter().find(|s| s.site.0 == site).and_then(|s| s.ty.as_deref())
    }
}

/// The site table of the ELF image `data` under classification `cls`.
pub fn table(data: &[u8], cls: &Classification) -> Result<SiteTable, String> {
    let bin = crate::load::Binary::parse(data)?;
    let sums = crate::flow::summarize_all(&bin);
    let dw = crate::dwarf::Loaded::load(data);
    let types = crate::dwarf::Types::read(&dw);
    let params = crate::dwarf::Params::read(&dw);
    let dbg = debug::Debug::read(&dw);
    let raw = calls::find(&bin, &sums, cls, &types, &params);
    let mut sites = Vec::new();
    let mut decoded: Option<(usize, Vec<iced_x86::Instruction>, HashSet<u64>)> = None;
    for r in raw {
        if decoded.as_ref().map(|d| d.0) != Some(r.caller) {
            let f = &bin.funcs[r.caller];
            let insns = crate::flow::interp::decode(&bin, f.addr, f.size);
            let targets: HashSet<u64> = insns
                .iter()
                .filter(|i| matches!(i.flow_control(), iced_x86::FlowControl::ConditionalBranch | iced_x86::FlowControl::UnconditionalBranch))
                .map(|i| i.near_branch_target())
                .collect();
            decoded = Some((r.caller, insns, targets));
        }
        let Some((_, insns, targets)) = decoded.as_ref() else { continue };
        let Some(at) = insns.iter().position(|i| i.ip() == r.call.addr) else { continue };
        let start = size::block_start(insns, targets, at);
        // The call's basic block first; else what DWARF says the argument holds.
        let arg_expr = |k: u8| -> size::Expr {
            let Some(&reg) = crate::flow::interp::ARG_REGS.get(k as usize) else { return size::Expr::Unknown };
            let e = size::eval(insns, start, at, reg);
            if e.informative() {
                return e;
            }
            dbg.call_value(r.call.ret_addr, reg).filter(|v| v.informative()).unwrap_or(e)
        };
        let size_e = r.callee.size.map(arg_expr).unwrap_or(size::Expr::Unknown);
        let count_e = r.callee.count.map(arg_expr);
        let name_of = |k: Option<u8>| -> String {
            let Some(k) = k else { return "n".into() };
            let v = r.call.args.get(k as usize).copied().unwrap_or(crate::flow::Val::TOP);
            if v.params != 0 {
                format!("arg{}", v.params.trailing_zeros())
            } else if v.calls != 0 {
                "result".into()
            } else if v.lparams != 0 || v.has(crate::flow::value::LOAD) {
                "field".into()
            } else {
                "n".into()
            }
        };
        let size_text = describe(size_e, count_e, &name_of(r.callee.size), &name_of(r.callee.count), r.callee.size.is_some());
        // realloc(p, 0) frees: no allocation site.
        if r.callee.kind == crate::Kind::Realloc && size_e.as_const() == Some(0) {
            continue;
        }
        let direct = match r.call.target {
            crate::flow::Target::Local(a) => Some(a),
            _ => None,
        };
        let inf = infer::infer(&bin, &dbg, &params, insns, at, size_e, count_e, direct);
        let f = &bin.funcs[r.caller];
        let (file, line) = match dbg.line(r.call.addr) {
            Some((f, l)) => (Some(f), Some(l)),
            None => (None, None),
        };
        sites.push(Site {
            site: Addr(r.call.ret_addr),
            at: Addr(r.call.addr),
            function: format!("{}+{:#x}", f.name, r.call.ret_addr - f.addr),
            file,
            line,
            callee: r.callee.name.clone(),
            via: r.via,
            size: size_text,
            ty: inf.ty,
            evidence: inf.why,
        });
    }
    Ok(SiteTable { binary: cls.binary.clone(), sites })
}

/// The size expression as evidence: `constant 24`, `sizeof 56 × arg1`,
/// `arg1 + 25`, `sizeof 8 × count × size`.
fn describe(size: size::Expr, count: Option<size::Expr>, size_name: &str, count_name: &str, has_size: bool) -> String {
    use size::Expr;
    let one = |e: Expr, name: &str| -> String {
        match e {
            Expr::Lin { term: None, off, .. } => format!("constant {off}"),
            Expr::Lin { scale, term: Some(_), off } => {
                let head = if scale == 1 { name.to_string() } else { format!("sizeof {scale} × {name}") };
                match off {
                    0 => head,
                    o if o > 0 => format!("{head} + {o}"),
                    o => format!("{head} - {}", -o),
                }
            }
            Expr::Unknown => name.to_string(),
        }
    };
    match (count, has_size) {
        (Some(c), _) => match (c.as_const(), size.as_const()) {
            (Some(a), Some(b)) => format!("constant {}", a * b),
            (None, Some(b)) => format!("sizeof {b} × {}", one(c, count_name)),
            (Some(a), None) => format!("sizeof {a} × {}", one(size, size_name)),
            _ => format!("{} × {}", one(c, count_name), one(size, size_name)),
        },
        (None, true) => one(size, size_name),
        (None, false) => "fixed by the callee".into(),
    }
}
