//! `allocsite report`: tables and flamegraphs from runtime reports. (Being written.)
use std::path::Path;

pub fn run(path: &Path, _top: usize, _by_outermost: bool, _flamegraph: Option<&Path>) -> Result<(), String> {
    Err(format!("{}: report reading is not implemented yet", path.display()))
}
