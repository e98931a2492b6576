//! End-to-end tests of the rewriter's per-call-site work (hook ABI v3/v4): which calls go
//! to pads, mark stubs, import trampolines and call-site trampolines, checked in OUT's
//! code and through the reports; the `.dynsym` stub symbols gdb steps through; the
//! free-kind fast path. Helpers shared with `tests/rewrite.rs` are in `tests/rewriting/`.

mod rewriting;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rewriting::*;
use support::{functions, ok, root};

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
    each_build_and_plan("release", &[], &["my_alloc", "my_release"], |v, mode, orig, out, out_dir| {
        assert_eq!(orig.trim(), "runtime absent, alloc calls recorded 0, release calls recorded 0", "{v}");
        let with = |env: &[(&str, &str)]| {
            let mut c = Command::new(out);
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
    });
}

/// Build tests/c/NAME.c at -O0 and -O2 and rewrite each with both hook plans (caller
/// side, the default, and `--entry-hooks`) plus the `extra` rewrite options; every
/// function of `hooked` must be in the rewrite log. Then `body(variant, plan options,
/// the original's output, the rewritten program, its directory)`.
fn each_build_and_plan(name: &str, extra: &[&str], hooked: &[&str], mut body: impl FnMut(&str, &[&str], &str, &Path, &Path)) {
    let d = scratch(name);
    for (v, flags) in [("O0", &["-O0", "-g"][..]), ("O2", &["-O2", "-g"][..])] {
        let bin = compile(&d, &format!("{name}.{v}"), flags, &[&format!("{name}.c")]);
        let orig = ok(&mut Command::new(&bin));
        for mode in [&[][..], &["--entry-hooks"][..]] {
            let out_dir = d.join(format!("out-{v}-{}", mode.len()));
            std::fs::create_dir_all(&out_dir).unwrap();
            let out = out_dir.join(name);
            let log = ok(Command::new(allocsite()).arg("rewrite").arg(&bin).arg("-o").arg(&out).arg("--runtime").arg(runtime()).args(extra).args(mode));
            for f in hooked {
                assert!(log.contains(&format!("hooked {f} at ")), "{v} {mode:?}: {log}");
            }
            body(v, mode, &orig, &out, &out_dir);
        }
    }
}

/// A trampoline's exit after a longjmp inside its call (jumps.c): the inner hooked
/// call's entry is left above the outer one's, so the depth at the outer exit is not
/// the one its frame holds; the runtime's exit hook must take both off (nothing active
/// afterwards). -O0 and -O2, caller side (the default) and `--entry-hooks`, traced too.
#[test]
fn exit_after_longjmp_inside() {
    each_build_and_plan("jumps", &[], &["inner_alloc", "outer_alloc"], |v, mode, orig, out, out_dir| {
        assert_eq!(orig.trim(), "runtime absent, recorded inside outer 0, active after outer returned 0", "{v}");
        let trace = out_dir.join("trace.txt");
        for env in [None, Some(trace.to_str().unwrap())] {
            let mut c = Command::new(out);
            c.env_remove("ALLOCSITE_CHECK").env_remove("ALLOCSITE_TRACE");
            if let Some(t) = env {
                c.env("ALLOCSITE_TRACE", t);
            }
            assert_eq!(ok(&mut c).trim(), "runtime loaded, recorded inside outer 5, active after outer returned 0", "{v} {mode:?} trace {env:?}");
        }
    });
}

/// Registers a trampoline uses without saving them (`clobber.rs`): none for a leaf
/// (`bump`: callers compiled with -fipa-ra may keep values in the registers it leaves
/// alone), r11 before and rcx/r11 after the call for a function that reaches a PLT
/// stub (`wrap2` → `wrap` → malloc). clobbers.c at -O2 and -O0, caller side and
/// `--entry-hooks`: the same output as the original, and each trampoline's code.
#[test]
fn trampolines_save_what_callers_may_keep() {
    each_build_and_plan("clobbers", &["--alloc-fns", "bump(Z)p wrap(Z)p wrap2(Z)p"], &["bump", "wrap2"], |v, mode, orig, out, _| {
        assert_eq!(ok(Command::new(out).env_remove("ALLOCSITE_TRACE")), orig, "{v} {mode:?}");
        // the trampoline's code, from its symbol to the next one
        let dis = ok(Command::new("objdump").args(["-d", "--no-show-raw-insn", "-j", ".allocsite.text", "-j", ".plt.allocsite"]).arg(out));
        let code = |f: &str| -> String {
            let head = format!("<{f}.allocsite_entry>:");
            let start = dis.find(&head).unwrap_or_else(|| panic!("{v} {mode:?}: no {head} in\n{dis}"));
            let rest = &dis[start + head.len()..];
            rest[..rest.find(">:\n").unwrap_or(rest.len())].to_string()
        };
        let (leaf, wrapper) = (code("bump"), code("wrap2"));
        // (the out-of-line calls of the runtime's hooks push r11 in any case)
        let first_two = |c: &str| c.lines().filter(|l| l.contains(':')).take(2).collect::<Vec<_>>().join("\n");
        let after_call = |c: &str| c.split("cs add").nth(1).map(|t| t.lines().nth(1).unwrap_or("").to_string()).unwrap_or_default();
        assert!(first_two(&leaf).contains("push   %r11"), "{v} {mode:?}: bump's trampoline must save r11:\n{leaf}");
        assert!(after_call(&leaf).contains("push   %rcx"), "{v} {mode:?}: bump's exit must save rcx:\n{leaf}");
        assert!(!first_two(&wrapper).contains("push   %r11"), "{v} {mode:?}: wrap2's trampoline need not save r11:\n{wrapper}");
        assert!(!after_call(&wrapper).contains("push"), "{v} {mode:?}: wrap2's exit need not save anything:\n{wrapper}");
    });
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
