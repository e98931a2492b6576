//! DWARF (through gimli) as evidence: parameter names and types, and the types
//! of global variables that key function-pointer slots. Missing or malformed
//! debug information yields no facts, never an error.

mod params;
mod types;
pub(crate) mod walk;

pub use params::{FnParams, Param, Params};
pub use types::{SlotKey, Types};

use gimli::{EndianSlice, LittleEndian};
use object::{Object, ObjectSection};

pub(crate) type R<'a> = EndianSlice<'a, LittleEndian>;

/// The parsed units of one file.
pub struct Loaded<'a> {
    pub dwarf: gimli::Dwarf<R<'a>>,
    pub units: Vec<gimli::Unit<R<'a>>>,
}

impl<'a> Loaded<'a> {
    /// Units of `data`'s `.debug_info`; empty for files without (or with
    /// compressed, or unrelocated `.o`) debug information.
    pub fn load(data: &'a [u8]) -> Loaded<'a> {
        let empty = || Loaded { dwarf: gimli::Dwarf::default(), units: Vec::new() };
        let Ok(file) = object::File::parse(data) else { return empty() };
        if file.kind() == object::ObjectKind::Relocatable {
            return empty();
        }
        let load = |id: gimli::SectionId| -> Result<R<'a>, gimli::Error> {
            let d = file
                .section_by_name(id.name())
                .and_then(|s| match s.uncompressed_data().ok()? {
                    std::borrow::Cow::Borrowed(b) => Some(b),
                    std::borrow::Cow::Owned(_) => None,
                })
                .unwrap_or(&[]);
            Ok(EndianSlice::new(d, LittleEndian))
        };
        let Ok(dwarf) = gimli::Dwarf::load(load) else { return empty() };
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Ok(Some(h)) = headers.next() {
            if let Ok(u) = dwarf.unit(h) {
                units.push(u);
            }
        }
        Loaded { dwarf, units }
    }
}

pub(crate) fn attr_string(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    e: &gimli::DebuggingInformationEntry<R>,
    at: gimli::DwAt,
) -> Option<String> {
    let v = e.attr_value(at).ok()??;
    let s = dwarf.attr_string(unit, v).ok()?;
    Some(s.to_string_lossy().into_owned())
}
