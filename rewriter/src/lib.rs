//! allocsite rewriter: plan launch pads → trampolines → CFI → ELF emit.

pub mod atomic;
pub mod cc;
pub mod cli;
pub mod report;
pub mod rewrite;
pub mod sites;
pub mod stdout;
pub mod trace;
