//! The classification: plain data handed from the analysis to the rewriter.
//!
//! It is exactly what `allocsite analyze --format json` prints and what
//! `allocsite rewrite --fns FILE` reads, so analysis and rewriting can run on
//! different machines or be edited by hand. Keep it free of analysis internals.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// What an allocation function does with the storage it hands out or takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Returns fresh storage sized by an argument (malloc-like).
    Alloc,
    /// Resizes storage an argument points to (realloc-like).
    Realloc,
    /// Releases the storage an argument points to.
    Free,
    /// Carves chunks out of a bigger allocation (pool, bump arena).
    Suballoc,
    /// A constructor (DESIGN.md §1): returns fresh storage whose size is fixed inside
    /// it (`luaH_new`), or hands storage back through an out-parameter without taking
    /// its size (`sqlite3_open`). Not an allocation function: not hooked unless the
    /// user asks (`rewrite --ctors`), and calls to it are never allocation sites.
    Ctor,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alloc => "alloc",
            Kind::Realloc => "realloc",
            Kind::Free => "free",
            Kind::Suballoc => "suballoc",
            Kind::Ctor => "ctor",
        }
    }

    /// An allocation function proper (has a role): everything but `Ctor`.
    pub fn is_allocation(self) -> bool {
        self != Kind::Ctor
    }
}

/// The role an argument plays. Positions are 0-based integer-argument positions
/// in the System V order (rdi, rsi, rdx, rcx, r8, r9, then stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Number of bytes (or bytes per element when a `count` is present).
    Size,
    /// Number of elements, multiplied by `size`.
    Count,
    /// Pointer to existing storage (realloc's and free's first argument).
    Ptr,
    /// Pointer to a slot that receives the new storage (`int f(void **out, size_t n)`).
    Out,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Size => "size",
            Role::Count => "count",
            Role::Ptr => "ptr",
            Role::Out => "out",
        }
    }
}

/// An address printed as `0x…` hex in JSON; accepted as hex string or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Addr(pub u64);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Addr(n)),
            Raw::Str(s) => {
                let t = s.trim();
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse::<u64>(),
                };
                parsed
                    .map(Addr)
                    .map_err(|_| serde::de::Error::custom(format!("bad address {s:?}")))
            }
        }
    }
}

/// One allocation function found in (or named for) a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocFn {
    /// Symbol name, or `sub_<hex addr>` when the binary has no name for it.
    pub name: String,
    /// Link-time virtual address of the entry (section-relative offset in a `.o`).
    pub address: Addr,
    /// Size of the function's code in bytes, when known (symbol size or FDE range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_size: Option<u64>,
    pub kind: Kind,
    /// Role → 0-based argument position.
    pub args: BTreeMap<Role, u8>,
    /// Number of integer/pointer arguments the function takes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nargs: Option<u8>,
    /// liballocs descriptor, e.g. `xcalloc(zZ)p`.
    pub descriptor: String,
    /// Human-readable chain of facts that led to the classification.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Other names for the same code: a clone's base name (`f` for `f.constprop.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// True for functions that live outside the binary (libc seeds); the rewriter
    /// hooks only functions with `external == false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl AllocFn {
    pub fn arg(&self, role: Role) -> Option<u8> {
        self.args.get(&role).copied()
    }
}

/// How a call reaches its callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallVia {
    /// `call rel32` / `jmp rel32` to a function defined in the binary.
    Direct,
    /// Through a PLT stub (`call rel32` to `.plt`/`.plt.sec`) of an imported function.
    Plt,
    /// Through a GOT slot (`call *f@GOTPCREL(%rip)`, -fno-plt) of an imported function.
    Got,
    /// Through a function pointer the analysis resolved (every candidate agrees).
    Indirect,
}

/// One call of an allocation function (DESIGN.md §1).
///
/// Listed for every call *made by* an allocation function or constructor to an
/// allocation function, and for every call of an *imported* allocation function
/// anywhere in the binary. A call is `pass_through` when it only forwards the
/// calling allocation function's own role parameter (size, count, pointer; possibly
/// scaled): such a call is never an allocation site. Every other call is classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocCall {
    /// Address of the call (or tail-call jump) instruction.
    pub at: Addr,
    /// Address after it: the allocation site (a tail call's site is its caller's).
    pub ret: Addr,
    /// Name of the function containing the call.
    pub caller: String,
    /// Name of the allocation function called; for an indirect call, every candidate
    /// separated by `|`.
    pub callee: String,
    pub via: CallVia,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tail: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pass_through: bool,
    /// Why it is (or is not) pass-through, e.g. `arg0 → malloc size`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

/// Where a classification came from (`"analysis"`, or `"link-time"` when read from an
/// embedded `.allocsite` section).
fn default_source() -> String {
    "analysis".to_string()
}

/// The whole classification of one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Classification {
    /// Path of the analysed file, as given.
    pub binary: String,
    /// `"analysis"` or `"link-time"`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Allocation functions and constructors defined in the binary, sorted by address.
    pub functions: Vec<AllocFn>,
    /// Imported allocation functions (and constructors) the binary calls: the C
    /// library's allocating functions, C++ `operator new`/`delete`, and the exported
    /// functions of dependencies whose summaries were given (`--with`). `external` is
    /// true; `address` is the PLT stub called, or 0 when only GOT calls exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<AllocFn>,
    /// The calls described at [`AllocCall`], sorted by `at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<AllocCall>,
}

impl Classification {
    /// Return addresses of the pass-through calls whose callee (or one of whose
    /// candidates) is `callee`, sorted.
    pub fn pass_through_returns(&self, callee: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .calls
            .iter()
            .filter(|c| c.pass_through && c.callee.split('|').any(|n| n == callee))
            .map(|c| c.ret.0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a classification: {e}"))
    }
}
