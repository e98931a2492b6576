//! End-to-end tests of `allocsite rewrite` on real binaries: our own small C programs
//! (compiled here) and the testbins (`make -C testbins`, built on first use). Each rewritten
//! program must behave byte for byte like the original, call the hooks for every hooked
//! call with sites in the program's own code, pass `eu-elflint` exactly like its input,
//! list the runtime in `ldd`, and keep running when moved with the runtime elsewhere.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::{functions, ok, run, root, Scratch};

fn allocsite() -> &'static str {
    env!("CARGO_BIN_EXE_allocsite")
}

fn scratch(name: &str) -> Scratch {
    support::scratch_in("rewrite-tests", name)
}



/// The runtime: `$ALLOCSITE_RT` (set by `make test`), else the one in `target/release`.
fn runtime() -> &'static Path {
    static RT: OnceLock<PathBuf> = OnceLock::new();
    RT.get_or_init(|| {
        let p = std::env::var_os("ALLOCSITE_RT").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/liballocsite_rt.so"));
        assert!(p.exists(), "runtime library {} missing: build it first (make build) or set ALLOCSITE_RT", p.display());
        p
    })
}


struct Fn<'a> {
    name: &'a str,
    kind: &'a str,
    roles: Vec<(&'a str, u8)>,
    nargs: Option<u8>,
}

/// Classification JSON for `fns`, addressed through the symbols of `symbols_of`;
/// functions missing there are skipped. `stripped` names them `sub_<hex>`.
fn classification(symbols_of: &Path, fns: &[Fn], stripped: bool) -> (String, Vec<String>) {
    let syms = functions(symbols_of);
    let mut items = Vec::new();
    let mut names = Vec::new();
    for f in fns {
        let Some(&(addr, size)) = syms.get(f.name) else { continue };
        let name = if stripped { format!("sub_{addr:x}") } else { f.name.to_string() };
        let args: Vec<String> = f.roles.iter().map(|(r, p)| format!("\"{r}\": {p}")).collect();
        let nargs = f.nargs.map(|n| format!(", \"nargs\": {n}")).unwrap_or_default();
        items.push(format!(
            "{{\"name\": \"{name}\", \"address\": \"{addr:#x}\", \"code_size\": {size}, \"kind\": \"{}\", \"args\": {{{}}}{nargs}, \"descriptor\": \"\"}}",
            f.kind,
            args.join(", ")
        ));
        names.push(name);
    }
    (format!("{{\"binary\": \"x\", \"functions\": [{}]}}", items.join(",\n")), names)
}

struct Rewrite {
    out: PathBuf,
    stdout: String,
}

fn rewrite(input: &Path, json: &str, dir: &Path, extra: &[&str]) -> Rewrite {
    let name = input.file_name().unwrap();
    let fns = dir.join(format!("{}.json", name.to_string_lossy()));
    std::fs::write(&fns, json).unwrap();
    let out = dir.join(name);
    let stdout = ok(Command::new(allocsite())
        .arg("rewrite")
        .arg(input)
        .arg("-o")
        .arg(&out)
        .arg("--fns")
        .arg(&fns)
        .arg("--runtime")
        .arg(runtime())
        .args(extra));
    Rewrite { out, stdout }
}

/// Run `bin args` in `cwd` with a trace file; returns (stdout, stderr, status, trace).
fn run_traced(bin: &Path, args: &[&str], trace: Option<&Path>, report: Option<&Path>) -> (Vec<u8>, Vec<u8>, Option<i32>, String) {
    let mut c = Command::new(bin);
    c.args(args).current_dir(bin.parent().unwrap());
    c.env_remove("ALLOCSITE_TRACE").env_remove("ALLOCSITE_REPORT");
    if let Some(t) = trace {
        let _ = std::fs::remove_file(t);
        c.env("ALLOCSITE_TRACE", t);
    }
    if let Some(r) = report {
        c.env("ALLOCSITE_REPORT", r);
    }
    let o = run(&mut c);
    let tr = trace.map(|t| std::fs::read_to_string(t).unwrap_or_default()).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    (o.stdout, o.stderr, o.status.code().or(o.status.signal().map(|s| 128 + s)), tr)
}

/// The original and the rewritten program behave the same, traced (every hook goes to
/// the runtime's C-ABI functions) and untraced (the trampolines' inline bookkeeping);
/// both rewritten runs write reports, which must agree site by site. Returns the trace.
fn assert_same_behaviour(orig: &Path, new: &Path, args: &[&str]) -> String {
    let (o1, e1, s1, _) = run_traced(orig, args, None, None);
    let tag = args.join("_");
    let trace = new.with_extension(format!("trace{tag}"));
    let reports = |what: &str| new.with_file_name(format!("{}.{what}{tag}.%p.json", new.file_name().unwrap().to_string_lossy()));
    let (slow, fast) = (reports("slow"), reports("fast"));
    let (o2, e2, s2, tr) = run_traced(new, args, Some(&trace), Some(&slow));
    let (o3, e3, s3, _) = run_traced(new, args, None, Some(&fast));
    for (o, e, st, how) in [(&o2, &e2, s2, "traced"), (&o3, &e3, s3, "untraced")] {
        assert_eq!(String::from_utf8_lossy(&o1), String::from_utf8_lossy(o), "stdout of {} {args:?} ({how})", new.display());
        assert_eq!(String::from_utf8_lossy(&e1), String::from_utf8_lossy(e), "stderr of {} {args:?} ({how})", new.display());
        assert_eq!(s1, st, "exit status of {} {args:?} ({how})", new.display());
    }
    let (rs, rf) = (report_rows(&slow), report_rows(&fast));
    assert!(!args.is_empty() || !rf.is_empty(), "no report rows from {}", new.display());
    assert_eq!(rs, rf, "reports of {} {args:?}: traced vs untraced", new.display());
    tr
}

/// Every site row of the reports written to `template` (`%p` = any pid), in a form that
/// compares across runs: symbolized sites, allocator and counts, sorted.
fn report_rows(template: &Path) -> Vec<String> {
    let name = template.file_name().unwrap().to_string_lossy().to_string();
    let (pre, post) = name.split_once("%p").unwrap();
    let mut rows = Vec::new();
    for e in std::fs::read_dir(template.parent().unwrap()).unwrap().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        if !(f.starts_with(pre) && f.ends_with(post)) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        for s in v["sites"].as_array().unwrap() {
            let outer: Vec<&str> = s["outermost"].as_array().map(|a| a.iter().filter_map(|o| o["symbol"].as_str()).collect()).unwrap_or_default();
            rows.push(format!(
                "{} {} calls={} bytes={} live={}/{} outer={outer:?}",
                s["symbol"], s["allocator"], s["calls"], s["bytes"], s["live_chunks"], s["live_bytes"]
            ));
        }
        let _ = std::fs::remove_file(e.path());
    }
    rows.sort();
    rows
}

fn elflint(p: &Path) -> String {
    let o = run(Command::new("eu-elflint").arg("--gnu-ld").arg(p));
    String::from_utf8_lossy(&o.stdout).replace(&p.display().to_string(), "FILE")
}

/// The external tools the checks use are installed by `.ci/deps` (`make test`);
/// a missing one fails the test rather than skipping the check.
fn require(tool: &str) {
    assert!(Command::new(tool).arg("--version").output().is_ok(), "{tool} is required (`make test` installs it through .ci/deps)");
}

/// Address range of the new code in a rewritten file: `.allocsite.text` and the
/// trampolines gdb steps through right after it, `.plt.allocsite`.
fn new_text(p: &Path) -> (u64, u64) {
    let out = ok(Command::new("readelf").arg("-SW").arg(p));
    let range = |name: &str| {
        out.lines().find_map(|l| {
            let rest = l.split(&format!("] {name} ")).nth(1)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let a = u64::from_str_radix(f[1], 16).ok()?;
            let s = u64::from_str_radix(f[3], 16).ok()?;
            Some((a, a + s))
        })
    };
    let (lo, hi) = range(".allocsite.text").unwrap_or((0, 0));
    match range(".plt.allocsite") {
        Some((a, b)) if a == hi || hi == lo => (if hi == lo { a } else { lo }, b),
        Some(_) => panic!("{}: .plt.allocsite does not follow .allocsite.text:\n{out}", p.display()),
        None => (lo, hi),
    }
}

/// Link-time address of the first PT_LOAD: what trace offsets (from `dladdr`'s load
/// base) are relative to — 0 for PIE and shared libraries, 0x400000 for non-PIE.
fn load_base(p: &Path) -> u64 {
    let out = ok(Command::new("readelf").arg("-lW").arg(p));
    out.lines()
        .find(|l| l.trim_start().starts_with("LOAD"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// Trace lines per event: (kind, fn, object, offset).
fn events(trace: &str) -> Vec<(String, String, String, u64)> {
    trace
        .lines()
        .filter_map(|l| {
            let kind = l.split_whitespace().next()?.to_string();
            let get = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
            let site = get("site=")?;
            let (obj, off) = site.rsplit_once('+')?;
            Some((kind, get("fn=")?, obj.to_string(), u64::from_str_radix(off.trim_start_matches("0x"), 16).ok()?))
        })
        .collect()
}

/// Common checks on a rewritten program: same behaviour, hooks called, sites inside the
/// program's original code, enter/exit balanced, elflint unchanged, ldd lists the runtime.
fn check_program(orig: &Path, rw: &Rewrite, args_list: &[&[&str]], balanced: bool) -> Vec<String> {
    let (lo, hi) = new_text(&rw.out);
    let base = load_base(&rw.out);
    let (lo, hi) = (lo - base.min(lo), hi - base.min(hi));
    let obj = rw.out.file_name().unwrap().to_string_lossy().to_string();
    let mut traces = Vec::new();
    for args in args_list {
        let tr = assert_same_behaviour(orig, &rw.out, args);
        let ev = events(&tr);
        for (kind, f, o, off) in &ev {
            if *o == obj {
                assert!(!(*off >= lo && *off < hi), "{kind} {f}: site {off:#x} is inside the trampolines of {obj}");
            }
        }
        if balanced && args.is_empty() {
            let enters = ev.iter().filter(|e| e.0 == "enter").count();
            let exits = ev.iter().filter(|e| e.0 == "exit").count();
            assert_eq!(enters, exits, "unbalanced enter/exit in {obj}");
        }
        traces.push(tr);
    }
    {
        require("eu-elflint");
        assert_eq!(elflint(orig), elflint(&rw.out), "eu-elflint --gnu-ld differs for {}", rw.out.display());
    }
    let ldd = ok(Command::new("ldd").arg(&rw.out));
    assert!(ldd.contains("liballocsite_rt.so => "), "ldd {} does not list the runtime: {ldd}", rw.out.display());
    // binutils rebuild segments from sections: the output must survive `strip`
    let stripped = rw.out.with_extension("stripped");
    ok(Command::new("strip").arg("-o").arg(&stripped).arg(&rw.out));
    let (o1, e1, s1, _) = run_traced(orig, args_list[0], None, None);
    let (o2, e2, s2, _) = run_traced(&stripped, args_list[0], None, None);
    assert_eq!((o1, e1, s1), (o2, e2, s2), "`strip {}` changed its behaviour", rw.out.display());
    traces
}

fn compile(dir: &Path, out: &str, flags: &[&str], srcs: &[&str]) -> PathBuf {
    let c = root().join("rewriter/tests/c");
    let o = dir.join(out);
    ok(Command::new("gcc").args(flags).arg("-o").arg(&o).args(srcs.iter().map(|s| c.join(s))));
    o
}

fn own_fns() -> Vec<Fn<'static>> {
    vec![
        Fn { name: "xmalloc", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "xcalloc", kind: "alloc", roles: vec![("count", 0), ("size", 1)], nargs: Some(2) },
        Fn { name: "xfree", kind: "free", roles: vec![("ptr", 0)], nargs: Some(1) },
        Fn { name: "wrap_tail", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "alloc7", kind: "alloc", roles: vec![("size", 5)], nargs: Some(7) },
        Fn { name: "scaled_alloc", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "bump", kind: "suballoc", roles: vec![("size", 0)], nargs: Some(1) },
    ]
}

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

/// One call/jmp in `objdump -d` of a binary.
struct Disas {
    at: u64,
    next: u64,
    func: String,
    /// `call`/`jmp`, without prefixes (`bnd`, `notrack`).
    op: String,
    /// The operand as objdump prints it (`1440 <xmalloc>`, `*0x2ef3(%rip)  # 3fb0 <malloc@GLIBC_2.2.5>`).
    operand: String,
}

impl Disas {
    /// The named target: `xmalloc`, `malloc@plt`, `malloc@GLIBC_2.2.5`, `g_alloc` …
    fn target(&self) -> Option<&str> {
        let t = self.operand.rsplit_once('<')?.1.strip_suffix('>')?;
        Some(t)
    }
    fn branch_target(&self) -> Option<u64> {
        u64::from_str_radix(self.operand.split_whitespace().next()?, 16).ok()
    }
}

fn disassemble(bin: &Path) -> Vec<Disas> {
    let out = ok(Command::new("objdump").args(["-d", "--no-show-raw-insn", "-w"]).arg(bin));
    let mut v: Vec<Disas> = Vec::new();
    let mut func = String::new();
    let mut pending: Option<usize> = None;
    for l in out.lines() {
        if let Some(name) = l.strip_suffix(">:").and_then(|l| l.split_once(" <")).map(|x| x.1) {
            func = name.to_string();
            continue;
        }
        let Some((addr, rest)) = l.trim_start().split_once(":\t") else { continue };
        let Ok(at) = u64::from_str_radix(addr, 16) else { continue };
        if let Some(k) = pending.take() {
            v[k].next = at;
        }
        let words: Vec<&str> = rest.split_whitespace().filter(|w| !matches!(*w, "bnd" | "notrack")).collect();
        if let Some(op) = words.first().filter(|w| matches!(**w, "call" | "jmp")) {
            let operand = rest.split_once(op).map(|x| x.1.trim().to_string()).unwrap_or_default();
            v.push(Disas { at, next: 0, func: func.clone(), op: op.to_string(), operand });
            pending = Some(v.len() - 1);
        }
    }
    v
}

/// The classification of `sites.c` a hand would write: its allocation functions
/// (`make_node` is a constructor: the size is fixed inside it), the imports it calls,
/// and every call of an allocation function by an allocation function or of an import,
/// with the pass-through ones that sites.c's comments name.
fn sites_classification(bin: &Path) -> String {
    let syms = functions(bin);
    let ptw: Vec<String> = (0..9).map(|k| format!("ptw{k}")).collect();
    let mut locals: Vec<(&str, &str, &str)> = vec![
        ("xmalloc", "alloc", "\"size\": 0"),
        ("xmalloc_hdr", "alloc", "\"size\": 0"),
        ("wrap_tail", "alloc", "\"size\": 0"),
        ("via_ptr", "alloc", "\"size\": 0"),
        ("via_ptr_tail", "alloc", "\"size\": 0"),
        ("make_node", "ctor", ""),
    ];
    locals.extend(ptw.iter().map(|n| (n.as_str(), "alloc", "\"size\": 0")));
    // getline is `__getdelim` once glibc's header inlines it (-O2)
    let imports = [
        ("malloc", "alloc", "\"size\": 0"),
        ("strdup", "alloc", ""),
        ("free", "free", "\"ptr\": 0"),
        ("getline", "alloc", "\"out\": 0"),
        ("__getdelim", "alloc", "\"out\": 0"),
        ("asprintf", "alloc", "\"out\": 0"),
    ];
    let mut pass_through = vec![("xmalloc", "malloc"), ("xmalloc_hdr", "xmalloc"), ("wrap_tail", "xmalloc"), ("via_ptr", "xmalloc"), ("via_ptr_tail", "xmalloc")];
    pass_through.extend(ptw.iter().map(|n| (n.as_str(), "xmalloc")));
    let is_local = |n: &str| locals.iter().any(|l| l.0 == n);
    let fns: Vec<String> = locals
        .iter()
        .map(|(n, k, a)| {
            let (addr, size) = syms[*n];
            format!("{{\"name\": \"{n}\", \"address\": \"{addr:#x}\", \"code_size\": {size}, \"kind\": \"{k}\", \"args\": {{{a}}}, \"nargs\": {}, \"descriptor\": \"\"}}", if *n == "make_node" { 0 } else { 1 })
        })
        .collect();
    let imps: Vec<String> = imports
        .iter()
        .map(|(n, k, a)| format!("{{\"name\": \"{n}\", \"address\": \"0x0\", \"kind\": \"{k}\", \"args\": {{{a}}}, \"descriptor\": \"\", \"external\": true}}"))
        .collect();
    let mut calls = Vec::new();
    for d in disassemble(bin).into_iter().filter(|d| syms.contains_key(d.func.as_str()) || d.func.ends_with(".cold")) {
        let caller = d.func.split('.').next().unwrap_or("").to_string(); // via_ptr.cold is via_ptr's
        let Some(t) = d.target() else {
            // `call *%rax` in via_ptr: g_alloc, i.e. xmalloc
            if (caller.starts_with("via_ptr") || caller.starts_with("ptw")) && d.operand.starts_with('*') {
                calls.push((d.at, d.next, caller, "xmalloc".to_string(), "indirect", d.op == "jmp"));
            }
            continue;
        };
        let base = t.split('@').next().unwrap().split('+').next().unwrap().to_string();
        let via = if d.operand.starts_with('*') {
            if t == "g_alloc" {
                calls.push((d.at, d.next, caller, "xmalloc".to_string(), "indirect", d.op == "jmp"));
                continue;
            }
            "got"
        } else if t.ends_with("@plt") {
            "plt"
        } else {
            "direct"
        };
        let listed = if via == "direct" { is_local(&base) && is_local(&caller) && !t.contains('+') } else { imports.iter().any(|i| i.0 == base) };
        if listed {
            calls.push((d.at, d.next, caller, base, via, d.op == "jmp"));
        }
    }
    let calls: Vec<String> = calls
        .into_iter()
        .map(|(at, ret, caller, callee, via, tail)| {
            let pt = pass_through.contains(&(caller.as_str(), callee.as_str()));
            format!("{{\"at\": \"{at:#x}\", \"ret\": \"{ret:#x}\", \"caller\": \"{caller}\", \"callee\": \"{callee}\", \"via\": \"{via}\", \"tail\": {tail}, \"pass_through\": {pt}}}")
        })
        .collect();
    format!("{{\"binary\": \"sites\", \"functions\": [{}], \"imports\": [{}], \"calls\": [{}]}}", fns.join(",\n"), imps.join(",\n"), calls.join(",\n"))
}

/// Hook ABI v3 call sites, checked in OUT's own code: pass-through direct calls go to
/// the callee's pad, classified calls of interposed imports to mark stubs (PLT and
/// `-fno-plt` GOT sites), classified calls of other imports to import trampolines;
/// pass-through calls (also the indirect one) make no hooked call at all.
#[test]
fn call_sites_v3() {
    let d = scratch("sites");
    let variants: [(&str, &[&str]); 5] = [
        ("O0", &["-O0", "-g"]),
        ("O2", &["-O2", "-g"]),
        ("O2noplt", &["-O2", "-g", "-fno-plt"]),
        ("O2cet", &["-O2", "-g", "-fcf-protection=full"]),
        ("O2nopie", &["-O2", "-g", "-fno-pie", "-no-pie"]),
    ];
    for (v, flags) in variants {
        let bin = compile(&d, &format!("sites.{v}"), flags, &["sites.c"]);
        let out_dir = d.join(format!("out-{v}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let json = sites_classification(&bin);
        let rw = rewrite(&bin, &json, &out_dir, &["--entry-hooks"]);
        for n in ["xmalloc", "xmalloc_hdr", "wrap_tail", "via_ptr", "via_ptr_tail"] {
            assert!(rw.stdout.contains(&format!("hooked {n} at ")), "{v}: {n} not hooked:\n{}", rw.stdout);
        }
        assert!(!rw.stdout.contains("hooked make_node"), "{v}: a ctor hooked without --ctors:\n{}", rw.stdout);
        for imp in ["malloc", "strdup"] {
            assert!(rw.stdout.lines().any(|l| l.starts_with(&format!("marked {imp} (mark stub {imp}.allocsite_mark"))), "{v}: {imp} not marked:\n{}", rw.stdout);
        }
        let getline = if v == "O0" { "getline" } else { "__getdelim" };
        for imp in [getline, "asprintf"] {
            assert!(rw.stdout.lines().any(|l| l.starts_with(&format!("hooked import {imp} at "))), "{v}: no import trampoline for {imp}:\n{}", rw.stdout);
        }
        assert!(rw.stdout.lines().any(|l| l.starts_with("call sites: ")), "{}", rw.stdout);

        // OUT's code: where each call site of the original now goes.
        let orig: Vec<Disas> = disassemble(&bin);
        let new: BTreeMap<u64, Disas> = disassemble(&rw.out).into_iter().map(|x| (x.at, x)).collect();
        let new_syms = functions(&rw.out);
        let name_at = |a: u64| new_syms.iter().find(|(_, &(s, _))| s == a).map(|(n, _)| n.clone()).unwrap_or_else(|| format!("{a:#x}"));
        let goes_to = |at: u64| -> String {
            // a GOT site becomes `nop; call rel32`: the call is at the end
            let x = new.range(at..at + 8).map(|(_, x)| x).find(|x| x.op == "call" || x.op == "jmp").unwrap_or_else(|| panic!("{v}: no call at {at:#x} in OUT"));
            x.branch_target().map(name_at).unwrap_or_else(|| x.operand.clone())
        };
        let mut seen = BTreeMap::<String, usize>::new();
        for o in &orig {
            let Some(t) = o.target() else { continue };
            let base = t.split('@').next().unwrap().to_string();
            let caller = o.func.split('.').next().unwrap();
            let in_own_pad = |f: &str| {
                let (a, _) = functions(&bin)[f];
                o.at < a + 16
            };
            match (caller, base.as_str()) {
                ("xmalloc_hdr", "xmalloc") => {
                    assert_eq!(goes_to(o.at), "xmalloc.allocsite_pad", "{v}: pass-through call at {:#x}", o.at);
                    *seen.entry("pt".into()).or_default() += 1;
                }
                ("wrap_tail", "xmalloc") if !in_own_pad("wrap_tail") => {
                    assert_eq!(goes_to(o.at), "xmalloc.allocsite_pad", "{v}: pass-through call at {:#x}", o.at);
                    *seen.entry("pt".into()).or_default() += 1;
                }
                ("main", "malloc" | "strdup") => {
                    assert_eq!(goes_to(o.at), format!("{base}.allocsite_mark"), "{v}: classified call at {:#x}", o.at);
                    *seen.entry("mark".into()).or_default() += 1;
                }
                ("main", "getline" | "__getdelim" | "asprintf") => {
                    assert_eq!(goes_to(o.at), format!("{base}.allocsite_entry"), "{v}: classified call at {:#x}", o.at);
                    *seen.entry("import".into()).or_default() += 1;
                }
                ("make_node", "xmalloc") => assert_eq!(goes_to(o.at), "xmalloc", "{v}: classified call at {:#x}", o.at),
                // (a call among a launch pad's displaced instructions is overwritten)
                ("xmalloc", "malloc") | ("main", "free") if new.contains_key(&o.at) => {
                    assert_eq!(new[&o.at].operand, o.operand, "{v}: {:#x} retargeted", o.at)
                }
                _ => {}
            }
        }
        assert_eq!(seen.get("mark"), Some(&2), "{v}: {seen:?}");
        assert_eq!(seen.get("import"), Some(&2), "{v}: {seen:?}");
        // wrap_tail's whole body is its launch pad at -O2: its jmp moved with the pad,
        // retargeted there.
        let wt_pad = new_syms.get("wrap_tail.allocsite_pad").expect("wrap_tail.allocsite_pad");
        let pad_jmps: Vec<String> = new.range(wt_pad.0..wt_pad.0 + wt_pad.1).filter_map(|(_, x)| x.branch_target()).map(name_at).collect();
        if v != "O0" {
            assert!(pad_jmps.iter().any(|t| t == "xmalloc.allocsite_pad"), "{v}: wrap_tail's pad goes to {pad_jmps:?}");
        }

        // Behaviour; the hooked calls the runtime sees: the pass-through ones none at
        // all (direct: retargeted; indirect: the trampoline's check), the classified
        // call of xmalloc in make_node once per node, the import trampolines per call.
        let hooked_calls = |rw: &Rewrite| {
            let traces = check_program(&bin, rw, &[&[]], true);
            let ev = events(&traces[0]);
            let count = |f: &str| ev.iter().filter(|e| e.0 == "enter" && e.1 == f).count();
            assert_eq!(count("xmalloc"), 10, "{v}: {}", traces[0]);
            assert_eq!(count("xmalloc_hdr"), 10, "{v}");
            assert_eq!(count("via_ptr"), 10, "{v}");
            assert_eq!(count("via_ptr_tail"), 10, "{v}");
            assert_eq!((0..9).map(|k| count(&format!("ptw{k}"))).sum::<usize>(), 10, "{v}");
            assert_eq!(count("wrap_tail"), 10, "{v}");
            assert_eq!(count("asprintf"), 1, "{v}: {}", traces[0]);
            assert_eq!(count(getline), 3, "{v}: {}", traces[0]);
            assert_eq!(count("make_node"), 0, "{v}");
        };
        hooked_calls(&rw);
        check_sites_report(v, &rw.out, getline, false);

        // The default (caller side): a function reached only by direct calls from
        // outside it keeps its entry and is instrumented at its call sites; the same
        // hooked calls and the same report as with `--entry-hooks`.
        let cs_dir = d.join(format!("caller-{v}"));
        std::fs::create_dir_all(&cs_dir).unwrap();
        let cs = rewrite(&bin, &json, &cs_dir, &[]);
        assert!(cs.stdout.lines().any(|l| l.starts_with("hooked wrap_tail at ") && l.contains("(caller side: ")), "{v}: {}", cs.stdout);
        assert!(cs.stdout.lines().any(|l| l.starts_with("hooked xmalloc at ") && l.contains("(pad ")), "{v}: address taken, entry patched: {}", cs.stdout);
        hooked_calls(&cs);
        check_sites_report(v, &cs.out, getline, false);
        // The same with the analysis's own classification.
        let an_dir = d.join(format!("analysis-{v}"));
        std::fs::create_dir_all(&an_dir).unwrap();
        let an = an_dir.join(bin.file_name().unwrap());
        let log = ok(Command::new(allocsite()).arg("rewrite").arg(&bin).arg("-o").arg(&an).arg("--runtime").arg(runtime()));
        assert!(log.contains("marked strdup") && log.contains("marked malloc") && log.contains("hooked import asprintf"), "{v}: analysis:\n{log}");
        check_sites_report(v, &an, getline, false);

        // --ctors: make_node hooked too, kind ctor.
        let ctor_dir = d.join(format!("ctors-{v}"));
        std::fs::create_dir_all(&ctor_dir).unwrap();
        let rw = rewrite(&bin, &json, &ctor_dir, &["--ctors"]);
        assert!(rw.stdout.contains("hooked make_node at "), "{v}: --ctors:\n{}", rw.stdout);
        let traces = check_program(&bin, &rw, &[&[]], true);
        assert_eq!(events(&traces[0]).iter().filter(|e| e.0 == "enter" && e.1 == "make_node").count(), 10, "{v}");
        check_sites_report(v, &rw.out, getline, true);
    }
}

/// What gdb needs to step through the trampolines of caller-side functions, and what
/// must not change for the loader (README "gdb and call-site trampolines"): per local
/// function f in call-site mode (caller side, or no room for a launch pad), one undefined `FUNC` `.dynsym` entry `f.allocsite_callee` whose value is
/// the address of `f.allocsite_entry` (a size-0 local) in `.plt.allocsite`, below the GNU
/// hash's `symoffset` and named by no relocation, and a global size-0 `.symtab` function
/// of that name at f's entry. PIE, non-PIE (the analysis's classification) and a shared
/// library; the programs run with `LD_BIND_NOW=1`.
#[test]
fn stub_symbols_for_gdb() {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
    let d = scratch("stubs");
    let tb = support::testbins_out();
    for name in ["wrappers.O0", "wrappers.O2nopie", "cxxalloc.O2"] {
        let out = d.join(name);
        let log = ok(Command::new(allocsite()).arg("rewrite").arg(tb.join(name)).arg("-o").arg(&out).arg("--runtime").arg(runtime()));
        // (also the functions in call-site mode for want of a launch pad)
        let caller_side: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("(caller side: ") || l.contains("(call sites: "))
            .filter_map(|l| l.strip_prefix("hooked ")?.split(" at ").next())
            .collect();
        assert!(!caller_side.is_empty(), "{name}: {log}");
        let data = std::fs::read(&out).unwrap();
        let f = object::File::parse(&*data).unwrap();
        let plt = f.section_by_name(".plt.allocsite").expect(".plt.allocsite");
        let (lo, hi) = (plt.address(), plt.address() + plt.size());
        let gnu_hash = f.section_by_name(".gnu.hash").expect(".gnu.hash").data().unwrap().to_vec();
        let symoffset = u32::from_le_bytes(gnu_hash[4..8].try_into().unwrap()) as usize;
        let referenced: Vec<usize> = f
            .dynamic_relocations()
            .into_iter()
            .flatten()
            .filter_map(|(_, r)| match r.target() {
                RelocationTarget::Symbol(i) => Some(i.0),
                _ => None,
            })
            .collect();
        let stubs: Vec<_> = f.dynamic_symbols().filter(|s| s.name().is_ok_and(|n| n.ends_with(".allocsite_callee"))).collect();
        assert_eq!(stubs.len(), caller_side.len(), "{name}: {log}");
        let syms: Vec<_> = f.symbols().collect();
        for s in &stubs {
            let n = s.name().unwrap();
            let fname = n.strip_suffix(".allocsite_callee").unwrap();
            assert!(caller_side.contains(&fname), "{name}: {n}");
            assert!(s.is_undefined() && s.kind() == object::SymbolKind::Text && s.address() >= lo && s.address() < hi, "{name}: {n} {s:?}");
            assert!(s.index().0 < symoffset && !referenced.contains(&s.index().0), "{name}: {n} is hashed or relocated");
            let entry = syms.iter().find(|t| t.name() == Ok(&format!("{fname}.allocsite_entry")) && t.address() == s.address()).unwrap_or_else(|| panic!("{name}: no {fname}.allocsite_entry at the stub"));
            assert!(entry.size() == 0 && !entry.is_global(), "{name}: {entry:?}");
            let callee = syms.iter().find(|t| t.name() == Ok(n)).unwrap_or_else(|| panic!("{name}: no .symtab {n}"));
            let orig = syms.iter().find(|t| t.name() == Ok(fname) && t.size() > 0).unwrap_or_else(|| panic!("{name}: no {fname}"));
            assert!(callee.is_global() && callee.size() == 0 && callee.kind() == object::SymbolKind::Text && callee.address() == orig.address(), "{name}: {callee:?} {orig:?}");
        }
        let (o1, s1) = (ok(&mut Command::new(tb.join(name))), ok(Command::new(&out).env("LD_BIND_NOW", "1")));
        assert_eq!(o1, s1, "{name}: LD_BIND_NOW=1");
    }
    // A shared library: its static lib_xmalloc (tests/c/steplib.c) is caller side.
    let lib = compile(&d, "libsteplib.so", &["-O2", "-g", "-shared", "-fPIC"], &["steplib.c"]);
    let out = d.join("new").join("libsteplib.so");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let log = ok(Command::new(allocsite()).arg("rewrite").arg(&lib).arg("-o").arg(&out).arg("--runtime").arg(runtime()));
    assert!(log.contains("hooked lib_xmalloc at ") && log.contains("(caller side: "), "{log}");
    let data = std::fs::read(&out).unwrap();
    let f = object::File::parse(&*data).unwrap();
    assert!(f.dynamic_symbols().any(|s| s.name() == Ok("lib_xmalloc.allocsite_callee") && s.is_undefined()), "{log}");
    assert!(f.symbols().any(|s| s.name() == Ok("lib_xmalloc.allocsite_callee") && s.is_global() && !s.is_undefined()), "{log}");
    require("eu-elflint");
    assert_eq!(elflint(&lib), elflint(&out));
}

/// Hook ABI v4: the trampoline of a free-kind function goes straight to its body
/// (nothing recorded) unless heap checks or the trace need its call; an allocation
/// function's call is always recorded. Seen from inside the wrappers (release.c), at
/// -O0 and -O2, caller side (the default) and `--entry-hooks`.
#[test]
fn free_kind_fast_path() {
    let d = scratch("release");
    for (v, flags) in [("O0", &["-O0", "-g"][..]), ("O2", &["-O2", "-g"][..])] {
        let bin = compile(&d, &format!("release.{v}"), flags, &["release.c"]);
        let orig = ok(&mut Command::new(&bin));
        assert_eq!(orig.trim(), "runtime absent, alloc calls recorded 0, release calls recorded 0", "{v}");
        for mode in [&[][..], &["--entry-hooks"][..]] {
            let out_dir = d.join(format!("out-{v}-{}", mode.len()));
            std::fs::create_dir_all(&out_dir).unwrap();
            let out = out_dir.join("release");
            let log = ok(Command::new(allocsite()).arg("rewrite").arg(&bin).arg("-o").arg(&out).arg("--runtime").arg(runtime()).args(mode));
            for f in ["my_alloc", "my_release"] {
                assert!(log.contains(&format!("hooked {f} at ")), "{v} {mode:?}: {log}");
            }
            let with = |env: &[(&str, &str)]| {
                let mut c = Command::new(&out);
                c.env_remove("ALLOCSITE_CHECK").env_remove("ALLOCSITE_TRACE");
                for (k, val) in env {
                    c.env(k, val);
                }
                ok(&mut c).trim().to_string()
            };
            assert_eq!(with(&[]), "runtime loaded, alloc calls recorded 10, release calls recorded 0", "{v} {mode:?}");
            assert_eq!(with(&[("ALLOCSITE_CHECK", "double-free")]), "runtime loaded, alloc calls recorded 10, release calls recorded 10", "{v} {mode:?}");
            let trace = out_dir.join("trace.txt");
            assert_eq!(with(&[("ALLOCSITE_TRACE", trace.to_str().unwrap())]), "runtime loaded, alloc calls recorded 10, release calls recorded 10", "{v} {mode:?}");
            let t = std::fs::read_to_string(&trace).unwrap();
            assert_eq!(t.lines().filter(|l| l.starts_with("enter ") && l.contains(" fn=my_release ")).count(), 10, "{v} {mode:?}: {t}");
        }
    }
}

/// The report of a rewritten sites.c names the classified calls, never a pass-through
/// one: `(symbol's function, line, allocator)` per innermost site in sites.c, and the
/// node's outermost site (main's call of make_node with `--ctors`, else make_node's
/// call of xmalloc).
fn check_sites_report(v: &str, out: &Path, getline: &str, ctors: bool) {
    let report = out.with_extension("report.json");
    let (_, _, st, _) = run_traced(out, &[], None, Some(&report));
    assert_eq!(st, Some(0));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mut rows = Vec::new();
    for s in r["sites"].as_array().unwrap() {
        let line = s["line"].as_str().unwrap_or("");
        if !line.starts_with("sites.c:") && !line.starts_with("stdio.h:") {
            continue;
        }
        let func = s["symbol"].as_str().unwrap().split('+').next().unwrap().to_string();
        let outer: Vec<String> = s["outermost"].as_array().unwrap().iter().map(|o| o["symbol"].as_str().unwrap().split('+').next().unwrap().to_string()).collect();
        rows.push((func, line.to_string(), s["allocator"].as_str().unwrap().to_string(), s["calls"].as_u64().unwrap(), outer));
    }
    let find = |alloc: &str| rows.iter().find(|r| r.2 == alloc).unwrap_or_else(|| panic!("{v}: no site for {alloc}: {rows:?}"));
    for (alloc, calls) in [("malloc", 10), ("strdup", 10), ("xmalloc_hdr", 10), ("wrap_tail", 10), ("via_ptr", 10), ("via_ptr_tail", 10), ("asprintf", 2)] {
        let r = find(alloc);
        assert_eq!((r.0.as_str(), r.3), ("main", calls), "{v}: {alloc}: {rows:?}");
    }
    assert_eq!(find(getline).0, "main", "{v}: {rows:?}");
    let node = find("xmalloc");
    assert_eq!((node.0.as_str(), node.3), ("make_node", 10), "{v}: {rows:?}");
    assert_eq!(node.4, vec![if ctors { "main" } else { "make_node" }.to_string()], "{v}: node's outermost site: {rows:?}");
    for r in &rows {
        assert!(!["xmalloc", "xmalloc_hdr", "wrap_tail", "via_ptr", "via_ptr_tail"].contains(&r.0.as_str()) && !r.0.starts_with("ptw"), "{v}: a site inside a pass-through call: {rows:?}");
    }
}

/// Testbins rewritten with the analysis's own classification (its calls: pass-through
/// bypasses, mark stubs for the classified calls of malloc, operator new …): same
/// behaviour, traced and untraced, elflint unchanged; CET and -fno-plt included.
#[test]
fn testbins_analysed_call_sites() {
    let tb = support::testbins_out();
    let d = scratch("testbins-analysed");
    for (file, args) in [
        ("wrappers.O2", &[&[][..], &["oom"][..]][..]),
        ("wrappers.O2noplt", &[&[][..], &["die"][..]][..]),
        ("wrappers.O2cet", &[&[][..], &["abort"][..]][..]),
        ("nested.O2", &[&[][..]][..]),
        ("cxxalloc.O2", &[&[][..]][..]),
        ("negatives.O0", &[&[][..]][..]),
        ("fnptr.O2", &[&[][..]][..]),
        ("sizes.O0", &[&[][..]][..]),
    ] {
        let input = tb.join(file);
        let out_dir = d.join(file);
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join(file);
        let stdout = ok(Command::new(allocsite()).arg("rewrite").arg(&input).arg("-o").arg(&out).arg("--runtime").arg(runtime()));
        assert!(stdout.lines().any(|l| l.starts_with("call sites: ")), "{file}: {stdout}");
        if matches!(file, "cxxalloc.O2" | "negatives.O0" | "sizes.O0") {
            assert!(stdout.lines().any(|l| l.starts_with("marked ")), "{file}: no mark stub:\n{stdout}");
        }
        let rw = Rewrite { out, stdout };
        let balanced = file != "cxxalloc.O2";
        check_program(&input, &rw, args, balanced);
    }
}

/// A program calling an unmodified library's allocation functions, rewritten with the
/// library's summary (`--with`): each classified call goes to an import trampoline
/// (call-site mode through the PLT, descriptor flag IMPORT), so the report puts the
/// library's chunks at the program's calls, named after the library function.
#[test]
fn import_trampolines_for_a_dependency() {
    let d = scratch("with");
    let lib = compile(&d, "libown.so", &["-O2", "-g", "-shared", "-fPIC"], &["lib.c"]);
    ok(Command::new("sh").arg("-c").arg(format!("cd {} && gcc -O2 -g -o user {}/rewriter/tests/c/libuser.c -L. -lown -Wl,-rpath,'$ORIGIN'", d.display(), root().display())));
    let user = d.join("user");
    let summary = d.join("libown.json");
    ok(Command::new(allocsite()).arg("analyze").arg(&lib).args(["--format", "json", "-o"]).arg(&summary));
    let out_dir = d.join("new");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::copy(&lib, out_dir.join("libown.so")).unwrap();
    let out = out_dir.join("user");
    let stdout = ok(Command::new(allocsite()).arg("rewrite").arg(&user).arg("-o").arg(&out).arg("--with").arg(&summary).arg("--runtime").arg(runtime()));
    for f in ["lib_strdup", "lib_alloc"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("hooked import {f} at ")) && l.contains("1 classified call site(s)")), "{stdout}");
    }
    let rw = Rewrite { out, stdout };
    let traces = check_program(&user, &rw, &[&[]], true);
    let ev = events(&traces[0]);
    assert_eq!(ev.iter().filter(|e| e.0 == "enter" && e.1 == "lib_strdup" && e.2 == "user").count(), 20, "{}", traces[0]);
    assert_eq!(ev.iter().filter(|e| e.0 == "enter" && e.1 == "lib_alloc" && e.2 == "user").count(), 1, "{}", traces[0]);
    let report = out_dir.join("r.json");
    run_traced(&rw.out, &[], None, Some(&report));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let row = |alloc: &str| r["sites"].as_array().unwrap().iter().find(|s| s["allocator"] == alloc).cloned().unwrap_or_else(|| panic!("no {alloc} site: {r}"));
    let (s, a) = (row("lib_strdup"), row("lib_alloc"));
    assert!(s["symbol"].as_str().unwrap().starts_with("main+") && s["calls"] == 20 && s["line"].as_str().unwrap().starts_with("libuser.c:"), "{s}");
    assert!(a["symbol"].as_str().unwrap().starts_with("main+") && a["calls"] == 1 && a["bytes"] == 100, "{a}");
}
