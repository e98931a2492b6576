//! `allocsite cc ARGS…` / `allocsite c++ ARGS…`: a compiler-driver wrapper in the
//! style of ccache. The real driver (`$ALLOCSITE_CC` / `$ALLOCSITE_CXX`, default
//! `cc` / `c++`) runs with ARGS unchanged. When it links, the wrapper reads the
//! link inputs from a link map, classifies the output with the summaries of the
//! shared libraries it uses, and embeds the result as `.allocsite`
//! (`ALLOCSITE_INSTRUMENT=1`: also rewrites the output in place). Its own failures
//! never fail the build; the driver's are passed through.

pub mod args;
pub mod deps;
pub mod embed;
pub mod linkmap;

use allocsite_analysis as analysis;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Runs the wrapper; `cxx` selects the C++ driver.
pub fn run(cxx: bool, args: Vec<OsString>) -> ExitCode {
    let (var, default) = if cxx { ("ALLOCSITE_CXX", "c++") } else { ("ALLOCSITE_CC", "cc") };
    let driver = std::env::var(var).ok().filter(|d| !d.trim().is_empty()).unwrap_or_else(|| default.to_string());
    let mut words = driver.split_whitespace();
    let program = words.next().unwrap_or(default).to_string();
    let mut cmd = Command::new(&program);
    cmd.args(words).args(&args);
    let link = args::mode(&args);
    let args::Mode::Link { output, shared } = link else {
        return status(cmd.status(), &program);
    };
    // The link map names the inputs the linker really used; it changes no output byte.
    let map = if args::has_map(&args) { None } else { tempfile::Builder::new().prefix("allocsite-map").tempfile().ok() };
    if let Some(m) = &map {
        cmd.arg(format!("-Wl,-Map,{}", m.path().display()));
    }
    let st = status(cmd.status(), &program);
    if st != ExitCode::SUCCESS {
        return st;
    }
    let map_text = map.as_ref().and_then(|m| std::fs::read_to_string(m.path()).ok()).unwrap_or_default();
    let result = std::panic::catch_unwind(|| after_link(&output, shared, &map_text));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => eprintln!("allocsite: warning: {msg}; {} left as linked", output.display()),
        Err(_) => eprintln!("allocsite: warning: internal error; {} left as linked", output.display()),
    }
    ExitCode::SUCCESS
}

fn status(st: std::io::Result<std::process::ExitStatus>, program: &str) -> ExitCode {
    match st {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let code = s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
            ExitCode::from(code.clamp(1, 255) as u8)
        }
        Err(e) => {
            eprintln!("allocsite: cannot run {program}: {e}");
            ExitCode::from(127)
        }
    }
}

/// Classify the linked output, embed the result, and (on request) instrument it.
fn after_link(output: &Path, _shared: bool, map: &str) -> Result<(), String> {
    let inputs = linkmap::parse(map);
    let data = std::fs::read(output).map_err(|e| format!("{}: cannot read: {e}", output.display()))?;
    let mut deps = Vec::new();
    for lib in &inputs.shared {
        if let Some(c) = deps::summary(lib)? {
            deps.push((lib.clone(), c));
        }
    }
    // The libraries' summaries turn calls of their exported allocation functions
    // into calls of imported allocation functions (and classify wrappers of them).
    let with = deps.into_iter().map(|(p, cls)| analysis::deps::Summary { origin: p.display().to_string(), cls }).collect();
    let opts = analysis::Options { with, path: Some(output.to_path_buf()), no_deps: true, ..Default::default() };
    let mut cls = analysis::analyze_bytes(&data, &opts).map_err(|e| format!("{}: {e}", output.display()))?;
    cls.binary = output.display().to_string();
    cls.source = "link-time".into();
    let sites = analysis::sites::table(&data, &cls).map_err(|e| format!("{}: {e}", output.display()))?;
    let text = embed::content(&cls, &sites, &inputs)?;
    embed::write(output, &[(embed::SECTION, text), (embed::TYPES, embed::types_table(&sites))])?;
    if std::env::var("ALLOCSITE_INSTRUMENT").is_ok_and(|v| v == "1") {
        instrument(output, &cls)?;
    }
    Ok(())
}

/// Rewrite the output in place (through a temporary file), the runtime beside it.
fn instrument(output: &Path, cls: &analysis::Classification) -> Result<(), String> {
    let data = std::fs::read(output).map_err(|e| format!("{}: cannot read: {e}", output.display()))?;
    let runtime = crate::rewrite::runtime_lib::locate(None)?;
    let out = crate::rewrite::rewrite_bytes(&data, cls, false).map_err(|e| format!("{}: {e}", output.display()))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(output).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755)
    };
    crate::atomic::write_atomic(output, &out.bytes, Some(mode)).map_err(|e| format!("{}: cannot write: {e}", output.display()))?;
    crate::rewrite::runtime_lib::install_next_to(&runtime, output)
}

/// The classification embedded in the file at `path`, if it has a `.allocsite` section.
pub fn embedded_of(path: &Path) -> Result<Option<analysis::Classification>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    match embed::read(&data) {
        None => Ok(None),
        Some(Ok(mut c)) => {
            c.binary = path.display().to_string();
            Ok(Some(c))
        }
        Some(Err(e)) => Err(format!("{}: .allocsite: {e}", path.display())),
    }
}
