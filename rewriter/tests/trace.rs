//! `allocsite trace -- CMD` on real programs (tests/c/trace_*.c, built here with gcc,
//! and the testbins): each traced run must print the same output and end with the
//! same status as an untraced run, and its JSON must show the process tree that ran;
//! on the plugin programs it must find the allocator no static analysis can see.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{root, Scratch};

fn allocsite() -> &'static str {
    env!("CARGO_BIN_EXE_allocsite")
}

fn scratch(name: &str) -> Scratch {
    support::scratch_in("trace-tests", name)
}

/// gcc -O2 -g tests/c/NAME.c -o DIR/NAME (extra flags after).
fn cc(dir: &Path, name: &str, out: &str, extra: &[&str]) -> PathBuf {
    let src = root().join("rewriter/tests/c").join(format!("{name}.c"));
    let o = dir.join(out);
    let st = Command::new("gcc").args(["-O2", "-g", "-o"]).arg(&o).arg(&src).args(extra).status().expect("run gcc");
    assert!(st.success(), "gcc {} failed", src.display());
    o
}

fn plain(cmd: &[&str]) -> Output {
    // A program gcc just wrote may still be open for writing in a child another test
    // thread forked at that moment (ETXTBSY): try again shortly.
    for _ in 0..50 {
        match Command::new(cmd[0]).args(&cmd[1..]).output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(20)),
            r => return r.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        }
    }
    panic!("cannot run {cmd:?}: text file busy")
}

/// Run CMD under the tracer (with a private cache directory) and read its JSON.
fn traced(dir: &Path, cmd: &[&str], extra: &[&str]) -> (Output, Value) {
    let json = dir.join("trace.json");
    let out = Command::new(allocsite())
        .arg("trace")
        .arg("-o")
        .arg(&json)
        .args(extra)
        .arg("--")
        .args(cmd)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .expect("run allocsite trace");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{}: {e}; stderr: {}", json.display(), String::from_utf8_lossy(&out.stderr)));
    (out, serde_json::from_str(&text).expect("trace JSON"))
}

/// Same stdout, stderr and status (exit code or signal) as the untraced run.
fn same(untraced: &Output, traced: &Output) {
    assert_eq!(String::from_utf8_lossy(&traced.stdout), String::from_utf8_lossy(&untraced.stdout), "stdout differs");
    assert_eq!(String::from_utf8_lossy(&traced.stderr), String::from_utf8_lossy(&untraced.stderr), "stderr differs");
    assert_eq!(traced.status.code(), untraced.status.code(), "exit code differs");
    assert_eq!(traced.status.signal(), untraced.status.signal(), "terminating signal differs");
}

fn procs(j: &Value) -> &Vec<Value> {
    j["processes"].as_array().expect("processes")
}

fn pid(p: &Value) -> i64 {
    p["pid"].as_i64().unwrap()
}

fn execs(p: &Value) -> Vec<String> {
    p["execs"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

fn canon(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

#[test]
fn shell_pipeline_and_background_job() {
    let d = scratch("shell");
    let wc = cc(&d, "trace_wc", "wc", &[]);
    let out = support::testbins_out();
    let (a, c) = (out.join("demo.O2"), out.join("nested.O2"));
    let script = format!("{} | {}; {} & wait", a.display(), wc.display(), c.display());
    let cmd = ["sh", "-c", script.as_str()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let ps = procs(&j);
    let root = &ps[0];
    assert_eq!(root["parent"], 0);
    assert_eq!(execs(root), vec![canon(Path::new("/bin/sh"))]);
    assert_eq!(root["exit"]["code"], 0);
    for prog in [&a, &wc, &c] {
        let p = ps.iter().find(|p| execs(p) == vec![canon(prog)]).unwrap_or_else(|| panic!("no process ran {}: {ps:?}", prog.display()));
        assert_eq!(p["parent"].as_i64(), Some(pid(root)), "{} not a child of the shell", prog.display());
        assert_eq!(p["exit"]["code"], 0);
    }
    assert!(ps.iter().all(|p| p["exit"].is_object()), "every process's end is known: {ps:?}");
}

#[test]
fn hundred_forked_children() {
    let d = scratch("forks");
    let prog = cc(&d, "trace_forks", "forks", &[]);
    let cmd = [prog.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let ps = procs(&j);
    assert_eq!(ps.len(), 101, "{ps:?}");
    assert_eq!(ps[0]["exit"]["code"], 7);
    let root = pid(&ps[0]);
    let mut codes: Vec<i64> = ps[1..].iter().map(|p| {
        assert_eq!(p["parent"].as_i64(), Some(root));
        assert!(execs(p).is_empty());
        p["exit"]["code"].as_i64().unwrap()
    }).collect();
    codes.sort();
    assert_eq!(codes, (0..100).collect::<Vec<i64>>());
}

#[test]
fn fifty_threads() {
    let d = scratch("threads");
    let prog = cc(&d, "trace_threads", "threads", &["-pthread"]);
    let cmd = [prog.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let ps = procs(&j);
    assert_eq!(ps.len(), 1, "threads are not processes: {ps:?}");
    assert_eq!(ps[0]["threads"], 51);
    assert_eq!(ps[0]["exit"]["code"], 0);
}

#[test]
fn vfork_then_exec() {
    let d = scratch("vfork");
    let prog = cc(&d, "trace_vfork", "vfork", &[]);
    let wc = cc(&d, "trace_wc", "wc", &[]);
    // The child runs the vfork program again, which vforks and execs the counter.
    let cmd = [prog.to_str().unwrap(), prog.to_str().unwrap(), wc.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let ps = procs(&j);
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert_eq!(execs(&ps[1]), vec![canon(&prog)]);
    assert_eq!(ps[1]["parent"].as_i64(), Some(pid(&ps[0])));
    assert_eq!(execs(&ps[2]), vec![canon(&wc)]);
    assert_eq!(ps[2]["parent"].as_i64(), Some(pid(&ps[1])));
    assert!(ps.iter().all(|p| p["exit"]["code"] == 0));
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[test]
fn ten_thousand_failing_execs_leave_no_state() {
    let d = scratch("execfail");
    let prog = cc(&d, "trace_execfail", "execfail", &[]);
    let json = d.join("trace.json");
    let mut child = Command::new(allocsite())
        .args(["trace", "-o"])
        .arg(&json)
        .arg("--")
        .arg(&prog)
        .env("XDG_CACHE_HOME", d.join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    seen.push(lines.next().unwrap().unwrap());
    let after_1000 = rss_kib(child.id());
    writeln!(stdin).unwrap();
    seen.push(lines.next().unwrap().unwrap());
    let after_10000 = rss_kib(child.id());
    writeln!(stdin).unwrap();
    drop(stdin);
    let st = child.wait().unwrap();
    assert!(st.success());
    assert_eq!(seen, vec!["phase 1: 1000 failures", "phase 2: 10000 failures"]);
    // 9,000 more failures may not grow the tracer (a leak of even 64 bytes each is 560 KiB).
    assert!(after_10000 <= after_1000 + 128, "tracer grew from {after_1000} KiB to {after_10000} KiB");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ps = procs(&j);
    assert_eq!(ps.len(), 1);
    assert_eq!(execs(&ps[0]), vec![canon(&prog)], "failed execs are not execs");
}

#[test]
fn stop_and_continue() {
    let d = scratch("stop");
    let prog = cc(&d, "trace_stop", "stop", &[]);
    // The program stops and continues its own child, watching with waitpid.
    let cmd = [prog.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    assert_eq!(procs(&j)[1]["exit"]["signal"], libc::SIGTERM);

    // kill -STOP / -CONT from outside, as a shell's job control does.
    let run = |traced: bool| -> Output {
        let pidfile = d.join(if traced { "pid.t" } else { "pid.u" });
        let mut c = if traced {
            let mut c = Command::new(allocsite());
            c.args(["trace", "-o"]).arg(d.join("t2.json")).arg("--").arg(&prog);
            c
        } else {
            Command::new(&prog)
        };
        let child = c.arg(&pidfile).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let start = Instant::now();
        let pid: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()) {
                break p;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no pid file");
            std::thread::sleep(Duration::from_millis(10));
        };
        // SAFETY: signalling the test's own grandchild.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let state = || std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()).map(str::to_string));
        let start = Instant::now();
        while !matches!(state().as_deref(), Some("T") | Some("t")) {
            assert!(start.elapsed() < Duration::from_secs(20), "never stopped: {:?}", state());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(state().as_deref(), Some("T") | Some("t")), "did not stay stopped");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        child.wait_with_output().unwrap()
    };
    let (u, t) = (run(false), run(true));
    same(&u, &t);
    assert!(String::from_utf8_lossy(&t.stdout).contains("external stop/cont: continued"));
}

#[test]
fn killed_by_signal() {
    let d = scratch("killed");
    let prog = cc(&d, "trace_killed", "killed", &[]);
    let cmd = [prog.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    let u = plain(&cmd);
    same(&u, &t);
    assert_eq!(t.status.signal(), Some(libc::SIGABRT));
    let ps = procs(&j);
    assert_eq!(ps[0]["exit"]["signal"], libc::SIGABRT);
    assert_eq!(ps[1]["exit"]["signal"], libc::SIGTERM);
    assert_eq!(j["exit"]["signal"], libc::SIGABRT);
}

/// The traced functions of the binary at `path`, by name.
fn functions<'a>(j: &'a Value, path: &Path) -> Vec<&'a Value> {
    let want = canon(path);
    j["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["binary"].as_str() == Some(want.as_str()))
        .flat_map(|b| b["functions"].as_array().unwrap().iter())
        .collect()
}

fn find<'a>(fns: &[&'a Value], name: &str) -> &'a Value {
    fns.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name} not found: {fns:?}"))
}

/// Build the host and one plugin; check the static analysis does not see `name`.
fn plugin(d: &Path, which: &str, name: &str) -> (PathBuf, PathBuf) {
    let host = cc(d, "trace_plugin_host", "host", &["-ldl"]);
    let so = cc(d, &format!("trace_plugin_{which}"), &format!("{which}.so"), &["-shared", "-fPIC"]);
    let a = plain(&[allocsite(), "analyze", so.to_str().unwrap(), "--format", "json"]);
    assert!(a.status.success());
    let cls: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(cls["functions"].as_array().unwrap().iter().all(|f| f["name"] != name), "the static analysis already finds {name}");
    (host, so)
}

#[test]
fn plugin_allocator_wrapping_malloc() {
    let d = scratch("plugin_wrap");
    let (host, so) = plugin(&d, "wrap", "w_alloc");
    let cmd = [host.to_str().unwrap(), so.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let fns = functions(&j, &so);
    let a = find(&fns, "w_alloc");
    assert_eq!(a["kind"], "alloc");
    assert_eq!(a["args"], serde_json::json!({"size": 1}));
    assert_eq!(a["static"], "new");
    assert!(a["hits"]["alloc"].as_u64().unwrap() >= 64 && a["settled"] == true, "{a}");
    let r = find(&fns, "w_resize");
    assert_eq!(r["kind"], "realloc");
    assert_eq!(r["args"], serde_json::json!({"ptr": 1, "size": 2}));
    // It tail-calls free through a pointer: found by probing the host's indirect call.
    let f = find(&fns, "w_release");
    assert_eq!(f["kind"], "free");
    assert_eq!(f["args"], serde_json::json!({"ptr": 1}));
    // The output merges into the plugin's static classification.
    let text = std::fs::read_to_string(d.join("trace.json")).unwrap();
    let s = plain(&[allocsite(), "analyze", so.to_str().unwrap(), "--format", "json"]);
    let mut cls = allocsite_analysis::Classification::from_json(&String::from_utf8_lossy(&s.stdout)).unwrap();
    let bid = j["binaries"].as_array().unwrap().iter().find(|b| b["binary"] == canon(&so)).unwrap()["build_id"].as_str().unwrap().to_string();
    let tr = allocsite_rewriter::trace::for_binary(&text, &canon(&so), &bid).unwrap().expect("the plugin is in the trace");
    allocsite_rewriter::trace::merge(&mut cls, &tr);
    let w = cls.functions.iter().find(|f| f.name == "w_alloc").expect("merged");
    assert_eq!(w.descriptor, "w_alloc(pZ)p");

    // `--with` the trace: the traced functions seed the analysis, so the plugin's own
    // wrapper of w_alloc (never called, so never traced) is classified through it.
    let trace = d.join("trace.json");
    let a = plain(&[allocsite(), "analyze", so.to_str().unwrap(), "--format", "json", "--with", trace.to_str().unwrap()]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let cls: Value = serde_json::from_slice(&a.stdout).unwrap();
    let fns: Vec<&Value> = cls["functions"].as_array().unwrap().iter().collect();
    assert_eq!(find(&fns, "w_alloc")["args"], serde_json::json!({"size": 1}));
    let z = find(&fns, "wrap_zalloc");
    assert_eq!((&z["kind"], &z["args"]), (&serde_json::json!("alloc"), &serde_json::json!({"size": 1})), "{z}");
    assert_eq!(find(&fns, "w_resize")["kind"], "realloc");

    // The host's chunks made through the plugin's table are attributed to the host's calls.
    let (r, _) = rewritten_run(&d, &host, &so, &trace);
    let w = site(&r, "w_alloc");
    assert_eq!((w["object"].as_str(), w["calls"].as_u64()), (Some("host"), Some(400)), "{w}");
    assert!(w["line"].as_str().unwrap().starts_with("trace_plugin_host.c:"), "{w}");
    let z = site(&r, "w_resize");
    assert_eq!((z["object"].as_str(), z["calls"].as_u64()), (Some("host"), Some(134)), "{z}");
    assert!(w.get("suballoc").is_none());

    // A trace that says otherwise than the code: printed with both sides' evidence.
    let mut t: Value = serde_json::from_str(&text).unwrap();
    let bin = t["binaries"].as_array_mut().unwrap().iter_mut().find(|b| b["binary"] == canon(&so)).unwrap();
    let static_destroy = cls["functions"].as_array().unwrap().iter().find(|f| f["name"] == "w_destroy").expect("w_destroy is a free function").clone();
    let mut bogus = static_destroy.clone();
    bogus["kind"] = "alloc".into();
    bogus["args"] = serde_json::json!({"size": 0});
    bogus["descriptor"] = "w_destroy(Z)p".into();
    bogus["evidence"] = serde_json::json!(["trace: returned a fresh 8-byte block; argument 0 = 8"]);
    bogus["hits"] = serde_json::json!({"calls": 8, "alloc": 8, "realloc": 0, "free": 0, "carved": 0, "fixed_size": 0, "nothing": 0});
    bogus["static"] = "contradicts".into();
    bin["functions"].as_array_mut().unwrap().push(bogus);
    let bad = d.join("contradicting.json");
    std::fs::write(&bad, serde_json::to_string(&t).unwrap()).unwrap();
    let a = plain(&[allocsite(), "analyze", so.to_str().unwrap(), "--with", bad.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&a.stdout);
    let line = out.lines().find(|l| l.contains("contradiction: w_destroy")).unwrap_or_else(|| panic!("no contradiction in:\n{out}"));
    assert!(line.contains("static analysis says w_destroy(P) (arg0 → free ptr") && line.contains("the trace says w_destroy(Z)p (trace: returned a fresh"), "{line}");
    std::fs::create_dir_all(d.join("bad")).unwrap();
    let o = Command::new(allocsite()).args(["rewrite", so.to_str().unwrap(), "-o"]).arg(d.join("bad/wrap.so")).arg("--with").arg(&bad).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("contradiction: w_destroy: static analysis says"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Rewrite the plugin `--with` the trace, run the host with the rewritten plugin
/// (output unchanged), and read the runtime's report.
fn rewritten_run(d: &Path, host: &Path, so: &Path, trace: &Path) -> (Value, Output) {
    std::fs::create_dir_all(d.join("rewritten")).unwrap();
    let out = d.join("rewritten").join(so.file_name().unwrap());
    let o = Command::new(allocsite()).args(["rewrite", so.to_str().unwrap(), "-o"]).arg(&out).arg("--with").arg(trace).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = d.join("report.json");
    let run = Command::new(host).arg(&out).env("ALLOCSITE_REPORT", &report).output().unwrap();
    let plain = plain(&[host.to_str().unwrap(), so.to_str().unwrap()]);
    assert_eq!((run.stdout.clone(), run.status.code()), (plain.stdout, plain.status.code()));
    (serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap(), o)
}

/// The report's innermost site whose allocator is `f` (exactly one).
fn site<'a>(r: &'a Value, f: &str) -> &'a Value {
    let s: Vec<&Value> = r["sites"].as_array().unwrap().iter().filter(|s| s["allocator"] == f).collect();
    assert_eq!(s.len(), 1, "sites of {f}: {s:?}");
    s[0]
}

#[test]
fn plugin_pool_carving_one_block() {
    let d = scratch("plugin_pool");
    let (host, so) = plugin(&d, "pool", "p_alloc");
    let cmd = [host.to_str().unwrap(), so.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let fns = functions(&j, &so);
    let a = find(&fns, "p_alloc");
    assert_eq!(a["kind"], "suballoc");
    assert_eq!(a["args"], serde_json::json!({"size": 1}));
    assert_eq!(a["static"], "new");
    assert!(a["hits"]["carved"].as_u64().unwrap() > 32, "{a}");
    // Rewritten `--with` the trace, the pool's pieces are suballocations at the host's call.
    let (r, _) = rewritten_run(&d, &host, &so, &d.join("trace.json"));
    let p = site(&r, "p_alloc");
    assert_eq!((p["object"].as_str(), p["calls"].as_u64(), &p["suballoc"]), (Some("host"), Some(400), &Value::Bool(true)), "{p}");
    assert!(p["line"].as_str().unwrap().starts_with("trace_plugin_host.c:"), "{p}");
    assert_eq!(r["totals"]["suballoc_calls"], 400);
}

#[test]
fn memory_bound_and_detach_keep_the_program_running() {
    let d = scratch("bounds");
    let host = cc(&d, "trace_plugin_host", "host", &["-ldl"]);
    let so = cc(&d, "trace_plugin_wrap", "wrap.so", &["-shared", "-fPIC"]);
    let cmd = [host.to_str().unwrap(), so.to_str().unwrap()];
    let u = plain(&cmd);
    // Past --max-mem learning stops (every breakpoint removed); the run is unchanged.
    let (t, j) = traced(&d, &cmd, &["--max-mem", "64K"]);
    assert_eq!((t.stdout.clone(), t.status.code()), (u.stdout.clone(), u.status.code()));
    assert!(String::from_utf8_lossy(&t.stderr).contains("memory bound (65536 bytes) reached"));
    assert_eq!(j["memory"]["bound_reached"], true);
    assert_eq!(procs(&j)[0]["exit"]["code"], 0);
    // --detach-after lets the process go once nothing new comes; it still ends as untraced.
    let (t, j) = traced(&d, &cmd, &["--learn-limit", "4", "--detach-after", "20"]);
    same(&u, &t);
    assert_eq!(procs(&j)[0]["detached"], true);
    assert_eq!(procs(&j)[0]["exit"]["code"], 0);
    assert_eq!(find(&functions(&j, &so), "w_alloc")["args"], serde_json::json!({"size": 1}));
}

#[test]
fn detach_on_exit_leaves_the_tree_running() {
    let d = scratch("detach_on_exit");
    let wc = cc(&d, "trace_wc", "wc", &[]);
    let script = format!("sleep 1; echo hello | {}", wc.display());
    let cmd = ["sh", "-c", script.as_str()];
    let u = plain(&cmd);
    let json = d.join("t.json");
    let child = Command::new(allocsite())
        .args(["trace", "--detach-on-exit", "-o"])
        .arg(&json)
        .arg("--")
        .args(cmd)
        .env("XDG_CACHE_HOME", d.join("cache"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling the tracer this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // Standard output reaches its end only when the detached shell and its pipeline are done.
    let t = child.wait_with_output().unwrap();
    assert_eq!(t.status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(String::from_utf8_lossy(&t.stdout), String::from_utf8_lossy(&u.stdout));
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(procs(&j).iter().all(|p| p["detached"] == true), "{j}");
}

/// Observations that fit several role readings keep the code's, and a size that was
/// constant only because the arguments it comes from were is not a constructor.
#[test]
fn readings_consistent_with_the_code() {
    let d = scratch("readings");
    let bin = cc(&d, "trace_readings", "readings", &[]);
    let cmd = [bin.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let fns = functions(&j, &bin);
    // Always called with size 1: `size=1` alone fits too, but the code says count × size.
    let z = find(&fns, "z_alloc");
    assert_eq!(z["kind"], "alloc");
    assert_eq!(z["args"], serde_json::json!({"count": 1, "size": 2}));
    assert_eq!(z["static"], "agrees", "{z}");
    // Always 14 bytes from the same strings and `extra`: no evidence of a fixed size.
    let m = find(&fns, "make_name");
    assert_ne!(m["kind"], "ctor", "{m}");
    assert_eq!(m["static"], "agrees", "{m}");
    assert!(m["hits"]["fixed_size"].as_u64().unwrap() >= 4, "{m}");
    // Frees its second list every time and its first, always NULL, never visibly: the
    // code's reading (the first) fits every observation, as freeing NULL does nothing.
    let f = find(&fns, "drop_lists");
    assert_eq!(f["kind"], "free");
    assert_eq!(f["args"], serde_json::json!({"ptr": 1}), "{f}");
    assert_eq!(f["static"], "agrees", "{f}");
    // Called once: its size was never seen constant.
    let c = find(&fns, "copy_text");
    assert_ne!(c["kind"], "ctor", "{c}");
    assert_eq!(c["static"], "agrees", "{c}");
    // 24 bytes whatever its argument (a few tags fit as a size by coincidence): a constructor.
    let n = find(&fns, "new_node");
    assert_eq!(n["kind"], "ctor", "{n}");
    assert_eq!(n["static"], "agrees", "{n}");
    assert!(fns.iter().all(|f| f["static"] != "contradicts"), "{fns:?}");
}

#[test]
fn quiet_spell_is_the_programs_not_each_processes() {
    let d = scratch("quiet");
    let rep = cc(&d, "trace_repeat", "rep", &[]);
    let r = rep.to_str().unwrap();
    let opts = ["--idle-unwatch", "256", "--learn-limit", "8"];
    let hits = |script: &str| {
        let cmd = ["sh", "-c", script];
        let (t, j) = traced(&d, &cmd, &opts);
        same(&plain(&cmd), &t);
        assert_eq!(find(&functions(&j, &rep), "xalloc")["args"], serde_json::json!({"size": 0}), "{j}");
        j["stats"]["allocator_hits"].as_u64().expect("allocator_hits")
    };
    let one = hits(&format!("{r} 3000"));
    let three = hits(&format!("{r} 3000; {r} 3000; {r} 3000"));
    // The first process learns xalloc, then is unwatched after 256 quiet hits; the
    // next two start where it left off, with only a short grace each (each paying
    // the whole quiet spell again would cost two more times `one`).
    assert!(one >= 256, "one process: {one} allocator hits");
    assert!(three - one < one / 2, "three processes: {three} allocator hits, one: {one}");
}

#[test]
fn endbr64_entries_resume_past_the_int3() {
    // Built with -fcf-protection, every function starts with endbr64: its entry
    // breakpoint resumes the thread after the int3 (the rest reads as a NOP) instead
    // of rewinding it. Every one of the 500 calls is watched (the learn limit is never
    // reached), and the run is unchanged.
    let d = scratch("endbr");
    let rep = cc(&d, "trace_repeat", "rep", &["-fcf-protection=full"]);
    let cmd = [rep.to_str().unwrap(), "500"];
    let (t, j) = traced(&d, &cmd, &["--learn-limit", "100000", "--idle-unwatch", "100000"]);
    same(&plain(&cmd), &t);
    let x = find(&functions(&j, &rep), "xalloc");
    assert_eq!(x["args"], serde_json::json!({"size": 0}), "{x}");
    assert_eq!(x["hits"]["calls"], 500, "{x}");
    assert_eq!(x["hits"]["alloc"], 500, "{x}");
}

/// A command's file as the tracer names it: found on PATH, links resolved.
fn images_path(cmd: &str) -> String {
    let p = std::env::split_paths(&std::env::var_os("PATH").unwrap()).map(|d| d.join(cmd)).find(|f| f.is_file()).unwrap();
    canon(&p)
}

#[test]
fn system_programs_teach_nothing_unless_asked() {
    // A script's shell and utilities (sh, sort, cat) are the system's, like its
    // libraries: with nothing else mapped, their processes are not stopped at their
    // allocators; the program the script runs is learned as before.
    let d = scratch("system_programs");
    let rep = cc(&d, "trace_repeat", "rep", &[]);
    let r = rep.to_str().unwrap();
    let (_, alone) = traced(&d, &[r, "300"], &[]);
    // (a script file, as a workload is: the command traced is the script, so its shell
    // is the system's; `sh -c` would make the shell itself the command, which is learned)
    let script = d.join("run.sh");
    std::fs::write(&script, format!("#!/bin/sh\nfor i in 1 2 3; do printf 'b\\na\\n' | sort | cat; done; {r} 300\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cmd = [script.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    assert_eq!(find(&functions(&j, &rep), "xalloc")["args"], serde_json::json!({"size": 0}), "{j}");
    let bins: Vec<&str> = j["binaries"].as_array().unwrap().iter().filter_map(|b| b["binary"].as_str()).collect();
    assert_eq!(bins, vec![canon(&rep).as_str()], "only the program is learned");
    let hits = |j: &Value| j["stats"]["allocator_hits"].as_u64().expect("allocator_hits");
    assert_eq!(hits(&j), hits(&alone), "the shell's processes cost no allocator stop: {j}");
    // … and the output names them, so that a program of the system's run by a script is
    // not left out without a word
    let unlearned: Vec<&str> = j["system_programs_not_learned"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    for prog in ["sort", "cat"] {
        let path = images_path(prog);
        assert!(unlearned.contains(&path.as_str()), "{path} not among {unlearned:?}");
    }
    assert!(!unlearned.contains(&canon(&rep).as_str()), "{unlearned:?}");
    // Asked for, the system's programs are learned too, at the price of their stops.
    let (t, k) = traced(&d, &cmd, &["--system-programs"]);
    same(&plain(&cmd), &t);
    assert!(hits(&k) > hits(&j), "{} allocator hits with the system's programs, {} without", hits(&k), hits(&j));
    assert_eq!(k["system_programs_not_learned"], serde_json::json!([]), "{k}");
    assert_eq!(find(&functions(&k, &rep), "xalloc")["args"], serde_json::json!({"size": 0}), "{k}");
}

#[test]
fn a_library_a_system_program_loads_is_learned() {
    // python3 (the system's) starts with nothing to learn, so its allocators are not
    // watched; ctypes then loads a library of ours: from that loader event on they are,
    // in the C library mapped long before, and the library's functions are learned.
    let d = scratch("system_loads");
    let so = cc(&d, "trace_loaded", "loaded.so", &["-shared", "-fPIC"]);
    let py = "import ctypes, sys\nl = ctypes.CDLL(sys.argv[1])\nl.mk.restype = ctypes.c_void_p\nl.mk.argtypes = [ctypes.c_size_t]\nl.rel.argtypes = [ctypes.c_void_p]\nfor i in range(300):\n    l.rel(l.mk(16 + i % 64))\nprint('done')\n";
    // (python3 started by a script: the traced command is the script, python3 is one of
    // the system's programs it runs)
    std::fs::write(d.join("t.py"), py).unwrap();
    let script = d.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\nexec /usr/bin/python3 \"$(dirname \"$0\")/t.py\" \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cmd = [script.to_str().unwrap(), so.to_str().unwrap()];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let fns = functions(&j, &so);
    assert_eq!(find(&fns, "mk")["kind"], "alloc", "{j}");
    assert_eq!(find(&fns, "mk")["args"], serde_json::json!({"size": 0}), "{j}");
    assert_eq!(find(&fns, "rel")["kind"], "free", "{j}");
    assert_eq!(find(&fns, "rel")["args"], serde_json::json!({"ptr": 0}), "{j}");
    assert_eq!(j["binaries"].as_array().unwrap().len(), 1, "python3 itself is not learned: {j}");
}

#[test]
fn the_traced_command_is_learned_wherever_it_is_installed() {
    // `allocsite trace -- /usr/bin/python3 …`: the user asked for python3, so it is
    // learned although it is one of the system's programs (its own allocators: PyMem_*).
    let d = scratch("system_command");
    let cmd = ["/usr/bin/python3", "-c", "x = [str(i) * 3 for i in range(2000)]\nprint(len(x))"];
    let (t, j) = traced(&d, &cmd, &[]);
    same(&plain(&cmd), &t);
    let py = canon(Path::new("/usr/bin/python3"));
    let b = j["binaries"].as_array().unwrap().iter().find(|b| b["binary"] == py.as_str()).unwrap_or_else(|| panic!("{py} not learned: {j}"));
    let allocs = b["functions"].as_array().unwrap().iter().filter(|f| f["kind"] == "alloc").count();
    assert!(allocs > 0, "no allocation function of {py} learned: {j}");
}

#[test]
fn a_cold_fragment_is_no_function_entry() {
    // trace_cold.c: malloc called from `tag.cold`, a piece of `tag` with an FDE of its
    // own, entered by a jump with tag's frame in place. Unwound through at the first
    // malloc, it was taken for a function: at its next "entry" the word at [rsp] — the
    // heap string `tag` keeps there — was read as a return address and took an int3
    // (python3 -c 'print(1)' failed with "unknown encoding: #TF-8" the same way). The
    // fragment's unwind row says a frame is set up there, so it is never watched, and
    // no breakpoint had to be refused for lying outside the program's code.
    let d = scratch("cold");
    let cold = cc(&d, "trace_cold", "cold", &[]);
    let cmd = [cold.to_str().unwrap(), "100"];
    let untraced = plain(&cmd);
    assert_eq!(String::from_utf8_lossy(&untraced.stdout), "100 calls, 0 names changed\n");
    let (t, j) = traced(&d, &cmd, &[]);
    same(&untraced, &t);
    assert_eq!(j["stats"]["refused_breakpoints"], 0, "tag.cold was watched: {j}");
}
