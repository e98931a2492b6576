//! DWARF's vetoes, applied after the data-flow rules: what the declarations
//! say a function cannot be (a `void` function returns no storage, an
//! out-parameter is a pointer to a pointer, a declared pointer is no size).

use super::{role_arity, Classifier, Found};
use crate::classification::Kind;

impl Classifier<'_> {
    /// DWARF, when present, vetoes what the data flow cannot see: a `void`
    /// function returns no storage (rax is leftover), an out-parameter is a
    /// pointer to a pointer, and role positions past the register arguments must
    /// be real scalar parameters (not members of a struct passed by value).
    pub(super) fn check_dwarf(&self, f: usize, mut found: Found) -> Option<Found> {
        let dw = self.params.get(self.bin.funcs[f].addr);
        let spec = &mut found.spec;
        if let Some(d) = dw {
            // Storage comes back as a pointer; `void` and scalar returns are not.
            if (d.void || d.returns_scalar) && spec.gives_storage() && spec.out.is_none() {
                return None;
            }
            if let Some(o) = spec.out {
                match d.args.get(o as usize) {
                    Some(a) if !a.ty.ends_with("* *") && !a.ty.ends_with("**") => return None,
                    _ => {}
                }
            }
        }
        // A size or count is a number: a declared pointer that reaches an
        // allocator's size does so through pointer differences into it (`end -
        // start`, `1 + p - zIn` while parsing zIn), a length taken of what it points
        // to, not a size the caller chose (SQLite's sqlite3Fts5ConfigParseRank,
        // sqlite3PagerOpen's zFilename). The string copy stays an allocation;
        // it just has no size role.
        if let Some(d) = dw.filter(|_| !self.bin.funcs[f].name.contains('.')) {
            for role in [&mut spec.size, &mut spec.count] {
                if role.is_some_and(|p| declared_pointer(d, p)) {
                    *role = None;
                }
            }
        }
        // Beyond the six register arguments, a position is only meaningful when
        // DWARF shows that many declared parameters. Where DWARF declares fewer
        // parameters than the position, even in a register, the register holds a
        // member of a struct passed by value (SQLite's `tokenExpr(pParse, op,
        // Token t)`: t.n in %rcx) or a variadic argument: no parameter of its own,
        // no role (clones are left alone: their DWARF may list the origin's).
        let declared = dw.map(|d| d.args.len()).unwrap_or(0);
        let own_dwarf = dw.is_some() && !self.bin.funcs[f].name.contains('.');
        for role in [&mut spec.size, &mut spec.count, &mut spec.ptr, &mut spec.out] {
            if role.is_some_and(|p| (p >= 6 || own_dwarf) && p as usize >= declared) {
                *role = None;
            }
        }
        // The arity the remaining roles prove (a dropped role proves nothing).
        spec.nargs = role_arity(spec);
        if spec.kind == Some(Kind::Free) && spec.ptr.is_none() {
            return None;
        }
        Some(found)
    }

}


/// Integer argument `p` is a parameter DWARF declares as a pointer. Only when
/// every parameter before it takes one integer register (a pointer or an integer,
/// no struct by value, no floating point), so that DWARF's order is the registers'.
fn declared_pointer(d: &crate::dwarf::FnParams, p: u8) -> bool {
    let p = p as usize;
    if p >= 6 || p >= d.args.len() {
        return false;
    }
    let one_register = |a: &crate::dwarf::Param| a.ty.ends_with('*') || (matches!(a.letter, 'i' | 'z') && !matches!(a.ty.as_str(), "float" | "double" | "long double" | "_Float128" | "__float128"));
    d.args[..p].iter().all(one_register) && d.args[p].ty.ends_with('*')
}
