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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alloc => "alloc",
            Kind::Realloc => "realloc",
            Kind::Free => "free",
            Kind::Suballoc => "suballoc",
        }
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

/// The whole classification of one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Classification {
    /// Path of the analysed file, as given.
    pub binary: String,
    /// Allocation functions defined in the binary, sorted by address.
    pub functions: Vec<AllocFn>,
}

impl Classification {
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a classification: {e}"))
    }
}
