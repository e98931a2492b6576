//! The runtime's own memory: how liballocsite_rt.so is linked decides how much of it a
//! program keeps resident (runtime/README.md, "Memory of the runtime itself").
use std::process::Command;

mod common;
use common::{build, out_dir, rt};

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).arg(rt()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No libgcc_s.so.1: the unwinder is linked in from libgcc_eh.a, with its symbols local
/// (a C++ program's exceptions must keep using libgcc_s's own).
#[test]
fn unwinder_is_linked_in_and_private() {
    let dynamic = tool("readelf", &["-dW"]);
    assert!(!dynamic.contains("libgcc_s"), "liballocsite_rt.so needs libgcc_s again:\n{dynamic}");
    let dynsyms = tool("nm", &["-D"]);
    for l in dynsyms.lines().filter(|l| l.contains("_Unwind_")) {
        panic!("the runtime imports or exports an unwinder symbol: {l}");
    }
}

/// The functions every program runs lie in `.text.allocsite_hot` (runtime/hot.ld): a
/// function renamed in the sources drops out of it silently otherwise.
#[test]
fn hot_code_is_together() {
    let sections = tool("readelf", &["-SW"]);
    let hot = sections.lines().find(|l| l.contains(" .text.allocsite_hot ")).expect("no .text.allocsite_hot section (runtime/hot.ld not used?)");
    let f: Vec<&str> = hot.split(']').nth(1).unwrap().split_whitespace().collect();
    let (lo, size) = (u64::from_str_radix(f[2], 16).unwrap(), u64::from_str_radix(f[4], 16).unwrap());
    let syms = tool("nm", &["-C", "--defined-only"]);
    let addr_of = |want: &str| -> Vec<u64> {
        syms.lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                let (a, t, n) = (it.next()?, it.next()?, it.next()?);
                // (legacy-mangled names demangle with a `::h<hash>` suffix)
                let n = n.rsplit_once("::h").filter(|(_, h)| h.len() == 16).map_or(n, |(p, _)| p);
                (matches!(t, "t" | "T") && n == want).then(|| u64::from_str_radix(a, 16).unwrap())
            })
            .collect()
    };
    let mut outside = vec![];
    for name in [
        "malloc",
        "free",
        "realloc",
        "calloc",
        "__allocsite_hook_enter",
        "__allocsite_hook_exit",
        "__allocsite_enter",
        "__allocsite_exit",
        "allocsite_rt::init",
        "allocsite_rt::interpose::malloc_impl",
        "allocsite_rt::interpose::free_impl",
        "allocsite_rt::interpose::realloc_impl",
        "allocsite_rt::interpose::realloc_common",
        "allocsite_rt::interpose::calloc_impl",
        "allocsite_rt::attribution::attribute_walk",
    ] {
        let a = addr_of(name);
        assert!(!a.is_empty(), "{name} is not in the symbol table (renamed? update runtime/hot.ld and this list)");
        if a.iter().any(|&a| a < lo || a >= lo + size) {
            outside.push(name);
        }
    }
    assert!(outside.is_empty(), "outside .text.allocsite_hot (update runtime/hot.ld): {outside:?}");
}

/// The size of `.text.allocsite_hot` in bytes.
fn hot_section_size() -> u64 {
    let sections = tool("readelf", &["-SW"]);
    let line = sections.lines().find(|l| l.contains(".text.allocsite_hot")).expect("no .text.allocsite_hot");
    // [Nr] Name Type Address Off Size ...
    let f: Vec<&str> = line.split(']').nth(1).unwrap().split_whitespace().collect();
    u64::from_str_radix(f[4], 16).unwrap()
}

/// What an allocation-heavy C program keeps resident of the runtime's text after
/// malloc/realloc/calloc/free: the hot code's fault-around windows (64 KiB each), not
/// the whole library (before hot.ld: ~440 KiB of 600 KiB); and no libgcc_s mapped.
/// The loader puts the library at any 4 KiB boundary, so a hot section of H KiB touches
/// up to ⌈(H + 60) / 64⌉ windows (136-196 KiB in eight runs with H = 110): the bound is
/// that, plus one window for the PLT and the init code before it; and the hot section
/// itself must stay ≤ 128 KiB (it grows with what the fast paths inline).
#[test]
fn resident_text_stays_small() {
    let hot_kib = hot_section_size().div_ceil(1024);
    assert!(hot_kib <= 128, "the hot section is {hot_kib} KiB (> 128 KiB): move what every program does not run out of runtime/hot.ld");
    let bound = ((hot_kib + 60).div_ceil(64) + 1) * 64;
    // (-fno-builtin: every malloc/free in resident.c is a call into the runtime)
    let exe = build("resident.c", &out_dir("layout"), &["-fno-builtin"]);
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("libgcc_s"), "libgcc_s is mapped:\n{text}");
    let kib = |perms: &str| -> u64 {
        text.lines().filter(|l| l.starts_with("liballocsite_rt.so ") && l.split(' ').nth(1) == Some(perms)).map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
    };
    assert!(text.lines().any(|l| l.contains(" r-xp ")), "no text mapping of the runtime seen:\n{text}");
    assert!(kib("r-xp") <= bound, "{} KiB of the runtime's text resident (bound {bound} KiB for a {hot_kib} KiB hot section):\n{text}", kib("r-xp"));
}
