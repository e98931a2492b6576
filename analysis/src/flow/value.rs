//! The abstract value of a register or stack slot: the set of sources it may
//! derive from. Sizeofness is "derives from parameter i", possibly through
//! arithmetic; freshness is "derives from the result of call c".
//!
//! Values form a finite join-semilattice (bit unions; differing payloads widen to
//! `TOP`), so the per-function fixpoint terminates.

/// Kind bits.
pub const CONST: u16 = 1 << 0; // may be the constant `num`
pub const STACK: u16 = 1 << 1; // address entry_rsp + `num`
pub const GLOBAL: u16 = 1 << 2; // address `num` (a lea of data or code)
pub const GLOAD: u16 = 1 << 3; // loaded from address `num`
pub const LOAD: u16 = 1 << 4; // loaded from member `load_off` of the object `load_base` points to
pub const ARITH: u16 = 1 << 5; // transformed by arithmetic
pub const MUL: u16 = 1 << 6; // product of two non-constant values
pub const TOP: u16 = 1 << 7; // may hold anything else
pub const SCALED: u16 = 1 << 8; // multiplied, divided or shifted: no longer an address
pub const ORNULL: u16 = 1 << 9; // GLOAD, or NULL on another path (`p = NULL; if (list) p = list;`)
pub const SUBTRACTED: u16 = 1 << 10; // a parameter was subtracted from (or negated into) a value no parameter gave: more of it is less of this

/// `load_base` when the loaded-from object is not a parameter.
pub const OTHER_BASE: u8 = 0xff;

/// Laid out with no gap before the trailing padding (`repr(C)`, widest fields
/// first), so that equality, which the fixpoint's joins run millions of times,
/// compares the 29 bytes of fields at once instead of nine fields one by one
/// (see `PartialEq` below). `Debug` keeps the fields' historical order.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct Val {
    /// Payload of CONST (the constant), STACK (offset from entry rsp),
    /// GLOBAL (the address) and GLOAD (the address loaded from); one at a time.
    /// Without those kinds, the constant last added by `arith` (`used + 16`):
    /// the suballocator rule reads it as the step of a bump.
    pub num: i64,
    /// Bit c: derives from the return value of call site c (c ≥ 31 folds into bit 31).
    pub calls: u32,
    /// Bit c: read back from a stack slot whose address was passed to call c.
    pub outcalls: u32,
    pub load_off: i32,
    /// Hashed set of the (parameter, member offset) fields this value was
    /// loaded from; see `field_bit`.
    pub lfields: u32,
    pub kinds: u16,
    /// Bit i: derives from incoming integer argument i (6 and 7: first stack arguments).
    pub params: u8,
    /// Bit i: derives from memory reached through incoming argument i (`p->field`).
    pub lparams: u8,
    pub load_base: u8,
}

/// Bytes of `Val` that are fields: everything before the trailing padding.
const FIELD_BYTES: usize = std::mem::offset_of!(Val, load_base) + 1;
const _: () = assert!(FIELD_BYTES == 29 && std::mem::size_of::<Val>() == 32);

impl PartialEq for Val {
    #[inline]
    fn eq(&self, o: &Val) -> bool {
        // SAFETY: `repr(C)` puts the fields at bytes 0..29 with no padding between
        // them (asserted above), so these bytes are all initialized field bytes.
        let bytes = |v: &Val| unsafe { &*(v as *const Val as *const [u8; FIELD_BYTES]) };
        bytes(self) == bytes(o)
    }
}

impl Eq for Val {}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Val")
            .field("calls", &self.calls)
            .field("outcalls", &self.outcalls)
            .field("num", &self.num)
            .field("load_off", &self.load_off)
            .field("kinds", &self.kinds)
            .field("params", &self.params)
            .field("lparams", &self.lparams)
            .field("load_base", &self.load_base)
            .field("lfields", &self.lfields)
            .finish()
    }
}

/// The bit of `Val::lfields` for member `off` of the object parameter `param`
/// points to, or (`via = Some(l)`) of the object `param->[l]` points to.
pub fn field_bit(param: u8, via: Option<i32>, off: i32) -> u32 {
    let l = via.map(|l| (l as u32 >> 3).wrapping_mul(11).wrapping_add(5)).unwrap_or(0);
    1 << ((param as u32).wrapping_mul(7).wrapping_add((off as u32) >> 3).wrapping_add(l) % 32)
}

/// `load_base` flag: loaded from member `load_off` of the object that
/// `param->[num]` points to (param = load_base & 0x7f).
pub const LOAD2: u8 = 0x80;

/// Kinds whose payload lives in `num`.
const PAYLOAD: u16 = CONST | STACK | GLOBAL | GLOAD;

impl Val {
    pub const TOP: Val = Val { calls: 0, outcalls: 0, num: 0, load_off: 0, kinds: TOP, params: 0, lparams: 0, load_base: 0, lfields: 0 };

    pub fn param(i: u8) -> Val {
        Val { params: 1 << i, ..Val::default() }
    }
    pub fn konst(k: i64) -> Val {
        Val { kinds: CONST, num: k, ..Val::default() }
    }
    pub fn stack(off: i64) -> Val {
        Val { kinds: STACK, num: off, ..Val::default() }
    }
    pub fn global(addr: u64) -> Val {
        Val { kinds: GLOBAL, num: addr as i64, ..Val::default() }
    }
    pub fn gload(addr: u64) -> Val {
        Val { kinds: GLOAD, num: addr as i64, ..Val::default() }
    }
    pub fn load(base: u8, off: i32) -> Val {
        let (lparams, lfields) = if base < 8 { (1 << base, field_bit(base, None, off)) } else { (0, 0) };
        Val { kinds: LOAD, load_base: base, load_off: off, lparams, lfields, ..Val::default() }
    }
    pub fn call(c: usize) -> Val {
        Val { calls: 1u32 << c.min(31), ..Val::default() }
    }
    pub fn outcall(c: usize) -> Val {
        Val { outcalls: 1u32 << c.min(31), ..Val::default() }
    }

    pub fn has(&self, k: u16) -> bool {
        self.kinds & k != 0
    }

    /// Exactly one source, no arithmetic: a plain copy of something.
    fn is_only(&self, k: u16) -> bool {
        self.kinds == k && self.params == 0 && self.calls == 0 && self.outcalls == 0
    }

    pub fn as_const(&self) -> Option<i64> {
        self.is_only(CONST).then_some(self.num)
    }
    /// The constant this value may be (alongside other sources), if any.
    pub fn maybe_const(&self) -> Option<i64> {
        self.has(CONST).then_some(self.num)
    }
    pub fn as_stack(&self) -> Option<i64> {
        self.is_only(STACK).then_some(self.num)
    }
    pub fn as_global(&self) -> Option<u64> {
        self.is_only(GLOBAL).then_some(self.num as u64)
    }
    pub fn as_gload(&self) -> Option<u64> {
        self.is_only(GLOAD).then_some(self.num as u64)
    }
    pub fn as_load(&self) -> Option<(u8, i32)> {
        self.is_only(LOAD).then_some((self.load_base, self.load_off))
    }
    /// A parameter passed through unchanged (a pointer argument, not arithmetic on it).
    pub fn as_param(&self) -> Option<u8> {
        (self.kinds == 0 && self.calls == 0 && self.outcalls == 0 && self.params.count_ones() == 1)
            .then(|| self.params.trailing_zeros() as u8)
    }
    /// A parameter, possibly offset by a constant (`p - 8`, `n << 4`, `n * 24 + 16`).
    pub fn as_param_arith(&self) -> Option<u8> {
        (self.kinds & !(ARITH | CONST) == 0 && self.calls == 0 && self.outcalls == 0 && self.params.count_ones() == 1)
            .then(|| self.params.trailing_zeros() as u8)
    }

    /// Least upper bound: the value may come from either side.
    pub fn join(&self, o: &Val) -> Val {
        if self == o {
            return *self;
        }
        let mut v = Val {
            params: self.params | o.params,
            lparams: self.lparams | o.lparams,
            lfields: self.lfields | o.lfields,
            calls: self.calls | o.calls,
            outcalls: self.outcalls | o.outcalls,
            kinds: self.kinds | o.kinds,
            ..*self
        };
        let (a, b) = (self.kinds & PAYLOAD, o.kinds & PAYLOAD);
        let null = |k: u16, x: &Val| k == CONST && x.num == 0;
        if a == 0 {
            v.num = o.num;
        } else if (a == GLOAD && null(b, o)) || (b == GLOAD && null(a, self)) {
            // A global read or NULL (a free-list head popped or not): keep the
            // global, not an unknown value.
            v.kinds = (v.kinds & !CONST) | ORNULL;
            v.num = if a == GLOAD { self.num } else { o.num };
        } else if b != 0 && (a != b || self.num != o.num) {
            v.kinds = (v.kinds & !PAYLOAD) | TOP;
        }
        if !self.has(LOAD) {
            v.load_base = o.load_base;
            v.load_off = o.load_off;
            if o.load_base & LOAD2 != 0 && a == 0 {
                v.num = o.num;
            }
        } else if o.has(LOAD) && (self.load_base, self.load_off) != (o.load_base, o.load_off) {
            // Two different fields: the exact field is lost, but when both were
            // reached through parameters (`lparams`), that much is still known.
            v.kinds &= !LOAD;
            if self.lparams == 0 || o.lparams == 0 {
                v.kinds |= TOP;
            }
        }
        // A two-level load keeps its first offset in `num`: it cannot share it.
        if v.has(LOAD) && v.load_base & LOAD2 != 0 && (v.kinds & PAYLOAD != 0 || (self.has(LOAD) && o.has(LOAD) && self.num != o.num)) {
            v.kinds = (v.kinds & !LOAD) | TOP;
        }
        v
    }

    /// Arithmetic combination of two operands (`add`, `lea`, `or`, …).
    pub fn arith(&self, o: &Val) -> Val {
        // Address arithmetic keeps exact addresses: stack/global + constant.
        if let Some(k) = o.as_const() {
            if let Some(c) = self.as_const() {
                return Val::konst(c.wrapping_add(k));
            }
            if let Some(s) = self.as_stack() {
                return Val::stack(s.wrapping_add(k));
            }
            if let Some(g) = self.as_global() {
                return Val::global(g.wrapping_add(k as u64));
            }
        }
        if self.as_const().is_some() && o.as_const().is_none() {
            return o.arith(self);
        }
        let mut v = self.join(o);
        v.kinds = (v.kinds | ARITH) & !CONST;
        v
    }

    /// Bitwise combination (`and`, `or`, `xor`): keeps sizeofness (`(n + 15) & ~15`)
    /// but a pointer masked or or-ed is no longer the pointer a call returned.
    pub fn bitwise(&self, o: &Val) -> Val {
        if let (Some(a), Some(b)) = (self.as_const(), o.as_const()) {
            return Val::konst(a ^ b);
        }
        let mut v = self.join(o);
        v.kinds = (v.kinds | ARITH) & !(CONST | STACK | GLOBAL | GLOAD | LOAD);
        if v.calls != 0 || v.outcalls != 0 || self.has(STACK | GLOBAL | GLOAD | LOAD) || o.has(STACK | GLOBAL | GLOAD | LOAD) {
            v.calls = 0;
            v.outcalls = 0;
            v.kinds |= TOP;
        }
        v
    }

    /// Arithmetic with a constant that changes the value's meaning but keeps its sources.
    pub fn transformed(&self) -> Val {
        if let Some(c) = self.as_const() {
            return Val::konst(c);
        }
        let mut v = *self;
        v.kinds = (v.kinds | ARITH | SCALED) & !(CONST | STACK | GLOBAL);
        if self.has(STACK) || self.has(GLOBAL) {
            v.kinds |= TOP;
        }
        v
    }

    /// Product of two values.
    pub fn mul(&self, o: &Val) -> Val {
        if let (Some(a), Some(b)) = (self.as_const(), o.as_const()) {
            return Val::konst(a.wrapping_mul(b));
        }
        if o.as_const().is_some() {
            return self.transformed();
        }
        if self.as_const().is_some() {
            return o.transformed();
        }
        let mut v = self.join(o).transformed();
        v.kinds |= MUL | SCALED;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_sources_and_widens_payloads() {
        let a = Val::call(2).join(&Val::konst(0));
        assert_eq!(a.calls, 1 << 2);
        assert_eq!(a.as_const(), None);
        assert!(a.has(CONST) && a.num == 0);
        let b = Val::konst(1).join(&Val::konst(2));
        assert!(b.has(TOP) && !b.has(CONST));
    }

    #[test]
    fn arithmetic_tracks_parameters() {
        let n = Val::param(0);
        let size = n.mul(&Val::konst(24)).arith(&Val::konst(16));
        assert_eq!(size.params, 1);
        assert!(size.has(SCALED) && size.calls == 0);
        assert_eq!(Val::param(0).arith(&Val::konst(-8)).as_param_arith(), Some(0));
        let prod = Val::param(0).mul(&Val::param(1));
        assert!(prod.has(MUL));
        assert_eq!(prod.params, 0b11);
        assert_eq!(Val::stack(-8).arith(&Val::konst(-16)).as_stack(), Some(-24));
    }
}
