//! The static analysis's opinion of an image, computed once per build-id and cached
//! under the user's cache directory ($XDG_CACHE_HOME/allocsite/trace, else
//! ~/.cache/allocsite/trace), so tracing a tree of processes analyzes each binary once.

use super::images::ImageFile;
use super::Tracer;
use allocsite_analysis::Classification;
use std::path::PathBuf;
use std::rc::Rc;

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("allocsite").join("trace"))
}

fn analyze(file: &ImageFile) -> Option<Classification> {
    let path = std::path::Path::new(&file.path);
    let cached = (!file.build_id.is_empty()).then(|| cache_dir().map(|d| d.join(format!("{}.json", file.build_id)))).flatten();
    if let Some(text) = cached.as_ref().and_then(|c| std::fs::read_to_string(c).ok()) {
        if let Ok(c) = Classification::from_json(&text) {
            return Some(c);
        }
    }
    // The analysis must not take the tracer (and so the traced tree) down with it.
    let opts = allocsite_analysis::Options::default();
    let cls = std::panic::catch_unwind(|| allocsite_analysis::analyze_path(path, &opts)).ok()?.ok()?;
    if let Some(c) = cached {
        if let Some(dir) = c.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::atomic::write_atomic(&c, cls.to_json().as_bytes(), None);
    }
    Some(cls)
}

impl Tracer {
    /// The static classification of a non-system image (None for system libraries or
    /// when the analysis fails).
    pub fn statics(&mut self, file: &ImageFile) -> Option<Rc<Classification>> {
        if file.system {
            return None;
        }
        if let Some(c) = self.statics.get(&file.id) {
            return c.clone();
        }
        let c = analyze(file).map(Rc::new);
        if let Some(c) = &c {
            self.mem.charge(c.functions.len() as u64 * 512);
        }
        self.statics.insert(file.id, c.clone());
        c
    }
}
