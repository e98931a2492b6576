//! Subcommand bodies for the `allocsite` binary. Errors are one line, naming the file.

use crate::atomic::write_atomic;
use allocsite_analysis as analysis;
use std::path::{Path, PathBuf};

/// The analysis options: user-named functions and dependency summaries (`--with`).
fn user_fns(alloc_fns: Option<&str>, free_fns: Option<&str>, with: &[PathBuf]) -> Result<analysis::Options, String> {
    analysis::Options::from_descriptors(alloc_fns.unwrap_or(""), free_fns.unwrap_or(""))?.with_summaries(with)
}

/// The `--with` files split into dependency summaries and traces (`allocsite trace`
/// output: it has `binaries`); of the traces, the functions traced in the binary
/// `data` (by build-id, else by path), with the trace files they came from.
struct With {
    summaries: Vec<PathBuf>,
    traced: Vec<(PathBuf, analysis::Classification)>,
}

fn split_with(with: &[PathBuf], bin: &Path, data: &[u8]) -> Result<With, String> {
    let mut out = With { summaries: Vec::new(), traced: Vec::new() };
    let build_id = crate::trace::build_id_of(data);
    let path = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
    for p in with {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
        let is_trace = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("binaries").is_some_and(|b| b.is_array()));
        if !is_trace {
            out.summaries.push(p.clone());
            continue;
        }
        let t = crate::trace::for_binary(&text, &path.to_string_lossy(), &build_id).map_err(|e| format!("{}: {e}", p.display()))?;
        if let Some(t) = t {
            out.traced.push((p.clone(), t));
        }
    }
    Ok(out)
}

impl With {
    /// Every traced function, as seeds for the analysis.
    fn seeds(&self) -> Vec<analysis::AllocFn> {
        self.traced.iter().flat_map(|(_, t)| t.functions.iter().cloned()).collect()
    }

    /// The contradictions between the traces and `cls`, one line each naming the
    /// trace file. `add`: fold the traced functions `cls` lacks into it (a given or
    /// embedded classification); an analysis run here had them as seeds already and
    /// left out on purpose those its own checks refuse.
    fn merge(&self, cls: &mut analysis::Classification, add: bool) -> Vec<String> {
        let mut notes = Vec::new();
        for (p, t) in &self.traced {
            let found = if add { crate::trace::merge(cls, t) } else { crate::trace::merge(&mut cls.clone(), t) };
            notes.extend(found.into_iter().map(|n| format!("{}: contradiction: {n}", p.display())));
        }
        notes
    }
}

pub fn analyze(
    bin: &Path,
    format: &str,
    output: Option<&Path>,
    alloc_fns: Option<&str>,
    free_fns: Option<&str>,
    with: &[PathBuf],
    reanalyze: bool,
) -> Result<(), String> {
    let data = std::fs::read(bin).map_err(|e| format!("{}: cannot read: {e}", bin.display()))?;
    let w = split_with(with, bin, &data)?;
    let mut opts = user_fns(alloc_fns, free_fns, &w.summaries)?;
    opts.traced = w.seeds();
    let embedded = if reanalyze { None } else { crate::cc::embedded_of(bin)? };
    let mut cls = match embedded {
        Some(c) => c,
        None => analysis::analyze_path(bin, &opts).map_err(|e| e.to_string())?,
    };
    let analyzed = cls.source == "analysis";
    let notes = w.merge(&mut cls, !analyzed);
    let mut text = match format {
        "json" => cls.to_json() + "\n",
        "liballocs" => analysis::output::liballocs(&cls),
        _ if cls.source == "link-time" => {
            format!("{}(classified at link time: read from the .allocsite section; --reanalyze to analyze the binary)\n", analysis::output::text(&cls))
        }
        _ => analysis::output::text(&cls),
    };
    // Contradictions go with the text; the machine formats keep their syntax.
    if format == "text" {
        for n in &notes {
            text.push_str(&format!("trace {n}\n"));
        }
    } else {
        for n in &notes {
            eprintln!("allocsite: {n}");
        }
    }
    match output {
        Some(path) => write_atomic(path, text.as_bytes(), None)
            .map_err(|e| format!("{}: cannot write: {e}", path.display())),
        None => crate::stdout::write(&text),
    }
}

pub use crate::rewrite::RewriteArgs;

/// `with`: dependency summaries for the analysis (`--with`; unused with `--fns`);
/// `reanalyze`: ignore an embedded `.allocsite` classification; `types`: embed the
/// site → type table in OUT.
pub fn rewrite(args: &RewriteArgs, with: &[PathBuf], reanalyze: bool, types: bool) -> Result<(), String> {
    let input = args.input.display();
    // Read once: the analysis (when no classification is given) and the rewrite
    // work on the same bytes. Mapped, not read: a 7 MB input is not copied (issue
    // 14: sqlite3's rewrite within 0.5 s); the output is a new file renamed into
    // place, so even an in-place rewrite leaves the mapped file as it was.
    let file = std::fs::File::open(&args.input).map_err(|e| format!("{input}: cannot read: {e}"))?;
    let map;
    let read;
    let data: &[u8] = match file.metadata() {
        Ok(m) if m.is_file() && m.len() > 0 => {
            // SAFETY: a private read-only map; a concurrent truncation of the input
            // could fault, the risk every mmap-based reader (the analysis, gdb) takes.
            map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{input}: cannot read: {e}"))?;
            &map
        }
        // Not a regular file (or empty): read it as before, for the same errors.
        _ => {
            read = std::fs::read(&args.input).map_err(|e| format!("{input}: cannot read: {e}"))?;
            &read
        }
    };
    let w = split_with(with, &args.input, &data)?;
    let mut cls = match &args.fns {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            analysis::Classification::from_json(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None if !reanalyze && crate::cc::embed::read(&data).is_some() => {
            let mut cls = crate::cc::embed::read(&data)
                .into_iter()
                .flatten()
                .next()
                .ok_or_else(|| format!("{input}: unreadable .allocsite section"))?;
            cls.binary = input.to_string();
            cls
        }
        None => {
            let mut opts = user_fns(args.alloc_fns.as_deref(), args.free_fns.as_deref(), &w.summaries)?;
            opts.traced = w.seeds();
            // `$ORIGIN` of the input's library search path.
            opts.path = Some(args.input.clone());
            let mut cls = analysis::analyze_bytes(&data, &opts).map_err(|e| format!("{input}: {e}"))?;
            cls.binary = input.to_string();
            cls
        }
    };
    let analyzed = args.fns.is_none() && cls.source == "analysis";
    for n in w.merge(&mut cls, !analyzed) {
        eprintln!("allocsite: {n}");
    }
    crate::rewrite::run(args, &cls, &data)?;
    if types {
        let table = analysis::sites::table(&data, &cls).map_err(|e| format!("{input}: {e}"))?;
        crate::cc::embed::write(&args.output, &[(crate::cc::embed::TYPES, crate::cc::embed::types_table(&table))])?;
    }
    Ok(())
}

pub fn report(path: &Path, top: usize, by_outermost: bool, flamegraph: Option<&Path>, leaks: bool) -> Result<(), String> {
    crate::report::run(path, top, by_outermost, flamegraph, leaks)
}
