//! The `allocsite` command line: analyze, rewrite, report.

use clap::{Parser, Subcommand, ValueEnum};
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
enum By {
    Innermost,
    Outermost,
}

#[derive(Subcommand)]
enum Cmd {
    /// Find the allocation functions of BIN.
    Analyze {
        bin: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Extra allocators in liballocs syntax, e.g. "my_alloc(Z)p pool_get(pZ)p".
        #[arg(long)]
        alloc_fns: Option<String>,
        /// Extra free functions in liballocs syntax, e.g. "my_free(P)".
        #[arg(long)]
        free_fns: Option<String>,
        /// A dependency's summary (its `analyze --format json` output), repeatable:
        /// calls of its allocation functions become calls of imported allocation
        /// functions. Without it, libraries found through DT_RUNPATH are analyzed.
        #[arg(long = "with", value_name = "SUMMARY.json")]
        with: Vec<PathBuf>,
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
        /// Extra allocators for the analysis, liballocs syntax, e.g. "my_alloc(Z)p".
        #[arg(long)]
        alloc_fns: Option<String>,
        /// Extra free functions for the analysis, liballocs syntax, e.g. "my_free(P)".
        #[arg(long)]
        free_fns: Option<String>,
        /// A dependency's summary for the analysis (as for `analyze --with`), repeatable; unused with --fns.
        #[arg(long = "with", value_name = "SUMMARY.json")]
        with: Vec<PathBuf>,
        /// Fail if any allocation function cannot be hooked.
        #[arg(long)]
        strict: bool,
        /// The runtime library to place next to OUT (default: next to this executable).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Also hook constructors: they then count for the outermost site.
        #[arg(long)]
        ctors: bool,
        /// Bake heap checks into OUT, e.g. "poison,canary,double-free,quarantine" (ALLOCSITE_CHECK overrides).
        #[arg(long, value_name = "OPTS")]
        check: Option<String>,
        /// Print a summary (counts, sizes, time) to standard error.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print a per-site table from a runtime report.
    Report {
        path: PathBuf,
        #[arg(long, default_value_t = 20)]
        top: usize,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Analyze { bin, format, output, alloc_fns, free_fns, with } => {
            allocsite_rewriter::cli::analyze(&bin, match format {
                Format::Text => "text",
                Format::Json => "json",
                Format::Liballocs => "liballocs",
            }, output.as_deref(), alloc_fns.as_deref(), free_fns.as_deref(), &with)
        }
        Cmd::Rewrite { input, output, fns, alloc_fns, free_fns, with, strict, runtime, ctors, check, verbose } => {
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
            }, &with)
        }
        Cmd::Report { path, top, by, flamegraph, leaks } => allocsite_rewriter::cli::report(
            &path,
            top,
            matches!(by, By::Outermost),
            flamegraph.as_deref(),
            leaks,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("allocsite: {msg}");
            ExitCode::FAILURE
        }
    }
}
