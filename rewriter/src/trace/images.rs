//! The ELF images a process runs: read from /proc/PID/maps after each exec and each
//! loader notification (`_dl_debug_state`, r_debug's breakpoint), parsed once per file
//! and shared by every process that maps it.

use super::sys::Pid;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::rc::Rc;

/// Where the system installs its libraries.
const SYSTEM_LIBS: &[&str] = &["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"];
/// Where it installs its programs. A script's shell and utilities (bash, env, mktemp,
/// rm) were 10,149 of the ≈ 24,300 stops of SQLite's workload, learning nothing about
/// the program traced; their libraries were never learned either. `--system-programs`
/// learns them too.
const SYSTEM_PROGRAMS: &[&str] = &["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/libexec/"];

/// Whether an image at `path` is the system's: a library in its directories, or a
/// program in its program directories (unless `system_programs`), except the program
/// the user asked to trace (`command`, its resolved path): `allocsite trace --
/// /usr/bin/sqlite3 …` learns SQLite, while a script's shell and utilities stay quiet.
pub fn is_system(path: &str, system_programs: bool, command: Option<&str>) -> bool {
    SYSTEM_LIBS.iter().any(|p| path.starts_with(p))
        || (!system_programs && command != Some(path) && SYSTEM_PROGRAMS.iter().any(|p| path.starts_with(p)))
}

/// Whether `path` is one of the system's programs (not a library).
pub fn is_system_program(path: &str) -> bool {
    SYSTEM_PROGRAMS.iter().any(|p| path.starts_with(p))
}

/// The file `cmd` runs, as `/proc/PID/maps` names it (found on `PATH` as `execvp`
/// finds it, symbolic links resolved); None when it cannot be found.
pub fn command_path(cmd: &std::ffi::OsStr) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::path::Path::new(cmd);
    let found = if cmd.as_bytes().contains(&b'/') {
        Some(c.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(c)).find(|f| f.is_file()))
    };
    Some(std::fs::canonicalize(found?).ok()?.to_str()?.to_string())
}

pub struct ImageFile {
    pub id: usize,
    pub path: String,
    pub build_id: String,
    /// The C library, the C++ runtime, the loader and the rest of the system's
    /// libraries, and (unless `--system-programs`) the system's programs — the shell and
    /// the utilities a script runs: their allocators are watched, their own functions
    /// are not learned.
    pub system: bool,
    /// (p_offset, p_vaddr, p_filesz) of every PT_LOAD.
    segments: Vec<(u64, u64, u64)>,
    /// Function symbols (.symtab, else .dynsym), sorted by address: (addr, size, name).
    pub syms: Vec<(u64, u64, String)>,
    /// Raw .eh_frame and its link-time address, for unwinding.
    pub eh_frame: Vec<u8>,
    pub eh_frame_addr: u64,
    /// FDEs by start address; built on first unwind (`unwind.rs`).
    pub fdes: std::cell::OnceCell<Vec<Fde>>,
    pub bytes: u64,
    /// Link-time ranges of .plt, .plt.sec and .plt.got.
    plt: Vec<(u64, u64)>,
    /// How many times something was learned about one of its functions (see `idle.rs`).
    pub news: std::cell::Cell<u64>,
}

impl ImageFile {
    fn load(id: usize, path: &str, system_programs: bool, command: Option<&str>) -> Option<ImageFile> {
        let data = std::fs::read(path).ok()?;
        let obj = object::File::parse(&*data).ok()?;
        let segments = obj.segments().map(|s| {
            let (off, size) = s.file_range();
            (off, s.address(), size)
        }).collect();
        let mut syms: Vec<(u64, u64, String)> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        // Aliases (malloc and __libc_malloc) share an address: keep every name.
        syms.sort();
        syms.dedup();
        let build_id = obj.build_id().ok().flatten().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()).unwrap_or_default();
        let (eh_frame, eh_frame_addr) = obj
            .section_by_name(".eh_frame")
            .and_then(|s| Some((s.data().ok()?.to_vec(), s.address())))
            .unwrap_or_default();
        let plt = obj
            .sections()
            .filter(|s| s.name().is_ok_and(|n| n.starts_with(".plt")))
            .map(|s| (s.address(), s.address() + s.size()))
            .collect();
        let system = is_system(path, system_programs, command);
        let bytes = eh_frame.len() as u64 + syms.iter().map(|s| 32 + s.2.len() as u64).sum::<u64>() + 256;
        Some(ImageFile { id, path: path.to_string(), build_id, system, segments, syms, eh_frame, eh_frame_addr, fdes: Default::default(), bytes, plt, news: Default::default() })
    }

    pub fn in_plt(&self, addr: u64) -> bool {
        self.plt.iter().any(|&(lo, hi)| addr >= lo && addr < hi)
    }

    /// Link-time address of the symbol `name`.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.syms.iter().find(|s| s.2 == name).map(|s| s.0)
    }

    /// Name for a function entry: its symbol, else `sub_<addr>` as the analysis names it.
    pub fn name_at(&self, addr: u64) -> String {
        // The first name at the address that is not a reserved (`_`-led) alias.
        let i = self.syms.partition_point(|s| s.0 < addr);
        let at: Vec<&String> = self.syms[i..].iter().take_while(|s| s.0 == addr).map(|s| &s.2).collect();
        match at.iter().find(|n| !n.starts_with('_')).or(at.first()) {
            Some(n) => n.to_string(),
            None => format!("sub_{addr:x}"),
        }
    }

    /// Load bias of a mapping of this file at `lo` with file offset `off`.
    fn bias(&self, lo: u64, off: u64) -> Option<u64> {
        let &(po, pv, _) = self.segments.iter().find(|&&(po, _, sz)| off >= po && off < po + sz.max(1))?;
        Some(lo.wrapping_sub(pv + (off - po)) & !0xfff)
    }
}

/// One FDE of `.eh_frame`: the link-time range it covers and its offset in the section.
pub struct Fde {
    pub start: u64,
    pub end: u64,
    pub offset: usize,
    /// Its first row is a function's entry (`unwind::is_entry`).
    pub entry: bool,
}

/// One executable mapping of an image in a process.
#[derive(Clone)]
pub struct Mapped {
    pub lo: u64,
    pub hi: u64,
    pub bias: u64,
    pub file: Rc<ImageFile>,
}

#[derive(Default)]
pub struct Images {
    /// `--system-programs`: programs in the system's directories are learned too.
    pub system_programs: bool,
    /// The traced command's own file (`command_path`): learned wherever it is installed.
    pub command: Option<String>,
    files: HashMap<(u64, u64, String), Rc<ImageFile>>,
    pub all: Vec<Rc<ImageFile>>,
}

impl Images {
    /// The system's programs that ran and were treated as the system's (not learned):
    /// what `--system-programs` would add.
    pub fn unlearned_programs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.all.iter().filter(|f| f.system && is_system_program(&f.path)).map(|f| f.path.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn new(system_programs: bool, command: Option<String>) -> Images {
        Images { system_programs, command, ..Default::default() }
    }

    /// The executable mappings of `pid`; `fresh` receives the bytes of newly parsed files.
    pub fn maps(&mut self, pid: Pid, fresh: &mut u64) -> Vec<Mapped> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(range), Some(perms), Some(off), Some(dev), Some(ino)) = (it.next(), it.next(), it.next(), it.next(), it.next()) else { continue };
            let path = it.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !path.starts_with('/') {
                continue;
            }
            let Some((lo, hi)) = range.split_once('-') else { continue };
            let (Ok(lo), Ok(hi), Ok(off)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16), u64::from_str_radix(off, 16)) else { continue };
            let ino: u64 = ino.parse().unwrap_or(0);
            let key = (ino, dev.len() as u64 ^ dev.bytes().fold(0u64, |a, b| a * 31 + b as u64), path.clone());
            let file = match self.files.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let Some(f) = ImageFile::load(self.all.len(), &path, self.system_programs, self.command.as_deref()) else { continue };
                    *fresh += f.bytes;
                    let f = Rc::new(f);
                    self.files.insert(key, f.clone());
                    self.all.push(f.clone());
                    f
                }
            };
            let Some(bias) = file.bias(lo, off) else { continue };
            out.push(Mapped { lo, hi, bias, file });
        }
        out
    }
}

pub fn find(maps: &[Mapped], pc: u64) -> Option<&Mapped> {
    maps.iter().find(|m| pc >= m.lo && pc < m.hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_and_the_command() {
        // libraries are the system's whatever the options
        assert!(is_system("/usr/lib/x86_64-linux-gnu/libc.so.6", true, None));
        assert!(is_system("/usr/lib/x86_64-linux-gnu/libc.so.6", false, Some("/usr/lib/x86_64-linux-gnu/libc.so.6")));
        // a script's shell and utilities are, unless --system-programs
        assert!(is_system("/usr/bin/bash", false, None));
        assert!(is_system("/usr/bin/bash", false, Some("/usr/bin/sqlite3")));
        assert!(!is_system("/usr/bin/bash", true, None));
        // the traced command itself is learned wherever it is installed
        assert!(!is_system("/usr/bin/sqlite3", false, Some("/usr/bin/sqlite3")));
        assert!(!is_system("/home/u/build/sqlite3", false, None));
    }

    #[test]
    fn a_command_is_found_as_execvp_finds_it() {
        // (on PATH, symbolic links resolved: the file's own name, as in /proc/PID/maps)
        let sh = command_path(std::ffi::OsStr::new("sh")).expect("sh on PATH");
        assert!(std::path::Path::new(&sh).is_file(), "{sh}");
        assert_eq!(std::fs::canonicalize(&sh).unwrap().to_str(), Some(sh.as_str()));
        assert_eq!(command_path(std::ffi::OsStr::new("/bin/sh")), Some(std::fs::canonicalize("/bin/sh").unwrap().to_str().unwrap().to_string()));
        assert_eq!(command_path(std::ffi::OsStr::new("no-such-command-anywhere")), None);
    }
}
