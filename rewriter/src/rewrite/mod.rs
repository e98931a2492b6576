//! Rewriting: plan → trampolines → CFI → ELF emit. (Being written.)
use crate::cli::RewriteArgs;
use allocsite_analysis::Classification;

pub fn run(args: &RewriteArgs, _cls: &Classification) -> Result<(), String> {
    Err(format!("{}: rewriting is not implemented yet", args.input.display()))
}
