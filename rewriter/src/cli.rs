//! Subcommand bodies for the `allocsite` binary. Errors are one line, naming the file.

use crate::atomic::write_atomic;
use allocsite_analysis as analysis;
use std::path::{Path, PathBuf};

/// The analysis options: user-named functions and dependency summaries (`--with`).
fn user_fns(alloc_fns: Option<&str>, free_fns: Option<&str>, with: &[PathBuf]) -> Result<analysis::Options, String> {
    analysis::Options::from_descriptors(alloc_fns.unwrap_or(""), free_fns.unwrap_or(""))?.with_summaries(with)
}

pub fn analyze(
    bin: &Path,
    format: &str,
    output: Option<&Path>,
    alloc_fns: Option<&str>,
    free_fns: Option<&str>,
    with: &[PathBuf],
) -> Result<(), String> {
    let opts = user_fns(alloc_fns, free_fns, with)?;
    let cls = analysis::analyze_path(bin, &opts).map_err(|e| e.to_string())?;
    let text = match format {
        "json" => cls.to_json() + "\n",
        "liballocs" => analysis::output::liballocs(&cls),
        _ => analysis::output::text(&cls),
    };
    match output {
        Some(path) => write_atomic(path, text.as_bytes(), None)
            .map_err(|e| format!("{}: cannot write: {e}", path.display())),
        None => crate::stdout::write(&text),
    }
}

pub use crate::rewrite::RewriteArgs;

/// `with`: dependency summaries for the analysis (`--with`; unused with `--fns`).
pub fn rewrite(args: &RewriteArgs, with: &[PathBuf]) -> Result<(), String> {
    let input = args.input.display();
    // Read once: the analysis (when no classification is given) and the rewrite
    // work on the same bytes.
    let data = std::fs::read(&args.input).map_err(|e| format!("{input}: cannot read: {e}"))?;
    let cls = match &args.fns {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            analysis::Classification::from_json(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let mut opts = user_fns(args.alloc_fns.as_deref(), args.free_fns.as_deref(), with)?;
            // `$ORIGIN` of the input's library search path.
            opts.path = Some(args.input.clone());
            let mut cls = analysis::analyze_bytes(&data, &opts).map_err(|e| format!("{input}: {e}"))?;
            cls.binary = input.to_string();
            cls
        }
    };
    crate::rewrite::run(args, &cls, &data)
}

pub fn report(path: &Path, top: usize, by_outermost: bool, flamegraph: Option<&Path>, leaks: bool) -> Result<(), String> {
    crate::report::run(path, top, by_outermost, flamegraph, leaks)
}
