//! What the analysis needs to know about one function, independent of which
//! functions are classified: its call sites with the provenance of each argument,
//! the provenance of every returned value, and its stores through parameters.
//! Computed once per function; the classification fixpoint only reads these.

use super::value::Val;

/// How an object was reached from the function's parameters: `param` points
/// at it (`load: None`), or `param->[load]` does. With DWARF parameter types
/// this names the object's struct type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Via {
    pub param: u8,
    pub load: Option<i32>,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A function defined in this binary, by entry address.
    Local(u64),
    /// An imported symbol (through a PLT stub or GOT slot).
    Import(String),
    /// Through a function pointer loaded from a fixed address (a global variable).
    PtrGlobal(u64),
    /// Through a function pointer loaded from member `off` of some object,
    /// reached from a parameter when `Via` says how.
    PtrMember(i32, Option<Via>),
    /// Through a function pointer received as integer argument k.
    PtrParam(u8),
    /// Through a function pointer of unknown provenance.
    PtrUnknown,
}

#[derive(Debug, Clone)]
pub struct CallSite {
    /// Address of the call (or tail-call jump) instruction.
    pub addr: u64,
    /// Address after the instruction: the allocation site when this is a call.
    pub ret_addr: u64,
    pub target: Target,
    /// Provenance of the six integer argument registers at the call.
    pub args: [Val; 6],
    pub tail: bool,
    /// Bit p: every path from entry to a return passes this call, except paths
    /// that branch on parameter p being NULL (`if (p) free(p);`).
    pub unavoidable: u8,
    /// Some instruction reads the call's result (rax after the call, or wherever
    /// it was copied). A function whose results nobody reads returns nothing:
    /// without DWARF, that is how a `void` function tells itself apart.
    pub result_used: bool,
}

/// A store `*(base + off) = val` where base is a parameter.
#[derive(Debug, Clone)]
pub struct ParamStore {
    pub param: u8,
    /// The object stored into is `param->[via]` rather than `*param`.
    pub via: Option<i32>,
    pub off: i32,
    pub val: Val,
}

/// A function address stored somewhere or passed as an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FnRef {
    /// Stored at a fixed address.
    AtGlobal { slot: u64, func: u64 },
    /// Stored into member `off` of some object.
    AtMember { off: i32, func: u64, via: Option<Via> },
    /// Passed as integer argument `arg` of a call to `callee`.
    Passed { callee: Target, arg: u8, func: u64 },
    /// The pointer-sized value at global `from` was copied to global `to`.
    Copy { from: u64, to: u64 },
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub calls: Vec<CallSite>,
    /// Value of rax at each `ret` (tail calls add the callee's result).
    pub rets: Vec<Val>,
    pub stores: Vec<ParamStore>,
    pub fn_refs: Vec<FnRef>,
    /// A value derived from call results `.1` stored into memory reached from
    /// call results `.0` (`rows[i] = data + i * stride` in a 2-D allocator).
    pub call_stores: Vec<(u32, u32)>,
    /// Parameter k stored into member `off` of some object (`g->frealloc = f`).
    pub param_members: Vec<(u8, i32)>,
    /// Parameter k stored into a global slot.
    pub param_globals: Vec<(u8, u64)>,
    /// Globals written with a value loaded from an object no parameter reaches
    /// (`free_list = free_list->next`): a global free list being popped.
    pub global_pops: Vec<u64>,
    /// Bit k: memory at a non-zero offset from parameter k is read or written, so
    /// k points to a struct (or array), not to a single pointer: a block stored
    /// at `*k` is kept in its first member, which makes no out-parameter.
    pub struct_params: u8,
    /// Some blocks were only reachable through an indirect jump and were analyzed
    /// without knowing their entry state.
    pub imprecise: bool,
}
