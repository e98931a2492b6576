//! `allocsite analyze` as a user runs it: formats, atomic output, one-line errors.

mod support;

use std::path::PathBuf;
use std::process::Command;

fn allocsite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_allocsite"))
}

fn testbin(name: &str) -> PathBuf {
    support::testbins_out().join(name)
}

#[test]
fn json_text_and_liballocs_formats() {
    let bin = testbin("wrappers.O2");
    let out = allocsite().arg("analyze").arg(&bin).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let fns = v["functions"].as_array().expect("functions array");
    let xmalloc = fns.iter().find(|f| f["name"] == "xmalloc").expect("xmalloc found");
    for key in ["name", "address", "kind", "args", "descriptor", "evidence"] {
        assert!(!xmalloc[key].is_null(), "field {key} missing");
    }
    assert_eq!(xmalloc["kind"], "alloc");
    assert_eq!(xmalloc["args"]["size"], 0);
    assert_eq!(xmalloc["descriptor"], "xmalloc(Z)p");

    let text = allocsite().arg("analyze").arg(&bin).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("xmalloc") && text.contains("malloc result → return"), "{text}");

    let lib = allocsite().arg("analyze").arg(&bin).args(["--format", "liballocs"]).output().unwrap();
    let lib = String::from_utf8(lib.stdout).unwrap();
    let alloc_line = lib.lines().find(|l| l.starts_with("LIBALLOCS_ALLOC_FNS=")).expect("alloc line");
    assert!(alloc_line.contains("xmalloc(Z)p") && alloc_line.contains("xcalloc(zZ)p"), "{lib}");
    let free_line = lib.lines().find(|l| l.starts_with("LIBALLOCS_FREE_FNS=")).expect("free line");
    assert!(free_line.contains("xfree(P)"), "{lib}");
}

#[test]
fn output_file_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cls.json");
    let st = allocsite().arg("analyze").arg(testbin("wrappers.O0")).args(["--format", "json", "-o"]).arg(&dest).status().unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&dest).unwrap();
    allocsite_analysis::Classification::from_json(&text).expect("round-trips");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left behind");
}

#[test]
fn bad_input_gets_one_line_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("notelf.txt", b"hello world\n".to_vec()),
        ("empty", Vec::new()),
        ("truncated", std::fs::read(testbin("wrappers.O2")).unwrap()[..100].to_vec()),
        ("i386", {
            let mut v = std::fs::read(testbin("wrappers.O2")).unwrap();
            v[4] = 1;
            v
        }),
    ];
    for (name, data) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, &data).unwrap();
        let dest = dir.path().join(format!("{name}.json"));
        let out = allocsite().arg("analyze").arg(&input).arg("-o").arg(&dest).output().unwrap();
        assert!(!out.status.success(), "{name} accepted");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(&input.display().to_string()), "{name}: error must name the file: {err}");
        assert!(!dest.exists(), "{name}: partial output written");
        assert_eq!(std::fs::read(&input).unwrap(), data, "input modified");
    }
    let missing = allocsite().args(["analyze", "/nonexistent/file"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/file"));
}

#[test]
fn user_named_allocators_are_seeds() {
    // The stripped build has no names; --alloc-fns on the unstripped build names a
    // function the analysis would not otherwise call an allocator.
    let bin = testbin("wrappers.O2");
    let out = allocsite()
        .arg("analyze")
        .arg(&bin)
        .args(["--format", "json", "--alloc-fns", "main(ip)p"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["functions"].as_array().unwrap().iter().any(|f| f["name"] == "main"));
    let bad = allocsite().arg("analyze").arg(&bin).args(["--alloc-fns", "broken("]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--alloc-fns"));
}

/// A reader that goes away (`allocsite analyze BIN | head -1`) is not an error:
/// no panic, exit 0, nothing on stderr; `rewrite` still writes its output.
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("rw");
    for args in [vec!["analyze".into(), testbin("wrappers.O0").into_os_string()], vec!["rewrite".into(), testbin("wrappers.O2").into_os_string(), "-o".into(), dest.clone().into_os_string()]] {
        let mut child = allocsite().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // closed before the program writes anything
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{args:?}: {:?}: {err}", out.status);
    }
    assert!(dest.exists(), "rewrite wrote its output despite the closed log");
}

/// `analyze --with SUMMARY.json` (repeatable) and `rewrite --with`: a copy of
/// slabuser with no library beside it learns libslab's exported allocation
/// functions from the library's own `analyze --format json`.
#[test]
fn with_summary_of_a_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("libslab.json");
    let st = allocsite().arg("analyze").arg(testbin("libslab.O2.so")).args(["--format", "json", "-o"]).arg(&summary).status().unwrap();
    assert!(st.success());
    let user = dir.path().join("slabuser");
    std::fs::copy(testbin("slabuser.O2"), &user).unwrap();

    let alone = allocsite().arg("analyze").arg(&user).output().unwrap();
    assert!(!String::from_utf8_lossy(&alone.stdout).contains("slab_alloc"), "no library beside the copy");

    let out = allocsite().arg("analyze").arg(&user).arg("--with").arg(&summary).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cls = allocsite_analysis::Classification::from_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let names: Vec<&str> = cls.imports.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["slab_alloc", "slab_calloc", "slab_free", "slab_realloc", "slab_zalloc"]);
    assert!(cls.calls.iter().filter(|c| c.callee.starts_with("slab_")).all(|c| !c.pass_through && c.caller == "main"));

    let text = allocsite().arg("analyze").arg(&user).arg("--with").arg(&summary).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("5 imported allocation function(s) called") && text.contains("slab_calloc(zZ)p"), "{text}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1, 2").unwrap();
    for cmd in [vec!["analyze"], vec!["rewrite", "-o", "/nonexistent/out"]] {
        let out = allocsite().args(&cmd[..1]).arg(&user).args(&cmd[1..]).arg("--with").arg(&bad).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
}
