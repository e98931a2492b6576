//! The unit that covers the trampolines gdb steps through (`.plt.allocsite`).
//!
//! `step` into a call of a function instrumented at its call sites enters the
//! function's trampoline; gdb finds the function through the trampoline's PLT-stub
//! symbol (`dynamic::Stepper`) and plants its step-resume breakpoint there. Where it
//! plants it depends on the code it stopped in (infrun.c, `handle_step_into_function`):
//! only when that pc belongs to a non-assembler compilation unit does gdb skip the
//! callee's prologue, as it does for an ordinary call; outside any unit it stops at the
//! callee's first instruction (the `{` line, arguments not yet stored). So the
//! trampolines get a unit of their own: DWARF 4, language C, one artificial subprogram
//! `f.allocsite_entry` per trampoline and no line rows (gdb still knows no line there
//! and steps over the trampoline's own code). C, whatever the program's language: a
//! C++ unit would make gdb read `_Z…allocsite_entry` as a C++ function and print it
//! `_Z….allocsite_entry(void)`; the names stay what the symbol table says.

use gimli::constants as dw;
use gimli::write::{self, Address};

/// One trampoline: its name and code range `[lo, hi)`.
#[derive(Clone, Debug)]
pub struct Stepper {
    pub name: String,
    pub lo: u64,
    pub hi: u64,
}

/// The unit, or None without trampolines.
pub(super) fn unit(steppers: &[Stepper]) -> Option<write::DwarfUnit> {
    let lo = steppers.iter().map(|s| s.lo).min()?;
    let hi = steppers.iter().map(|s| s.hi).max()?;
    let mut du = write::DwarfUnit::new(gimli::Encoding { format: gimli::Format::Dwarf32, version: 4, address_size: 8 });
    let root = du.unit.root();
    let r = du.unit.get_mut(root);
    r.set(dw::DW_AT_name, write::AttributeValue::String(b"<allocsite trampolines>".to_vec()));
    r.set(dw::DW_AT_producer, write::AttributeValue::String(b"allocsite".to_vec()));
    // Not assembler: that is what gdb tests before skipping the callee's prologue.
    r.set(dw::DW_AT_language, write::AttributeValue::Language(dw::DW_LANG_C99));
    r.set(dw::DW_AT_low_pc, write::AttributeValue::Address(Address::Constant(lo)));
    r.set(dw::DW_AT_high_pc, write::AttributeValue::Udata(hi - lo));
    for s in steppers.iter().filter(|s| s.hi > s.lo) {
        let id = du.unit.add(root, dw::DW_TAG_subprogram);
        let e = du.unit.get_mut(id);
        e.set(dw::DW_AT_name, write::AttributeValue::String(s.name.as_bytes().to_vec()));
        e.set(dw::DW_AT_artificial, write::AttributeValue::Flag(true));
        e.set(dw::DW_AT_low_pc, write::AttributeValue::Address(Address::Constant(s.lo)));
        e.set(dw::DW_AT_high_pc, write::AttributeValue::Udata(s.hi - s.lo));
    }
    Some(du)
}
