//! Every argument and option of every subcommand says what it is for: a bare `<BIN>` or
//! `--top <TOP>` in `--help` leaves a new user guessing.
use std::process::Command;

/// The subcommands whose help clap writes (`cc`/`c++` hand `--help` to the compiler).
const SUBCOMMANDS: &[&str] = &["analyze", "rewrite", "report", "sites", "trace"];

fn help(sub: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_allocsite")).args([sub, "--help"]).output().unwrap();
    assert!(o.status.success(), "allocsite {sub} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

/// The entries of the `Arguments:` and `Options:` blocks that have no text after their name.
fn bare_entries(text: &str) -> Vec<String> {
    let mut bare = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line == "Arguments:" || line == "Options:" {
            in_block = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_block = false;
            continue;
        }
        if !in_block {
            continue;
        }
        // An entry is `  NAME  help…`; the name part ends at the first run of two spaces.
        let body = line.trim_start();
        if body.starts_with('-') || body.starts_with('<') {
            // `[default: …]` and `[possible values: …]` alone are not a description.
            let described = body.split_once("  ").is_some_and(|(_, rest)| !rest.trim().is_empty() && !rest.trim().starts_with('['));
            if !described {
                bare.push(body.trim_end().to_string());
            }
        }
    }
    bare
}

#[test]
fn every_argument_and_option_has_a_help_line() {
    let mut bare = Vec::new();
    for sub in SUBCOMMANDS {
        let text = help(sub);
        assert!(text.contains("Options:"), "allocsite {sub} --help has no options block:\n{text}");
        bare.extend(bare_entries(&text).into_iter().map(|e| format!("{sub}: {e}")));
    }
    assert!(bare.is_empty(), "entries without a help line:\n{}", bare.join("\n"));
}

#[test]
fn the_check_finds_a_bare_entry() {
    // The parser above must see what it is meant to catch.
    let text = "Usage: x\n\nArguments:\n  <PATH>  \n\nOptions:\n      --top <TOP>  [default: 20]\n  -h, --help  Print help\n";
    assert_eq!(bare_entries(text), vec!["<PATH>".to_string(), "--top <TOP>  [default: 20]".to_string()]);
}

#[test]
fn the_top_level_help_lists_every_subcommand_with_a_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_allocsite")).arg("--help").output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for sub in SUBCOMMANDS.iter().chain(&["cc", "c++"]) {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{sub} "))).unwrap_or_else(|| panic!("no `{sub}` in --help:\n{text}"));
        assert!(line.trim_start()[sub.len()..].trim().len() > 10, "`{sub}` has no description: {line:?}");
    }
}
