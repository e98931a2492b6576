//! The `allocsite` command line: analyze, rewrite, report.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "allocsite", version, about = "Find, hook and account allocation functions in x86-64 ELF binaries")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Liballocs,
}

#[derive(Clone, Copy, ValueEnum)]
enum SitesFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    Innermost,
    Outermost,
}

#[derive(Subcommand)]
enum Cmd {
    /// Find the allocation functions of BIN.
    Analyze {
        /// The ELF executable, shared library or object file to analyze (never modified).
        bin: PathBuf,
        /// Output format: a readable table, the JSON classification the rewriter takes
        /// (`rewrite --fns`), or liballocs' LIBALLOCS_ALLOC_FNS/LIBALLOCS_FREE_FNS syntax.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisOpts,
    },
    /// Write a copy of IN whose allocation functions are hooked.
    Rewrite {
        /// The ELF executable or shared library to rewrite (never modified).
        input: PathBuf,
        /// Where to write the rewritten file (atomically, with IN's permissions).
        #[arg(short, long)]
        output: PathBuf,
        /// Use this classification (JSON from `analyze --format json`) instead of analyzing.
        #[arg(long)]
        fns: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisOpts,
        /// Fail if any allocation function cannot be hooked.
        #[arg(long)]
        strict: bool,
        /// The runtime library to place next to OUT (default: next to this executable).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Also hook constructors: they then count for the outermost site.
        #[arg(long)]
        ctors: bool,
        /// Patch the entry of every allocation function (a launch pad) instead of instrumenting
        /// a function reached only by direct calls at its call sites (the default).
        #[arg(long)]
        entry_hooks: bool,
        /// Bake heap checks into OUT, e.g. "poison,canary,double-free,quarantine" (ALLOCSITE_CHECK overrides).
        #[arg(long, value_name = "OPTS")]
        check: Option<String>,
        /// Print a summary (counts, sizes, time) to standard error.
        #[arg(short, long)]
        verbose: bool,
        /// Also embed the site → type table (.allocsite.types): reports and allocsite_get_type() name allocated types.
        #[arg(long)]
        types: bool,
    },
    /// List BIN's classified allocation sites: place, callee, size expression, allocated type.
    Sites {
        /// The ELF program or library whose sites to list (never modified).
        bin: PathBuf,
        /// A readable table, or JSON (one object per site).
        #[arg(long, value_enum, default_value = "text")]
        format: SitesFormat,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Analyze BIN even when it carries a link-time site table (.allocsite).
        #[arg(long)]
        reanalyze: bool,
    },
    /// Compiler-driver wrapper (CC="allocsite cc"): runs $ALLOCSITE_CC (default cc) with ARGS; a link also embeds .allocsite (ALLOCSITE_INSTRUMENT=1: and rewrites the output).
    Cc {
        /// The compiler driver's arguments, passed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The same for C++: runs $ALLOCSITE_CXX (default c++).
    #[command(name = "c++")]
    Cxx {
        /// The compiler driver's arguments, passed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print a per-site table from a runtime report.
    Report {
        /// A report the runtime wrote (ALLOCSITE_REPORT=FILE).
        path: PathBuf,
        /// Show the N sites holding the most bytes.
        #[arg(long, value_name = "N", default_value_t = 20)]
        top: usize,
        /// Group chunks by their innermost classified site or by their outermost allocation call.
        #[arg(long, value_enum, default_value = "innermost")]
        by: By,
        /// Draw a flamegraph of bytes by outermost → innermost site.
        #[arg(long)]
        flamegraph: Option<PathBuf>,
        /// List only the chunks live when the report was written (leaks, at exit), per
        /// innermost site with its line.
        #[arg(long)]
        leaks: bool,
    },
    /// Run CMD under ptrace, following every process and thread, and learn its allocation functions.
    Trace {
        /// Write the trace (JSON) to FILE, atomically; without it a summary goes to standard error.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Bound on the tracer's accounted memory in bytes (suffix K, M or G); past it learning stops.
        #[arg(long, default_value = "256M", value_parser = parse_bytes)]
        max_mem: u64,
        /// Detach from a process (it runs on at full speed) once N consecutive allocator hits taught nothing.
        #[arg(long, value_name = "N")]
        detach_after: Option<u64>,
        /// On SIGINT/SIGTERM/SIGHUP leave the tracees running with every breakpoint removed, instead of killing them.
        #[arg(long)]
        detach_on_exit: bool,
        /// Stop watching a function once it showed the same classification N times in a row.
        #[arg(long, value_name = "N", default_value_t = 64)]
        learn_limit: u32,
        /// Unwatch a process's allocators after N hits in a row taught nothing (until the
        /// loader maps new code): fewer stops, but functions first called later are not learned.
        #[arg(long, value_name = "N", default_value_t = 2048)]
        idle_unwatch: u64,
        /// Learn in the programs installed under /bin, /sbin, /usr/bin, /usr/sbin and /usr/libexec
        /// too (a script's shell and utilities); by default they are treated like the system's
        /// libraries, and a process running only such code is not stopped at its allocators
        /// (the traced command itself is always learned, wherever it is installed).
        #[arg(long)]
        system_programs: bool,
        /// The command to run and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<std::ffi::OsString>,
    },
}

/// What steers the analysis, shared by `analyze` and `rewrite`.
#[derive(Args)]
struct AnalysisOpts {
    /// Extra allocators in liballocs syntax, e.g. "my_alloc(Z)p pool_get(pZ)p".
    #[arg(long)]
    alloc_fns: Option<String>,
    /// Extra free functions in liballocs syntax, e.g. "my_free(P)".
    #[arg(long)]
    free_fns: Option<String>,
    /// A dependency's summary (its `analyze --format json` output), repeatable: calls of
    /// its allocation functions become calls of imported allocation functions. Without
    /// it, libraries found through DT_RUNPATH are analyzed. Or an `allocsite trace -o`
    /// output: the binary's traced functions (by build-id, else path) join the analysis
    /// (also a `rewrite --fns` classification); contradictions are printed with both
    /// sides' evidence.
    #[arg(long = "with", value_name = "SUMMARY.json|TRACE.json")]
    with: Vec<PathBuf>,
    /// Analyze even when the binary carries a link-time classification (.allocsite).
    #[arg(long)]
    reanalyze: bool,
}

/// A byte count with an optional K/M/G suffix (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok().and_then(|n| n.checked_mul(mul)).ok_or_else(|| format!("not a byte count: {s:?}"))
}

fn main() -> ExitCode {
    // `allocsite cc ARGS…` hands ARGS to the compiler driver untouched: no parsing here.
    let mut argv = std::env::args_os().skip(1);
    match argv.next().as_ref().and_then(|a| a.to_str()) {
        Some("cc") => return allocsite_rewriter::cc::run(false, argv.collect()),
        Some("c++") => return allocsite_rewriter::cc::run(true, argv.collect()),
        _ => {}
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Analyze { bin, format, output, analysis: AnalysisOpts { alloc_fns, free_fns, with, reanalyze } } => {
            allocsite_rewriter::cli::analyze(&bin, match format {
                Format::Text => "text",
                Format::Json => "json",
                Format::Liballocs => "liballocs",
            }, output.as_deref(), alloc_fns.as_deref(), free_fns.as_deref(), &with, reanalyze)
        }
        Cmd::Rewrite {
            input,
            output,
            fns,
            analysis: AnalysisOpts { alloc_fns, free_fns, with, reanalyze },
            strict,
            runtime,
            ctors,
            entry_hooks,
            check,
            verbose,
            types,
        } => {
            allocsite_rewriter::cli::rewrite(&allocsite_rewriter::rewrite::RewriteArgs {
                input,
                output,
                fns,
                alloc_fns,
                free_fns,
                strict,
                runtime,
                verbose,
                ctors,
                check,
                caller_side: !entry_hooks,
            }, &with, reanalyze, types)
        }
        Cmd::Cc { args } => return allocsite_rewriter::cc::run(false, args),
        Cmd::Cxx { args } => return allocsite_rewriter::cc::run(true, args),
        Cmd::Sites { bin, format, output, reanalyze } => {
            allocsite_rewriter::sites::run(&bin, matches!(format, SitesFormat::Json), output.as_deref(), reanalyze)
        }
        Cmd::Report { path, top, by, flamegraph, leaks } => allocsite_rewriter::cli::report(
            &path,
            top,
            matches!(by, By::Outermost),
            flamegraph.as_deref(),
            leaks,
        ),
        Cmd::Trace { output, max_mem, detach_after, detach_on_exit, learn_limit, idle_unwatch, system_programs, cmd } => {
            allocsite_rewriter::trace::run(allocsite_rewriter::trace::Options {
                output,
                max_mem,
                detach_after,
                detach_on_exit,
                learn_limit: learn_limit.max(1),
                idle_unwatch: idle_unwatch.max(1),
                system_programs,
                cmd,
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("allocsite: {msg}");
            ExitCode::FAILURE
        }
    }
}
