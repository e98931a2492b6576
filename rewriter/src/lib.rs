//! allocsite rewriter: plan launch pads → trampolines → CFI → ELF emit.

pub mod atomic;
pub mod cli;
pub mod report;
pub mod rewrite;
pub mod stdout;
pub mod trace;
