//! `allocsite cc` as a build uses it: compile-only calls pass straight through,
//! links get a `.allocsite` section without any allocated byte changing, the
//! summaries of shared libraries classify what post-link analysis cannot, driver
//! failures keep their status, allocsite failures never fail the build, and a real
//! Makefile build (Lua) works unchanged except for CC.

mod support;

use object::{Object, ObjectSegment};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn allocsite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_allocsite"))
}

/// `allocsite cc ARGS` in `dir`, with a private cache directory.
fn cc(dir: &Path, args: &[&str]) -> Output {
    allocsite().arg("cc").args(args).current_dir(dir).env("XDG_CACHE_HOME", dir.join("cache")).env_remove("ALLOCSITE_INSTRUMENT").output().expect("run allocsite cc")
}

/// `allocsite cc ARGS` in `dir` with ALLOCSITE_INSTRUMENT=1: the linked program is also rewritten.
fn cc_instrumented(dir: &Path, args: &[&str]) -> Output {
    allocsite().arg("cc").args(args).current_dir(dir).env("XDG_CACHE_HOME", dir.join("cache")).env("ALLOCSITE_INSTRUMENT", "1").output().expect("run allocsite cc")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn plain(dir: &Path, args: &[&str]) {
    let st = Command::new("cc").args(args).current_dir(dir).status().expect("run cc");
    assert!(st.success());
}

fn src(name: &str) -> String {
    support::root().join("testbins/linkunits").join(name).display().to_string()
}

/// The bytes every loadable segment maps, in order, except the ELF header's
/// section-table fields (e_shoff, e_shnum, e_shstrndx): adding any section moves
/// them, and nothing reads them at run time.
fn loaded(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let f = object::File::parse(&*data).unwrap();
    f.segments()
        .map(|s| {
            let mut d = s.data().unwrap().to_vec();
            if s.file_range().0 == 0 && d.len() >= 0x40 {
                d[0x28..0x30].fill(0);
                d[0x3c..0x40].fill(0);
            }
            d
        })
        .collect()
}

fn has_section(path: &Path) -> bool {
    let data = std::fs::read(path).unwrap();
    let f = object::File::parse(&*data).unwrap();
    let found = f.section_by_name(".allocsite").is_some();
    found
}

fn analyze(path: &Path, extra: &[&str]) -> Value {
    let o = ok(allocsite().arg("analyze").arg(path).args(["--format", "json"]).args(extra).output().unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key].as_array().map(|a| a.iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// Builds libwrap.so, libwrap2.a and the program through the wrapper in `dir`.
fn build_linkunits(dir: &Path) {
    ok(cc(dir, &["-shared", "-fPIC", "-g", "-O2", "-o", "libwrap.so", &src("wrap.c")]));
    ok(cc(dir, &["-c", "-g", "-O2", "-o", "wrap2.o", &src("wrap2.c")]));
    assert!(Command::new("ar").args(["rcs", "libwrap2.a", "wrap2.o"]).current_dir(dir).status().unwrap().success());
    ok(cc(dir, &["-c", "-g", "-O2", "-o", "main.o", &src("main.c")]));
    ok(cc(dir, &["-g", "-O2", "-o", "prog", "main.o", "-L.", "-lwrap", "libwrap2.a"]));
}

#[test]
fn three_link_units() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    build_linkunits(dir);
    // Compile-only: exactly what the driver makes, no section.
    plain(dir, &["-c", "-g", "-O2", "-o", "main.plain.o", &src("main.c")]);
    assert_eq!(std::fs::read(dir.join("main.o")).unwrap(), std::fs::read(dir.join("main.plain.o")).unwrap());
    // The link: same allocated bytes as a plain link, plus .allocsite.
    plain(dir, &["-g", "-O2", "-o", "prog.plain", "main.o", "-L.", "-lwrap", "libwrap2.a"]);
    assert!(has_section(&dir.join("prog")) && !has_section(&dir.join("prog.plain")));
    assert_eq!(loaded(&dir.join("prog")), loaded(&dir.join("prog.plain")));
    let run = |p: &str| Command::new(dir.join(p)).env("LD_LIBRARY_PATH", dir).output().unwrap().stdout;
    assert_eq!(run("prog"), run("prog.plain"));
    assert_eq!(run("prog"), b"linkunits 1 2\n");
    // The library carries its own summary.
    let lib = analyze(&dir.join("libwrap.so"), &[]);
    assert_eq!(lib["source"], "link-time");
    for f in ["wrap_alloc", "wrap_strdup", "wrap_free"] {
        assert!(names(&lib, "functions").contains(&f.to_string()), "libwrap.so: {f} not classified");
    }
    // Post-link analysis of the program alone knows none of the library's functions...
    let post = analyze(&dir.join("prog"), &["--reanalyze"]);
    assert_eq!(post["source"], "analysis");
    let lib_fns = ["wrap_alloc", "wrap_strdup", "wrap_free", "wrap2_array"];
    for f in lib_fns {
        assert!(!names(&post, "imports").contains(&f.to_string()) && !names(&post, "functions").contains(&f.to_string()), "post-link analysis classified {f}");
    }
    // ...the link-time classification has every one.
    let emb = analyze(&dir.join("prog"), &[]);
    assert_eq!(emb["source"], "link-time");
    for f in &lib_fns[..3] {
        assert!(names(&emb, "imports").contains(&f.to_string()), "{f} not among the imports: {emb}");
    }
    assert!(names(&emb, "functions").contains(&"wrap2_array".to_string()));
    let text = String::from_utf8(ok(allocsite().arg("analyze").arg(dir.join("prog")).output().unwrap()).stdout).unwrap();
    assert!(text.contains("classified at link time"), "{text}");
    // The site table at link time: main's calls, typed.
    let sites = String::from_utf8(ok(allocsite().arg("sites").arg(dir.join("prog")).output().unwrap()).stdout).unwrap();
    assert!(sites.lines().any(|l| l.contains("main+") && l.contains("wrap_alloc") && l.contains("constant 24") && l.ends_with("point")), "{sites}");
    assert!(sites.lines().any(|l| l.contains("main+") && l.contains("wrap2_array") && l.contains("constant 384") && l.ends_with("point")), "{sites}");
    assert!(sites.lines().any(|l| l.contains("main+") && l.contains("wrap_strdup")), "{sites}");
    // Instrumented by the build: every chunk the program asks for sits on its own call.
    let o = cc_instrumented(dir, &["-g", "-O2", "-o", "prog.inst", "main.o", "-L.", "-lwrap", "libwrap2.a"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = dir.join("report.json");
    let o = Command::new(dir.join("prog.inst")).env("LD_LIBRARY_PATH", dir).env("ALLOCSITE_REPORT", &rep).output().unwrap();
    assert_eq!(o.stdout, b"linkunits 1 2\n");
    let rep: Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    let rows: Vec<(String, String, u64)> = rep["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["object"] == "prog.inst")
        .map(|r| (r["line"].as_str().unwrap_or("").to_string(), r["allocator"].as_str().unwrap().to_string(), r["bytes"].as_u64().unwrap()))
        .collect();
    for want in [("main.c:16", "wrap_alloc", 24), ("main.c:17", "wrap_strdup", 10), ("main.c:18", "wrap2_array", 384)] {
        assert!(rows.iter().any(|r| (r.0.as_str(), r.1.as_str(), r.2) == want), "{want:?} not in {rows:?}");
    }
    assert!(!rep["sites"].as_array().unwrap().iter().any(|r| r["object"] == "libwrap.so"), "a chunk attributed inside libwrap.so: {rep}");
}

#[test]
fn failures() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // The driver's failure and status pass through.
    std::fs::write(dir.join("bad.c"), "int main(void) { return undeclared; }\n").unwrap();
    let o = cc(dir, &["-o", "bad", "bad.c"]);
    let want = Command::new("cc").args(["-o", "bad", "bad.c"]).current_dir(dir).status().unwrap().code();
    assert_eq!(o.status.code(), want);
    assert!(want.is_some_and(|c| c != 0));
    // allocsite's own failure: the build succeeds, one warning line, output as linked.
    std::fs::write(dir.join("ok.c"), "#include <stdlib.h>\nint main(void) { return malloc(4) == 0; }\n").unwrap();
    let o = allocsite().args(["cc", "-o", "ok", "ok.c"]).current_dir(dir).env("ALLOCSITE_OBJCOPY", "/bin/false").output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("allocsite: warning:"), "{err}");
    assert!(!has_section(&dir.join("ok")));
    assert!(Command::new(dir.join("ok")).status().unwrap().success());
}

/// The Lua sources the realworld script fetched (Debian's lua5.4), with Debian's
/// build-system patch reverted so Lua's own Makefile builds it, in a fresh copy.
fn lua_sources(into: &Path) -> PathBuf {
    let root = support::root();
    let dir = std::env::var_os("ALLOCSITE_REALWORLD_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("build/realworld"));
    let st = Command::new(root.join("testbins/realworld/build")).arg("lua").env("ALLOCSITE_REALWORLD_DIR", &dir).status().unwrap();
    assert!(st.success(), "testbins/realworld/build lua failed");
    let src = std::fs::read_dir(dir.join("src")).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("lua5.4-")).expect("lua sources");
    let to = into.join("lua");
    assert!(Command::new("cp").arg("-r").arg(&src).arg(&to).status().unwrap().success());
    let patch = std::fs::File::open(to.join("debian/patches/0001-build-system.patch")).unwrap();
    assert!(Command::new("patch").args(["-R", "-p1", "-s"]).stdin(patch).current_dir(&to).status().unwrap().success());
    // What debian/rules writes before building (luaconf.h includes it).
    std::fs::write(to.join("src/lua5.4-deb-multiarch.h"), "#define DEB_HOST_MULTIARCH \"x86_64-linux-gnu\"\n").unwrap();
    to
}

fn make_lua(dir: &Path, cc: Option<&str>, instrument: bool) {
    let mut m = Command::new("make");
    m.args(["-s", "-j2", "linux"]).current_dir(dir).env("XDG_CACHE_HOME", dir.join("cache"));
    if let Some(c) = cc {
        m.arg(format!("CC={c}"));
    }
    if instrument {
        m.env("ALLOCSITE_INSTRUMENT", "1");
    }
    let o = m.output().unwrap();
    assert!(o.status.success(), "make: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("allocsite: warning"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn lua_built_through_the_wrapper() {
    let t = tempfile::tempdir().unwrap();
    let dir = lua_sources(t.path());
    let wrapper = format!("{} cc", env!("CARGO_BIN_EXE_allocsite"));
    let keep = |name: &str| {
        let to = t.path().join(name);
        std::fs::rename(dir.join("src/lua"), &to).unwrap();
        assert!(Command::new("make").args(["-s", "clean"]).current_dir(&dir).status().unwrap().success());
        to
    };
    make_lua(&dir, None, false);
    let plain_lua = keep("lua.plain");
    make_lua(&dir, Some(&wrapper), false);
    let wrapped = keep("lua.wrapped");
    // Same allocated bytes; the embedded classification is post-link analysis's.
    assert_eq!(loaded(&plain_lua), loaded(&wrapped));
    let mut emb = analyze(&wrapped, &[]);
    let mut post = analyze(&wrapped, &["--reanalyze"]);
    assert_eq!(emb["source"], "link-time");
    for v in [&mut emb, &mut post] {
        v.as_object_mut().unwrap().remove("source");
    }
    assert_eq!(emb, post);
    // Instrumented by the build: the workload's output is byte-identical.
    make_lua(&dir, Some(&wrapper), true);
    let workload = support::root().join("testbins/realworld/workloads/lua.sh");
    let run = |bin: &Path| {
        let o = Command::new(&workload).arg(bin).env("ALLOCSITE_REPORT", t.path().join("report-%p.json")).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert!(dir.join("src/liballocsite_rt.so").exists());
    assert_eq!(run(&dir.join("src/lua")), run(&plain_lua));
    assert!(std::fs::read_dir(t.path()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("report-")), "the instrumented interpreter wrote no report");
}

#[test]
fn types_at_run_time() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let rt = support::root().join("target/release");
    let o = cc_instrumented(dir, &["-g", "-O2", "-o", "typed", &src("typed.c"), &format!("-L{}", rt.display()), "-lallocsite_rt"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = dir.join("report.json");
    let o = Command::new(dir.join("typed")).env("ALLOCSITE_REPORT", &rep).output().unwrap();
    assert!(o.status.success());
    // allocsite_get_type: a struct, an interior pointer into an array of them, a
    // struct with a flexible array member made inside a helper; a stack address has none.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "p: point\nrow: point\nw: vec\nlocal: (none)\n");
    // The report names the type of each of the program's sites.
    let rep: Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    let typed: Vec<(String, String)> = rep["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["object"] == "typed")
        .map(|r| (r["line"].as_str().unwrap_or("").to_string(), r["type"].as_str().unwrap_or("?").to_string()))
        .collect();
    for want in [("typed.c:31", "point"), ("typed.c:32", "point"), ("typed.c:18", "vec")] {
        assert!(typed.iter().any(|r| (r.0.as_str(), r.1.as_str()) == want), "{want:?} not in {typed:?}");
    }
    let text = String::from_utf8(ok(allocsite().arg("report").arg(dir.join("report.json")).output().unwrap()).stdout).unwrap();
    assert!(text.contains("(typed.c:31) [point]"), "{text}");
}

#[test]
fn library_summaries_cached_by_build_id() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // A library built without the wrapper: its summary is computed and cached.
    plain(dir, &["-shared", "-fPIC", "-g", "-O2", "-Wl,--build-id", "-o", "libwrap.so", &src("wrap.c")]);
    plain(dir, &["-c", "-g", "-O2", "-o", "wrap2.o", &src("wrap2.c")]);
    assert!(Command::new("ar").args(["rcs", "libwrap2.a", "wrap2.o"]).current_dir(dir).status().unwrap().success());
    plain(dir, &["-c", "-g", "-O2", "-o", "main.o", &src("main.c")]);
    let link = ["-o", "prog", "main.o", "-L.", "-lwrap", "libwrap2.a"];
    ok(cc(dir, &link));
    let cached: Vec<PathBuf> = std::fs::read_dir(dir.join("cache/allocsite")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.len() > 40 && name.ends_with(".json"), "{name}");
    let emb = analyze(&dir.join("prog"), &[]);
    assert!(names(&emb, "imports").contains(&"wrap_alloc".to_string()), "{emb}");
    // The next link reads the cache, not the library: a summary edited there shows.
    let mut sum: Value = serde_json::from_slice(&std::fs::read(&cached[0]).unwrap()).unwrap();
    sum["functions"].as_array_mut().unwrap().retain(|f| f["name"] != "wrap_alloc");
    std::fs::write(&cached[0], serde_json::to_string(&sum).unwrap()).unwrap();
    ok(cc(dir, &link));
    let emb = analyze(&dir.join("prog"), &[]);
    assert!(!names(&emb, "imports").contains(&"wrap_alloc".to_string()), "{emb}");
    assert!(names(&emb, "imports").contains(&"wrap_free".to_string()), "{emb}");
}
