//! End-to-end tests of `allocsite rewrite` on real binaries: our own small C programs
//! (compiled here) and the testbins (`make -C testbins`, built on first use). Each rewritten
//! program must behave byte for byte like the original, call the hooks for every hooked
//! call with sites in the program's own code, pass `eu-elflint` exactly like its input,
//! list the runtime in `ldd`, and keep running when moved with the runtime elsewhere.
//! The call-site checks (hook ABI v3/v4, gdb stub symbols) are in `tests/call_sites.rs`.

mod rewriting;
mod support;

use std::path::Path;
use std::process::Command;

use rewriting::*;
use support::{functions, ok, root, run};

#[test]
fn own_program_all_variants() {
    let d = scratch("own");
    // O2nohdr: linked without `.eh_frame_hdr`; the rewrite adds one (and names it).
    let variants: [(&str, &[&str]); 4] = [
        ("O0", &["-O0", "-g"]),
        ("O2", &["-O2", "-g"]),
        ("O2nopie", &["-O2", "-g", "-fno-pie", "-no-pie"]),
        ("O2nohdr", &["-O2", "-g", "-Wl,--no-eh-frame-hdr"]),
    ];
    for (v, flags) in variants {
        let src = compile(&d, &format!("prog.{v}"), flags, &["prog.c", "alloc.c"]);
        let mut inputs = vec![(src.clone(), src.clone(), false)];
        if v == "O2" {
            let s = d.join("prog.O2strip");
            ok(Command::new("strip").arg("-o").arg(&s).arg(&src));
            inputs.push((s, src.clone(), true));
        }
        for (input, symbols, stripped) in inputs {
            let out_dir = d.join(format!("out-{}", input.file_name().unwrap().to_string_lossy()));
            std::fs::create_dir_all(&out_dir).unwrap();
            let before = std::fs::read(&input).unwrap();
            let (json, names) = classification(&symbols, &own_fns(), stripped);
            let rw = rewrite(&input, &json, &out_dir, &[]);
            assert_eq!(before, std::fs::read(&input).unwrap(), "input modified");
            require("eu-elflint");
            assert_eq!(elflint(&input), elflint(&rw.out), "{}", input.display());
            if stripped {
                // The stripped input's functions get the analysis's names in `.symtab`.
                let nm = ok(Command::new("nm").arg(&rw.out));
                let main = format!("{:016x} t sub_{:x}", functions(&symbols)["main"].0, functions(&symbols)["main"].0);
                assert!(nm.lines().any(|l| l == main), "{main} missing from nm {}:\n{nm}", rw.out.display());
            }
            for n in &names {
                assert!(rw.stdout.contains(&format!("hooked {n} at ")), "{n} not hooked in {}:\n{}", input.display(), rw.stdout);
            }
            let traces = check_program(&input, &rw, &[&[], &["oom"]], true);
            let base = load_base(&input);
            let ev: Vec<_> = events(&traces[0]).into_iter().map(|(a, b, c, off)| (a, b, c, off + base)).collect();
            let count = |f: &str| ev.iter().filter(|e| e.0 == "enter" && e.1 == f).count();
            let fname = |n: &str| if stripped { format!("sub_{:x}", functions(&symbols)[n].0) } else { n.to_string() };
            // main: 50 × (xmalloc, xcalloc, 2 xfree); wrap_tail, alloc7 and scaled_alloc each
            // call xmalloc once more; 3 xfree at the end; bump 1000 times.
            assert_eq!(count(&fname("xcalloc")), 50, "{}", input.display());
            assert_eq!(count(&fname("xfree")), 103, "{}", input.display());
            assert_eq!(count(&fname("xmalloc")), 53, "{}", input.display());
            assert_eq!(count(&fname("bump")), 1000, "{}", input.display());
            assert_eq!(count(&fname("alloc7")), 1, "{}", input.display());
            // The size argument of xcalloc: sizeof(int); the site of the xmalloc that
            // wrap_tail tail-calls is wrap_tail's caller (main).
            assert!(traces[0].contains(&format!("fn={} ", fname("xcalloc"))) && traces[0].contains("size=4 count=1"));
            let main_range = functions(&symbols)["main"];
            let tail_site = ev.iter().find(|e| e.0 == "enter" && e.1 == fname("wrap_tail")).unwrap().3;
            assert!(tail_site >= main_range.0 && tail_site < main_range.0 + main_range.1);
            let sites: Vec<u64> = ev.iter().filter(|e| e.0 == "enter" && e.1 == fname("xmalloc")).map(|e| e.3).collect();
            // At -O2 wrap_tail is `add rdi,16; jmp xmalloc`: its pad tail-calls.
            assert!(v == "O0" || sites.contains(&tail_site), "tail-called xmalloc should report wrap_tail's site {tail_site:#x}: {sites:x?}");

            // Move OUT and the runtime elsewhere: still runs.
            let moved = d.join(format!("moved-{}", input.file_name().unwrap().to_string_lossy()));
            std::fs::create_dir_all(&moved).unwrap();
            let m = moved.join("prog");
            std::fs::rename(&rw.out, &m).unwrap();
            std::fs::rename(out_dir.join("liballocsite_rt.so"), moved.join("liballocsite_rt.so")).unwrap();
            let (o1, _, s1, _) = run_traced(&input, &[], None, None);
            let (o2, _, s2, _) = run_traced(&m, &[], None, None);
            assert_eq!((o1, s1), (o2, s2), "moved {}", m.display());
        }
    }
}

#[test]
fn shared_library() {
    let d = scratch("lib");
    let lib = compile(&d, "libown.so", &["-O2", "-g", "-shared", "-fPIC"], &["lib.c"]);
    let user_dir = d.join("orig");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::copy(&lib, user_dir.join("libown.so")).unwrap();
    let user = user_dir.join("user");
    ok(Command::new("sh").arg("-c").arg(format!("cd {} && gcc -O2 -o user {}/rewriter/tests/c/libuser.c -L. -lown -Wl,-rpath,'$ORIGIN'", user_dir.display(), root().display())));
    let fns = vec![
        Fn { name: "lib_alloc", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "lib_strdup", kind: "alloc", roles: vec![], nargs: Some(1) },
        Fn { name: "lib_free", kind: "free", roles: vec![("ptr", 0)], nargs: Some(1) },
    ];
    let (json, _) = classification(&lib, &fns, false);
    let out_dir = d.join("new");
    std::fs::create_dir_all(&out_dir).unwrap();
    let rw = rewrite(&lib, &json, &out_dir, &[]);
    assert_eq!(rw.stdout.lines().filter(|l| l.starts_with("hooked")).count(), 3, "{}", rw.stdout);
    // The unmodified program loads the rewritten library.
    std::fs::copy(&user, out_dir.join("user")).unwrap();
    let tr = assert_same_behaviour(&user, &out_dir.join("user"), &[]);
    let ev = events(&tr);
    assert_eq!(ev.iter().filter(|e| e.0 == "enter" && e.1 == "lib_strdup").count(), 20, "{tr}");
    assert_eq!(ev.iter().filter(|e| e.0 == "enter" && e.1 == "lib_alloc").count(), 21);
    assert!(ev.iter().filter(|e| e.1 == "lib_strdup").all(|e| e.2 == "user"), "lib_strdup sites are in the program");
    {
        require("eu-elflint");
        assert_eq!(elflint(&lib), elflint(&rw.out));
    }
}

#[test]
fn strict_refusal_and_bad_input() {
    let d = scratch("strict");
    // 3-byte functions directly followed by others: no room for the jmp. `tiny2` is only
    // called directly (hooked through its call site); `tiny`'s address is taken (refused).
    let src = d.join("short.s");
    std::fs::write(
        &src,
        ".text\n.globl tiny\n.type tiny,@function\ntiny: xor %eax,%eax\nret\n.size tiny,3\n.globl next\n.type next,@function\nnext: ret\n.size next,1\n\
         .globl tiny2\n.type tiny2,@function\ntiny2: xor %eax,%eax\nret\n.size tiny2,3\n.globl next2\n.type next2,@function\nnext2: ret\n.size next2,1\n\
         .globl main\n.type main,@function\nmain: sub $8,%rsp\ncall tiny2\nlea tiny(%rip),%rax\ncall *%rax\nadd $8,%rsp\nret\n.size main,.-main\n.section .note.GNU-stack,\"\",@progbits\n",
    )
    .unwrap();
    let bin = d.join("short");
    ok(Command::new("gcc").arg("-o").arg(&bin).arg(&src));
    let fns = [
        Fn { name: "tiny", kind: "alloc", roles: vec![], nargs: Some(0) },
        Fn { name: "tiny2", kind: "alloc", roles: vec![], nargs: Some(0) },
    ];
    let (json, _) = classification(&bin, &fns, false);
    let fns = d.join("c.json");
    std::fs::write(&fns, json).unwrap();
    let out = d.join("out");
    let o = run(Command::new(allocsite()).arg("rewrite").arg(&bin).arg("-o").arg(&out).arg("--fns").arg(&fns).arg("--runtime").arg(runtime()).arg("--strict"));
    assert!(!o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("refused tiny: ") && stdout.contains("address is taken"), "{stdout}");
    assert!(stdout.contains("hooked tiny2 at ") && stdout.contains("call sites: 1 direct"), "{stdout}");
    assert!(!out.exists(), "--strict with a refusal must not write OUT");
    // Without --strict: written, runs, and the call-site-hooked tiny2 reports its call.
    ok(Command::new(allocsite()).arg("rewrite").arg(&bin).arg("-o").arg(&out).arg("--fns").arg(&fns).arg("--runtime").arg(runtime()));
    let (_, _, s1, _) = run_traced(&bin, &[], None, None);
    let (_, _, s2, tr) = run_traced(&out, &[], Some(&d.join("t.trace")), None);
    assert_eq!(s1, s2);
    assert_eq!(events(&tr).iter().filter(|e| e.0 == "enter" && e.1 == "tiny2").count(), 1, "{tr}");

    // Malformed input: one line naming the file, no panic.
    for (name, bytes) in [("empty", &b""[..]), ("text", &b"hello world, not an ELF"[..]), ("trunc", &std::fs::read(&bin).unwrap()[..200])] {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = run(Command::new(allocsite()).arg("rewrite").arg(&p).arg("-o").arg(d.join("x")).arg("--fns").arg(&fns).arg("--runtime").arg(runtime()));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.lines().count() == 1 && err.contains(name) && !err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn gdb_backtrace_through_trampoline() {
    require("gdb");
    let d = scratch("gdb");
    for (v, flags) in [("O0", &["-O0", "-g"][..]), ("O2", &["-O2", "-g"][..])] {
        let bin = compile(&d, &format!("prog.{v}"), flags, &["prog.c", "alloc.c"]);
        let out_dir = d.join(format!("out{v}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let (json, _) = classification(&bin, &own_fns(), false);
        let rw = rewrite(&bin, &json, &out_dir, &[]);
        let script = "set pagination off\nset debuginfod enabled off\nbreak xcalloc\nrun\nbreak calloc\ncontinue\nbt\n";
        let script_file = d.join("script.gdb");
        std::fs::write(&script_file, script).unwrap();
        let gdb = |p: &Path| {
            let o = run(Command::new("gdb").arg("-nx").arg("-batch").arg("-x").arg(&script_file).arg(p));
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        };
        let g = gdb(&rw.out);
        let frames: Vec<&str> = g.lines().filter(|l| l.starts_with('#')).collect();
        assert!(frames.iter().any(|l| l.contains("xcalloc.allocsite_entry")), "{g}");
        // The caller of calloc is xcalloc itself, or its relocated pad when the call
        // was among the displaced instructions (-O2: `sub rsp,8; call calloc`).
        assert!(frames.iter().any(|l| l.contains(" xcalloc (") || l.contains(" xcalloc.allocsite_pad (")), "{g}");
        assert!(frames.last().is_some_and(|l| l.contains("main (")), "{g}");
        assert!(!g.contains("Backtrace stopped") && !g.contains("corrupt stack") && !g.contains("previous frame identical"), "{g}");
    }
}

/// The rewriter's read-write segment (new `.dynamic`, the trampolines' slots,
/// descriptors) is read-only once the program runs, as RELRO makes the GOT.
#[test]
fn new_data_segment_read_only_at_run_time() {
    let d = scratch("relro");
    for (v, flags) in [("pie", &["-O2", "-g"][..]), ("nopie", &["-O2", "-g", "-fno-pie", "-no-pie"][..])] {
        let bin = compile(&d, &format!("prog.{v}"), flags, &["prog.c", "alloc.c"]);
        let out_dir = d.join(format!("out-{v}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let (json, _) = classification(&bin, &own_fns(), false);
        let rw = rewrite(&bin, &json, &out_dir, &[]);
        let sec = ok(Command::new("readelf").args(["-SW"]).arg(&rw.out));
        let addr = sec
            .lines()
            .find(|l| l.contains(" .allocsite.data "))
            .and_then(|l| l.split_whitespace().skip_while(|w| *w != ".allocsite.data").nth(2).map(str::to_string))
            .map(|a| u64::from_str_radix(&a, 16).unwrap())
            .expect("no .allocsite.data section");
        let (maps, _, _, _) = run_traced(&rw.out, &["maps"], None, None);
        let maps = String::from_utf8_lossy(&maps).to_string();
        let name = rw.out.file_name().unwrap().to_string_lossy().to_string();
        let mine: Vec<(u64, u64, &str, u64)> = maps
            .lines()
            .filter(|l| l.ends_with(&format!("/{name}")))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let (lo, hi) = w[0].split_once('-')?;
                Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?, w[1], u64::from_str_radix(w[2], 16).ok()?))
            })
            .collect();
        // the load base: the mapping of file offset 0
        let base = if v == "pie" { mine.iter().find(|m| m.3 == 0).expect("no mapping of offset 0").0 } else { 0 };
        let at = base + addr;
        let m = mine.iter().find(|m| at >= m.0 && at < m.1).unwrap_or_else(|| panic!("{at:#x} not mapped:\n{maps}"));
        assert_eq!(m.2, "r--p", "{v}: .allocsite.data at {at:#x} is mapped {}:\n{maps}", m.2);
    }
}

/// Every testbin at every variant.
#[test]
fn testbins() {
    let tb = support::testbins_out();
    let d = scratch("testbins");
    let mut programs: Vec<String> = std::fs::read_dir(root().join("testbins"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".expect").map(str::to_string))
        .collect();
    programs.sort();
    let mut summary = Vec::new();
    for prog in &programs {
        let expect = std::fs::read_to_string(root().join(format!("testbins/{prog}.expect"))).unwrap();
        let is_lib = prog.starts_with("lib");
        let mut variants = vec!["O0", "O2", "O2nopie", "O2strip"];
        if prog == "wrappers" {
            variants.extend(["O2noplt", "O2cet"]);
        }
        for v in variants {
            let file = if is_lib { format!("{prog}.{v}.so") } else { format!("{prog}.{v}") };
            let input = tb.join(&file);
            if !input.exists() {
                continue;
            }
            let twin = if v == "O2strip" { tb.join(file.replace("O2strip", "O2")) } else { input.clone() };
            let fns: Vec<Fn> = expect
                .lines()
                .map(|l| l.split('#').next().unwrap().trim())
                .filter(|l| !l.is_empty() && !l.starts_with("not "))
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    if let Some(at) = w.iter().find(|x| x.starts_with('@')) {
                        let vs: Vec<&str> = at[1..].split(',').collect();
                        let vv = if v == "O2strip" { "O2" } else { v };
                        if !vs.contains(&vv) && !vs.contains(&v) {
                            return None;
                        }
                    }
                    let roles = w[2..]
                        .iter()
                        .filter_map(|r| r.split_once('=').and_then(|(a, b)| Some((a, b.parse().ok()?))))
                        .collect();
                    Some(Fn { name: w[0], kind: w[1], roles, nargs: None })
                })
                .collect();
            let (json, _) = classification(&twin, &fns, v == "O2strip");
            let out_dir = d.join(v);
            std::fs::create_dir_all(&out_dir).unwrap();
            let rw = rewrite(&input, &json, &out_dir, &[]);
            let hooked = rw.stdout.lines().filter(|l| l.starts_with("hooked")).count();
            let refused: Vec<&str> = rw.stdout.lines().filter(|l| l.starts_with("refused")).collect();
            summary.push(format!("{file}: {hooked} hooked, {} refused {refused:?}", refused.len()));
            if is_lib {
                // Checked through slabuser below (the program loads the library by name).
                {
        require("eu-elflint");
                    assert_eq!(elflint(&input), elflint(&rw.out), "{file}");
                }
                continue;
            }
            if prog == "slabuser" {
                let lib = if v == "O2strip" { "libslab.O2.so".to_string() } else { format!("libslab.{v}.so") };
                let src_lib = if v == "O2strip" { out_dir.join("libslab.O2strip.so") } else { out_dir.join(&lib) };
                if src_lib.exists() && lib != src_lib.file_name().unwrap().to_string_lossy() {
                    std::fs::copy(&src_lib, out_dir.join(&lib)).unwrap();
                }
            }
            let args: Vec<&[&str]> = match prog.as_str() {
                "wrappers" => vec![&[], &["oom"], &["die"], &["abort"]],
                "nested" => vec![&[], &["fatal"]],
                _ => vec![&[]],
            };
            let balanced = !matches!(prog.as_str(), "stress" | "cxxalloc");
            check_program(&input, &rw, &args, balanced);
        }
    }
    eprintln!("{}", summary.join("\n"));
}
