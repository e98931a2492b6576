//! What a compiler-driver invocation does, read from its arguments the way gcc
//! and clang read them: compile only, or link (an executable or a shared library),
//! and where the output goes.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is linked into a program or library (`-c`, `-S`, `-E`, `-M`, `-MM`,
    /// a partial link `-r`, queries like `--version`).
    PassThrough,
    Link { output: PathBuf, shared: bool },
}

/// Options whose value is the next argument (so that value is not an input).
const WITH_VALUE: &[&str] = &[
    "-o", "-x", "-I", "-L", "-l", "-D", "-U", "-include", "-imacros", "-isystem", "-idirafter", "-iprefix", "-iquote",
    "-isysroot", "-MF", "-MT", "-MQ", "-Xlinker", "-Xassembler", "-Xpreprocessor", "-T", "-u", "-z", "-aux-info", "--param",
    "-arch", "-target", "--sysroot", "-specs",
];

pub fn mode(args: &[OsString]) -> Mode {
    let mut output: Option<PathBuf> = None;
    let mut shared = false;
    let mut inputs = 0;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "-c" | "-S" | "-E" | "-M" | "-MM" | "-r" | "-Wl,-r" | "-fsyntax-only" | "--version" | "-v" | "-###" | "--help" | "-dumpversion" | "-dumpmachine" | "-dumpspecs" => {
                // `-v` with inputs still links; alone it only prints the version.
                if a != "-v" {
                    return Mode::PassThrough;
                }
            }
            "-shared" => shared = true,
            "-o" => {
                output = args.get(i + 1).map(PathBuf::from);
                i += 1;
            }
            s if s.starts_with("-print-") => return Mode::PassThrough,
            s if s.starts_with("-o") => output = Some(PathBuf::from(&s[2..])),
            s if s.starts_with("-l") => inputs += 1,
            s if WITH_VALUE.contains(&s) => i += 1,
            s if s.starts_with('-') => {}
            _ => inputs += 1,
        }
        i += 1;
    }
    if inputs == 0 {
        return Mode::PassThrough;
    }
    Mode::Link { output: output.unwrap_or_else(|| PathBuf::from("a.out")), shared }
}

/// The user asked for a link map already: the driver would write only one.
pub fn has_map(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a.contains("-Map") || a == "-M" || a.contains("--print-map")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Mode {
        mode(&s.split_whitespace().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn modes() {
        assert_eq!(m("-O2 -c x.c -o x.o"), Mode::PassThrough);
        assert_eq!(m("-E x.c"), Mode::PassThrough);
        assert_eq!(m("--version"), Mode::PassThrough);
        assert_eq!(m("-v"), Mode::PassThrough);
        assert_eq!(m("-r a.o b.o -o ab.o"), Mode::PassThrough);
        assert_eq!(m("-MMD -MF x.d x.c -o prog"), Mode::Link { output: "prog".into(), shared: false });
        assert_eq!(m("x.o y.o -lm"), Mode::Link { output: "a.out".into(), shared: false });
        assert_eq!(m("-shared -fPIC -olibw.so w.o"), Mode::Link { output: "libw.so".into(), shared: true });
        assert_eq!(m("-o prog -L lib x.o"), Mode::Link { output: "prog".into(), shared: false });
    }
}
