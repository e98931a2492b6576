//! `allocsite trace -- CMD`: run CMD under ptrace, follow every process and thread it
//! creates, and learn allocation functions from the dynamic call tree (issue 13).
//!
//! - `driver`: the wait loop — fork/vfork/clone/exec events, group-stops, signals;
//! - `state`: per-task state, hot (per thread) and cold (per process);
//! - `images`, `unwind`, `statics`: what a process runs, its CFI, the static opinion;
//! - `breakpoints`, `learn`: int3s, and what the calls they catch teach;
//! - `idle`: unwatching what stopped teaching anything;
//! - `memory`, `detach`, `output`, `tree`, `signals`, `spawn`, `sys`.

mod breakpoints;
mod detach;
mod driver;
mod idle;
mod images;
mod learn;
mod memory;
pub mod output;
mod probe;
mod signals;
mod spawn;
mod state;
mod statics;
mod sys;
mod tree;
mod unwind;

pub use output::{build_id_of, for_binary, merge};

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::rc::Rc;

pub struct Options {
    pub output: Option<PathBuf>,
    pub max_mem: u64,
    pub detach_after: Option<u64>,
    pub detach_on_exit: bool,
    /// Consistent observations after which a function is no longer watched.
    pub learn_limit: u32,
    /// Allocator hits in a row that taught nothing, after which an address space's
    /// allocators are unwatched (until the loader maps new code).
    pub idle_unwatch: u64,
    /// Learn the functions of programs installed in the system's directories too.
    pub system_programs: bool,
    pub cmd: Vec<OsString>,
}

pub struct Tracer {
    opts: Options,
    root: sys::Pid,
    root_exit: Option<tree::Exit>,
    st: state::State,
    tree: tree::Tree,
    mem: memory::Mem,
    learn: learn::Learn,
    images: images::Images,
    statics: HashMap<usize, Option<Rc<allocsite_analysis::Classification>>>,
    over_noted: bool,
    detach_soon: Vec<sys::Pid>,
    stats: output::Stats,
    /// Quiet spells per program (`idle.rs`).
    quiet: HashMap<idle::QuietKey, idle::Quiet>,
}

/// Developer aid: ALLOCSITE_TRACE_DEBUG=1 prints stops and breakpoint changes.
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("ALLOCSITE_TRACE_DEBUG").is_some())
}

impl Tracer {
    pub fn watch_exec(&mut self, tid: sys::Pid) {
        self.refresh_images(tid);
        self.quiet_exec(tid);
    }
}

/// Trace CMD to the end of its whole tree, write the output, and leave with CMD's
/// status (its exit code, or death by the signal that killed it).
pub fn run(opts: Options) -> Result<(), String> {
    signals::install();
    let root = spawn::spawn(&opts.cmd, !opts.detach_on_exit)?;
    let max = opts.max_mem;
    let system_programs = opts.system_programs;
    let command = opts.cmd.first().and_then(|c| images::command_path(c));
    let mut t = Tracer {
        opts,
        root,
        root_exit: None,
        st: Default::default(),
        tree: Default::default(),
        mem: memory::Mem::new(max),
        learn: Default::default(),
        images: images::Images::new(system_programs, command),
        statics: HashMap::new(),
        over_noted: false,
        detach_soon: Vec::new(),
        stats: Default::default(),
        quiet: HashMap::new(),
    };
    t.ensure(root, None);
    let res = t.run_loop();
    t.finish_output();
    res?;
    signals::exit_like(t.root_exit.unwrap_or(tree::Exit::Code(0)))
}
