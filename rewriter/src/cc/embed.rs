//! The `.allocsite` section: a non-allocated section holding the link-time
//! classification (`analyze --format json` content) plus the site table. Added
//! with `objcopy --add-section`, which appends the section without moving any
//! allocated byte; read back by `analyze`, `rewrite` and `sites`.

use allocsite_analysis::sites::SiteTable;
use allocsite_analysis::Classification;
use object::{Object, ObjectSection};
use std::path::Path;
use std::process::Command;

pub const SECTION: &str = ".allocsite";
/// The site → type table the runtime reads for reports and `allocsite_get_type`:
/// one line per typed site, `VADDR_HEX TYPE`, sorted by address.
pub const TYPES: &str = ".allocsite.types";

pub fn types_table(sites: &SiteTable) -> String {
    let mut rows: Vec<(u64, &str)> = sites.sites.iter().filter_map(|s| Some((s.site.0, s.ty.as_deref()?))).collect();
    rows.sort_unstable();
    rows.iter().map(|(a, t)| format!("{a:x} {t}\n")).collect()
}

/// The JSON text stored in the section.
pub fn content(cls: &Classification, sites: &SiteTable, inputs: &super::linkmap::Inputs) -> Result<String, String> {
    let mut v = serde_json::to_value(cls).map_err(|e| format!("cannot serialize the classification: {e}"))?;
    let obj = v.as_object_mut().ok_or("classification is not a JSON object")?;
    obj.insert("sites".into(), serde_json::to_value(&sites.sites).map_err(|e| e.to_string())?);
    obj.insert("inputs".into(), serde_json::to_value(inputs).map_err(|e| e.to_string())?);
    serde_json::to_string(&v).map_err(|e| e.to_string())
}

/// Adds (or replaces) the `(name, text)` sections in `path`, through a temporary
/// file beside it.
pub fn write(path: &Path, sections: &[(&str, String)]) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = |what: &str| tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: cannot create a temporary {what}: {e}", dir.display()));
    let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let present: Vec<String> = object::File::parse(&*data)
        .map(|f| f.sections().filter_map(|s| s.name().ok().map(str::to_string)).collect())
        .unwrap_or_default();
    let objcopy = std::env::var("ALLOCSITE_OBJCOPY").unwrap_or_else(|_| "objcopy".into());
    let mut cmd = Command::new(&objcopy);
    let mut payloads = Vec::new();
    for (name, text) in sections {
        let payload = tmp("file")?;
        std::fs::write(payload.path(), text).map_err(|e| format!("{}: cannot write: {e}", payload.path().display()))?;
        if present.iter().any(|p| p == name) {
            cmd.args(["--remove-section", name]);
        }
        cmd.arg("--add-section").arg(format!("{name}={}", payload.path().display()));
        cmd.args(["--set-section-flags", &format!("{name}=contents,readonly")]);
        payloads.push(payload);
    }
    let out = tmp("output")?;
    let st = cmd.arg(path).arg(out.path()).output().map_err(|e| format!("cannot run {objcopy}: {e}"))?;
    if !st.status.success() {
        let msg = String::from_utf8_lossy(&st.stderr);
        return Err(format!("{objcopy} failed on {}: {}", path.display(), msg.lines().next().unwrap_or("")));
    }
    let perms = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions();
    std::fs::set_permissions(out.path(), perms).map_err(|e| format!("{}: {e}", out.path().display()))?;
    out.persist(path).map_err(|e| format!("{}: cannot replace: {e}", path.display()))?;
    Ok(())
}

fn read_raw(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let s = file.section_by_name(SECTION)?;
    let bytes = s.data().ok()?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// The classification embedded in an ELF image, if any (`source` = "link-time").
pub fn read(data: &[u8]) -> Option<Result<Classification, String>> {
    let text = read_raw(data)?;
    Some(Classification::from_json(&text).map(|mut c| {
        c.source = "link-time".into();
        c
    }))
}

/// The site table embedded in an ELF image, if any.
pub fn read_sites(data: &[u8]) -> Option<SiteTable> {
    let text = read_raw(data)?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let sites = serde_json::from_value(v.get("sites")?.clone()).ok()?;
    Some(SiteTable { binary: String::new(), sites })
}
