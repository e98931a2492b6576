//! The classification's calls (pass-through versus classified), imported
//! allocation functions, constructors and dependency summaries (`--with`), on the
//! real testbins at the variants where the code has the shape under test.

mod support;

use allocsite_analysis::classification::{AllocCall, CallVia};
use allocsite_analysis::{analyze_path, Classification, Kind, Options};
use std::path::PathBuf;

fn analyze(name: &str) -> Classification {
    analyze_path(&support::testbin(name), &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The calls from `caller` to a callee named `callee` (or having it among the
/// `|`-joined candidates of an indirect call).
fn calls<'c>(c: &'c Classification, caller: &str, callee: &str) -> Vec<&'c AllocCall> {
    c.calls.iter().filter(|k| k.caller == caller && k.callee.split('|').any(|n| n == callee)).collect()
}

/// Exactly one call from `caller` to `callee`, with that pass-through flag.
fn one(c: &Classification, caller: &str, callee: &str, pass_through: bool) -> AllocCall {
    let v = calls(c, caller, callee);
    assert_eq!(v.len(), 1, "{}: {caller} → {callee}: {v:?}", c.binary);
    assert_eq!(v[0].pass_through, pass_through, "{}: {caller} → {callee}: {:?}", c.binary, v[0]);
    assert!(!v[0].why.is_empty());
    assert!(v[0].ret.0 > v[0].at.0, "{v:?}");
    v[0].clone()
}

#[test]
fn nested_2d_allocator_forwards_elemsize_and_classifies_the_row_pointers() {
    for v in ["O0", "O2", "O2nopie"] {
        let c = analyze(&format!("nested.{v}"));
        let data = one(&c, "__ckd_calloc_2d__", "__ckd_calloc__", true);
        assert_eq!(data.via, CallVia::Direct);
        assert_eq!(data.why, "arg2 → __ckd_calloc__ size");
        let rows = one(&c, "__ckd_calloc_2d__", "__ckd_malloc__", false);
        assert!(rows.why.contains("not __ckd_calloc_2d__'s size"), "{rows:?}");
        one(&c, "__ckd_calloc__", "calloc", true);
        one(&c, "__ckd_malloc__", "malloc", true);
        // The 3-D allocator: the data forwards elemsize; both pointer levels are classified.
        assert!(calls(&c, "__ckd_calloc_3d__", "__ckd_calloc__").iter().all(|k| k.pass_through));
        let ptrs = calls(&c, "__ckd_calloc_3d__", "__ckd_malloc__");
        assert_eq!(ptrs.len(), 2, "{ptrs:?}");
        assert!(ptrs.iter().all(|k| !k.pass_through));
        // main is no allocation function: its calls of local wrappers are not listed.
        assert!(c.calls.iter().all(|k| k.caller != "main" || k.via == CallVia::Plt), "{}", c.binary);
    }
}

#[test]
fn wrapper_chains_pass_through() {
    for v in ["O0", "O2", "O2nopie", "O2noplt", "O2cet"] {
        let c = analyze(&format!("wrappers.{v}"));
        let m = one(&c, "xmalloc", "malloc", true);
        assert_eq!(m.why, "arg0 → malloc size");
        let via = if v == "O2noplt" { CallVia::Got } else { CallVia::Plt };
        assert_eq!(m.via, via, "{v}");
        one(&c, "buf_alloc", "mem_alloc", true);
        one(&c, "mem_alloc", "xmalloc", true);
        let a16 = one(&c, "alloc16", "malloc", true);
        assert_eq!(a16.tail, v != "O0", "{v}: alloc16 is `shl $4,%rdi; jmp malloc` at -O2");
        one(&c, "xcalloc", "calloc", true);
        one(&c, "xrealloc", "realloc", true);
        assert!(calls(&c, "xfree", "free").iter().all(|k| k.pass_through));
        // Each import called appears once, external, at the stub its calls reach.
        let malloc: Vec<_> = c.imports.iter().filter(|f| f.name == "malloc").collect();
        assert_eq!(malloc.len(), 1, "{v}");
        assert!(malloc[0].external && malloc[0].kind == Kind::Alloc);
        if v == "O2noplt" {
            assert_eq!(malloc[0].address.0, 0, "GOT-only calls: no stub");
        } else {
            assert_ne!(malloc[0].address.0, 0, "{v}");
        }
        assert_eq!(malloc[0].descriptor, "malloc(Z)p");
        let mut ats: Vec<u64> = c.calls.iter().map(|k| k.at.0).collect();
        let n = ats.len();
        ats.dedup();
        assert_eq!(ats.len(), n, "calls sorted by address, each once");
    }
}

#[test]
fn pointer_calls_pass_through_to_every_candidate() {
    for v in ["O0", "O2"] {
        let c = analyze(&format!("fnptr.{v}"));
        // luaM_malloc_(L, size, tag) → g->frealloc(ud, NULL, tag, size)
        let lua: Vec<_> = c.calls.iter().filter(|k| k.caller == "luaM_malloc_").collect();
        assert!(!lua.is_empty(), "{v}");
        for k in &lua {
            assert_eq!(k.via, CallVia::Indirect, "{k:?}");
            assert!(k.callee.split('|').any(|n| n == "l_alloc" || n == "count_alloc"), "{k:?}");
            assert!(k.pass_through, "{k:?}");
        }
        // zs_alloc(strm, items, size) → strm->zalloc(opaque, items, size)
        let z = calls(&c, "zs_alloc", "zcalloc");
        assert!(!z.is_empty() && z.iter().all(|k| k.pass_through && k.via == CallVia::Indirect), "{v}: {z:?}");
        // A free through a realloc with size 0 forwards the pointer.
        assert!(c.calls.iter().filter(|k| k.caller == "luaM_free_").all(|k| k.pass_through && k.why.ends_with("ptr")));
    }
}

#[test]
fn pools_classify_what_they_size_themselves() {
    let c = analyze("pool.O0");
    one(&c, "pool_alloc_array", "pool_alloc", true);
    let obj = one(&c, "obj_get", "pool_alloc", false);
    assert!(obj.why.contains("memory reached through arg0"), "{obj:?}");
    one(&c, "pool_new", "malloc", true);
    // A strdup by hand into the pool: pool_alloc(p, strlen(s) + 1) forwards s's length.
    let dup = one(&c, "pool_strdup", "pool_alloc", true);
    assert_eq!(dup.why, "strlen(arg1) → pool_alloc size");
    one(&c, "pool_destroy", "free", true);
}

#[test]
fn constructors_are_their_own_kind_and_never_callees() {
    for v in ["O0", "O2", "O2nopie"] {
        let c = analyze(&format!("cxxalloc.{v}"));
        let node = c.functions.iter().find(|f| f.name == "_Z9make_nodei").expect("make_node");
        assert_eq!(node.kind, Kind::Ctor);
        assert!(node.evidence.iter().any(|e| e.starts_with("fixed size 16 inside")), "{:?}", node.evidence);
        let inner = one(&c, "_Z9make_nodei", "_ZN4NodenwEm", false);
        assert_eq!(inner.why, "_Z9make_nodei is a constructor");
        assert!(c.calls.iter().all(|k| !k.callee.split('|').any(|n| n == "_Z9make_nodei" || n == "_Z10make_shapeid")));
        let text = allocsite_analysis::output::text(&c);
        let ctors_at = text.find("constructor(s)").expect("a constructor section");
        assert!(text.find("_Z9make_nodei").unwrap() > ctors_at, "{text}");
        assert!(text.find("_ZN4NodenwEm").unwrap() < ctors_at, "{text}");
        let la = allocsite_analysis::output::liballocs(&c);
        assert!(la.contains("LIBALLOCS_CTOR_FNS=\"_Z9make_nodei(i)p _Z10make_shapeid(ii)p\""), "{la}");
        assert!(!la.lines().next().unwrap_or("").contains("make_node"), "{la}");
    }
}

#[test]
fn strdup_like_wrappers_forward_and_literal_copies_are_constructors() {
    for v in ["O0", "O2", "O2nopie"] {
        let c = analyze(&format!("sizes.{v}"));
        let dup = c.functions.iter().find(|f| f.name == "dup_name").expect("dup_name");
        assert_eq!((dup.kind, dup.args.len()), (Kind::Alloc, 0), "sized by the string: no role, no ctor");
        let k = one(&c, "dup_name", "strdup", true);
        assert_eq!(k.why, "arg0 → strdup string");
        let def = c.functions.iter().find(|f| f.name == "default_name").expect("default_name");
        assert_eq!(def.kind, Kind::Ctor);
        assert!(def.evidence.iter().any(|e| e.starts_with("fixed size 8 inside")), "{:?}", def.evidence);
        one(&c, "default_name", "dup_name", false);
        // A size read through the argument is not fixed either.
        let spec = c.functions.iter().find(|f| f.name == "spec_alloc").expect("spec_alloc");
        assert_eq!(spec.kind, Kind::Alloc);
        let strdup = c.imports.iter().find(|f| f.name == "strdup").expect("strdup import");
        assert!(strdup.external && strdup.args.is_empty());
    }
}

/// A copy of `slabuser.<v>` alone in a fresh directory: its DT_RUNPATH `$ORIGIN`
/// finds no library there.
fn lonely_slabuser(v: &str) -> PathBuf {
    let dir = support::out_dir().join(format!("calls-test-{v}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("slabuser");
    std::fs::copy(support::testbin(&format!("slabuser.{v}")), &bin).unwrap();
    bin
}

fn slab_imports(c: &Classification) -> Vec<(String, Kind)> {
    c.imports.iter().filter(|f| f.name.starts_with("slab_")).map(|f| (f.name.clone(), f.kind)).collect()
}

fn expect_slab_imports(c: &Classification, v: &str) {
    let want: Vec<(String, Kind)> = [
        ("slab_alloc", Kind::Alloc),
        ("slab_calloc", Kind::Alloc),
        ("slab_free", Kind::Free),
        ("slab_realloc", Kind::Realloc),
        ("slab_zalloc", Kind::Alloc),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(slab_imports(c), want, "{v}");
    for f in c.imports.iter().filter(|f| f.name.starts_with("slab_")) {
        assert!(f.external && f.address.0 != 0, "{v}: {f:?}");
        assert!(f.evidence[0].starts_with("exported by a dependency"), "{f:?}");
    }
    // Every call of them is from main (no allocation function): classified, through the PLT.
    let slab: Vec<_> = c.calls.iter().filter(|k| k.callee.starts_with("slab_")).collect();
    assert!(slab.len() >= 5, "{v}: {slab:?}");
    assert!(slab.iter().all(|k| !k.pass_through && k.via == CallVia::Plt), "{v}: {slab:?}");
}

#[test]
fn runpath_dependencies_are_analyzed_on_the_fly() {
    for v in ["O0", "O2", "O2nopie", "O2strip"] {
        let c = analyze(&format!("slabuser.{v}"));
        expect_slab_imports(&c, v);
        assert!(c.functions.is_empty(), "{v}: slabuser defines no allocation function");
    }
}

#[test]
fn with_summary_makes_a_dependency_s_exports_imports() {
    for v in ["O0", "O2"] {
        let bin = lonely_slabuser(v);
        let alone = analyze_path(&bin, &Options::default()).unwrap();
        assert!(slab_imports(&alone).is_empty(), "{v}: no library next to the copy");
        let lib = analyze_path(&support::testbin(&format!("libslab.{v}.so")), &Options::default()).unwrap();
        let summary = bin.with_file_name("libslab.json");
        std::fs::write(&summary, lib.to_json()).unwrap();
        let opts = Options::default().with_summaries(&[summary.clone()]).unwrap();
        let with = analyze_path(&bin, &opts).unwrap();
        expect_slab_imports(&with, v);
        // The same through the command line's bytes path (rewrite): no `$ORIGIN` needed.
        let data = std::fs::read(&bin).unwrap();
        let bytes = allocsite_analysis::analyze_bytes(&data, &opts).unwrap();
        assert_eq!(bytes.imports, with.imports);
        assert_eq!(bytes.calls, with.calls);
        std::fs::remove_dir_all(bin.parent().unwrap()).unwrap();
    }
}

#[test]
fn a_bad_summary_is_a_one_line_error_naming_the_file() {
    let dir = support::out_dir().join(format!("calls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"binary\": 3").unwrap();
    for p in [bad.clone(), dir.join("missing.json")] {
        let e = Options::default().with_summaries(&[p.clone()]).unwrap_err();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
