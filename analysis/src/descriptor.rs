//! liballocs descriptor syntax: whitespace-separated `name(ARGCHARS)[RETCHAR]`,
//! e.g. `xmalloc(Z)p xcalloc(zZ)p xrealloc(pZ)p xfree(P)`. Per argument one
//! letter — `z` size_t, `p` pointer, `i` int — capitalised for the significant
//! argument (the type-determining size of an allocator, the freed chunk of a free
//! function).

use crate::classification::{AllocFn, Kind, Role};
use crate::seeds::Spec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub kind: Kind,
    pub args: Vec<char>,
    pub ret: Option<char>,
}

impl Descriptor {
    /// The roles this descriptor states. In an allocator list, a pointer argument
    /// before the capital size makes it realloc-like (`xrealloc(pZ)p`); a lower-case
    /// `z` before the capital `Z` is the element count (`xcalloc(zZ)p`).
    pub fn spec(&self) -> Spec {
        let mut s = Spec { kind: Some(self.kind), nargs: self.args.len() as u8, ..Spec::default() };
        let pos = |c: char| self.args.iter().position(|&a| a == c).map(|p| p as u8);
        match self.kind {
            Kind::Free => s.ptr = pos('P').or(pos('p')),
            _ => {
                s.size = pos('Z');
                if let Some(z) = s.size {
                    s.count = self.args[..z as usize].iter().position(|&a| a == 'z').map(|p| p as u8);
                    let ptr = self.args[..z as usize].iter().position(|&a| a == 'p' || a == 'P').map(|p| p as u8);
                    if self.kind == Kind::Alloc && ptr.is_some() && self.ret.is_some() {
                        s.kind = Some(Kind::Realloc);
                        s.ptr = ptr;
                    }
                }
            }
        }
        s
    }
}

/// Parse a whitespace-separated list; `kind` is what the list is for.
pub fn parse_list(text: &str, kind: Kind) -> Result<Vec<Descriptor>, String> {
    text.split_whitespace().map(|item| parse_one(item, kind)).collect()
}

fn parse_one(item: &str, kind: Kind) -> Result<Descriptor, String> {
    let bad = |why: &str| format!("bad descriptor {item:?}: {why}");
    let open = item.find('(').ok_or_else(|| bad("expected name(ARGS)"))?;
    let close = item.find(')').ok_or_else(|| bad("missing ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let name = &item[..open];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$') {
        return Err(bad("invalid function name"));
    }
    let args: Vec<char> = item[open + 1..close].chars().collect();
    if let Some(c) = args.iter().find(|c| !"zZpPiI".contains(**c)) {
        return Err(bad(&format!("unknown argument letter '{c}' (use z, p, i; capital marks the significant one)")));
    }
    let rest = &item[close + 1..];
    // Sub-free functions name their allocator after `->`; the allocator is informational.
    let rest = rest.split("->").next().unwrap_or("");
    let ret = match rest.len() {
        0 => None,
        1 if "zpi".contains(rest) => rest.chars().next(),
        _ => return Err(bad("return must be one of z, p, i")),
    };
    let caps = args.iter().filter(|c| c.is_ascii_uppercase()).count();
    if caps > 1 {
        return Err(bad("more than one significant (capital) argument"));
    }
    if kind == Kind::Free && caps == 0 {
        return Err(bad("a free function needs its freed pointer marked 'P'"));
    }
    Ok(Descriptor { name: name.to_string(), kind, args, ret })
}

/// The descriptor of a classified function. `letters` are DWARF-derived letters
/// for the arguments, when known.
pub fn render(f: &AllocFn, letters: Option<&[char]>) -> String {
    let n = f.nargs.unwrap_or(0).max(f.args.values().map(|p| p + 1).max().unwrap_or(0)) as usize;
    let mut chars: Vec<char> = (0..n).map(|i| letters.and_then(|l| l.get(i).copied()).unwrap_or('p')).collect();
    let set = |chars: &mut Vec<char>, role: Role, c: char| {
        if let Some(&p) = f.args.get(&role) {
            if let Some(slot) = chars.get_mut(p as usize) {
                *slot = c;
            }
        }
    };
    match f.kind {
        Kind::Free => set(&mut chars, Role::Ptr, 'P'),
        _ => {
            set(&mut chars, Role::Ptr, 'p');
            set(&mut chars, Role::Out, 'p');
            set(&mut chars, Role::Count, 'z');
            set(&mut chars, Role::Size, 'Z');
        }
    }
    let ret = match f.kind {
        Kind::Free => "",
        _ if f.args.contains_key(&Role::Out) => "i",
        _ => "p",
    };
    format!("{}({}){}", f.name, chars.into_iter().collect::<String>(), ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_liballocs_lists() {
        let d = parse_list("xmalloc(Z)p xcalloc(zZ)p xrealloc(pZ)p", Kind::Alloc).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].spec().count, Some(0));
        assert_eq!(d[1].spec().size, Some(1));
        assert_eq!(d[2].spec().kind, Some(Kind::Realloc));
        assert_eq!(d[2].spec().ptr, Some(0));
        let f = parse_list("xfree(P) g_slice_free1(zP)->g_slice_alloc", Kind::Free).unwrap();
        assert_eq!(f[1].spec().ptr, Some(1));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_list("xmalloc", Kind::Alloc).is_err());
        assert!(parse_list("xmalloc(Q)p", Kind::Alloc).is_err());
        assert!(parse_list("xfree(p)", Kind::Free).is_err());
        assert!(parse_list("f(ZZ)p", Kind::Alloc).is_err());
    }
}
