//! Sizes that are a string's length: `malloc(strlen(s) + 1)` sizes its block from
//! the string `s`, like `strdup(s)`. A function doing that by hand is strdup-like
//! (no positional role, not a constructor) and its call only forwards the string's
//! size, as `xstrdup(s) → strdup(s)` does.

use crate::flow::{Summary, Target, Val};
use crate::load::Binary;

/// The C library's string-length functions (the string is argument 0).
fn is_strlen(name: &str) -> bool {
    matches!(name.split('@').next().unwrap_or(name), "strlen" | "strnlen" | "wcslen" | "wcsnlen" | "__strlen_chk")
}

/// The parameter of the function summarized by `s` whose string length `v`
/// derives from: a call of strlen (or of a local helper returning one, like
/// SQLite's `sqlite3Strlen30`) on that parameter, possibly offset.
pub(crate) fn string_param(bin: &Binary, sums: &[Summary], s: &Summary, v: &Val) -> Option<u8> {
    string_param_depth(bin, sums, s, v, 0)
}

fn string_param_depth(bin: &Binary, sums: &[Summary], s: &Summary, v: &Val, depth: u8) -> Option<u8> {
    if v.params != 0 || v.lparams != 0 || v.calls == 0 {
        return None;
    }
    (0..31).filter(|&c| v.calls & (1 << c) != 0).find_map(|c| {
        let cs = s.calls.get(c)?;
        let k = match &cs.target {
            Target::Import(n) if is_strlen(n) => 0,
            // A helper whose every result is the length of its own string parameter k.
            Target::Local(a) if depth < 2 => {
                let g = *bin.by_addr.get(a)?;
                let gs = &sums[g];
                let mut ks = gs.rets.iter().map(|r| string_param_depth(bin, sums, gs, r, depth + 1));
                let first = ks.next()??;
                if !ks.all(|x| x == Some(first)) {
                    return None;
                }
                first
            }
            _ => return None,
        };
        cs.args.get(k as usize)?.as_param_arith()
    })
}
