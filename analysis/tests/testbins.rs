//! Every testbin's classification matches its expectations file at every
//! variant (-O0, -O2, non-PIE, stripped), with no unlisted function classified,
//! and the JSON is pinned by insta snapshots.

mod support;

use allocsite_analysis::{analyze_path, load::Binary, AllocFn, Classification, Options, Role};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const VARIANTS: [&str; 4] = ["O0", "O2", "O2nopie", "O2strip"];

#[derive(Debug)]
struct Expect {
    name: String,
    kind: Option<String>, // None: must not be classified
    roles: BTreeMap<String, u8>,
    only: Option<Vec<String>>,
    /// Needs DWARF types: a stripped build may miss it (but not misclassify it).
    needs_dwarf: bool,
}

fn parse_expect(path: &Path) -> Vec<Expect> {
    let text = std::fs::read_to_string(path).expect("read expect file");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let only = match words.last() {
            Some(w) if w.starts_with('@') => {
                let v = w[1..].split(',').map(str::to_string).collect();
                words.pop();
                Some(v)
            }
            _ => None,
        };
        if words[0] == "not" {
            assert_eq!(words.len(), 2, "{}:{}: `not NAME`", path.display(), n + 1);
            out.push(Expect { name: words[1].to_string(), kind: None, roles: BTreeMap::new(), only, needs_dwarf: false });
            continue;
        }
        assert!(words.len() >= 2, "{}:{}: `NAME KIND ROLE=POS...`", path.display(), n + 1);
        let mut roles = BTreeMap::new();
        let needs_dwarf = words.contains(&"needs=dwarf");
        for w in words[2..].iter().filter(|w| **w != "needs=dwarf") {
            let (r, p) = w.split_once('=').unwrap_or_else(|| panic!("{}:{}: bad role {w}", path.display(), n + 1));
            roles.insert(r.to_string(), p.parse().expect("role position"));
        }
        out.push(Expect { name: words[0].to_string(), kind: Some(words[1].to_string()), roles, only, needs_dwarf });
    }
    out
}

fn roles_of(f: &AllocFn) -> BTreeMap<String, u8> {
    f.args.iter().map(|(r, p): (&Role, &u8)| (r.as_str().to_string(), *p)).collect()
}

/// Name → entry address from the unstripped twin, to judge stripped binaries.
fn names_of(unstripped: &Path) -> HashMap<String, u64> {
    let data = std::fs::read(unstripped).expect("read twin");
    let bin = Binary::parse(&data).expect("parse twin");
    let mut m: HashMap<String, u64> = bin.funcs.iter().map(|f| (f.name.clone(), f.addr)).collect();
    for f in &bin.funcs {
        for n in f.aliases.iter() {
            m.entry(n.clone()).or_insert(f.addr);
        }
    }
    m
}

fn matches_name(f: &AllocFn, name: &str, addr: Option<u64>) -> bool {
    match addr {
        Some(a) => f.address.0 == a,
        None => f.name == name || f.aliases.iter().any(|a| a == name),
    }
}

fn check(program: &str, bin: &Path, twin: Option<&Path>, variant: &str, expects: &[Expect]) -> (Vec<String>, Classification) {
    let cls = analyze_path(bin, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let names = twin.map(names_of);
    let mut problems = Vec::new();
    let mut explained = vec![false; cls.functions.len()];
    // A name with a line of its own for the stripped build (`@O2strip`: what is
    // found without DWARF) takes that line there, not its `@O2` one.
    let strip_own: Vec<&str> = expects.iter().filter(|e| e.only.as_ref().is_some_and(|o| o.iter().any(|v| v == "O2strip"))).map(|e| e.name.as_str()).collect();
    for e in expects {
        // Extra builds (-fno-plt, CET, .o) are the -O2 or -O0 code.
        let base = if variant.starts_with("O0") { "O0" } else if variant == "O2strip" || variant == "O2nopie" { variant } else { "O2" };
        let o2_covers_strip = !strip_own.contains(&e.name.as_str());
        if e.only.as_ref().is_some_and(|o| !o.iter().any(|v| v == base || (base == "O2strip" && v == "O2" && o2_covers_strip))) {
            continue;
        }
        let addr = match &names {
            Some(m) => match m.get(&e.name) {
                Some(a) => Some(*a),
                None => {
                    if e.kind.is_some() {
                        problems.push(format!("{program}.{variant}: expected function {} has no symbol in the twin", e.name));
                    }
                    continue;
                }
            },
            None => None,
        };
        let hits: Vec<usize> = (0..cls.functions.len()).filter(|&i| matches_name(&cls.functions[i], &e.name, addr)).collect();
        match &e.kind {
            None => {
                for i in hits {
                    problems.push(format!("{program}.{variant}: FALSE POSITIVE {} classified {}", e.name, cls.functions[i].kind.as_str()));
                    explained[i] = true;
                }
            }
            Some(kind) => {
                if hits.is_empty() && !(e.needs_dwarf && variant == "O2strip") {
                    problems.push(format!("{program}.{variant}: MISSED {} {kind} {:?}", e.name, e.roles));
                }
                for i in hits {
                    explained[i] = true;
                    let f = &cls.functions[i];
                    if f.kind.as_str() != kind || roles_of(f) != e.roles {
                        problems.push(format!(
                            "{program}.{variant}: WRONG {}: got {} {:?}, expected {kind} {:?}",
                            e.name,
                            f.kind.as_str(),
                            roles_of(f),
                            e.roles
                        ));
                    }
                }
            }
        }
    }
    for (i, f) in cls.functions.iter().enumerate() {
        if !explained[i] {
            problems.push(format!(
                "{program}.{variant}: UNLISTED {} classified {} {:?} ({})",
                f.name,
                f.kind.as_str(),
                roles_of(f),
                f.evidence.join("; ")
            ));
        }
    }
    (problems, cls)
}

fn snapshot(program: &str, variant: &str, cls: &Classification) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(support::root().join("analysis/tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    let mut cls = cls.clone();
    cls.binary = format!("testbins/out/{program}.{variant}");
    settings.bind(|| {
        insta::assert_json_snapshot!(format!("{program}.{variant}"), cls);
    });
}

/// (program name, binary path, stripped twin source) for every build of every expect file.
fn builds() -> Vec<(String, PathBuf, Option<PathBuf>, String, PathBuf)> {
    let out = support::out_dir();
    let dir = support::root().join("testbins");
    let mut v = Vec::new();
    let mut expects: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testbins dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "expect"))
        .collect();
    expects.sort();
    for exp in expects {
        let prog = exp.file_stem().unwrap().to_string_lossy().to_string();
        for variant in VARIANTS {
            let (bin, twin) = if prog.starts_with("lib") {
                (
                    out.join(format!("{prog}.{variant}.so")),
                    (variant == "O2strip").then(|| out.join(format!("{prog}.O2.so"))),
                )
            } else {
                (out.join(format!("{prog}.{variant}")), (variant == "O2strip").then(|| out.join(format!("{prog}.O2"))))
            };
            v.push((prog.clone(), bin, twin, variant.to_string(), exp.clone()));
        }
        // The extra builds of `wrappers`: -fno-plt, CET (endbr64 + .plt.sec), and
        // relocatable objects, all judged by the same expectations as -O2.
        if prog == "wrappers" {
            for extra in ["O2noplt", "O2cet", "O2.o", "O0.o"] {
                v.push((prog.clone(), out.join(format!("{prog}.{extra}")), None, extra.to_string(), exp.clone()));
            }
        }
    }
    v
}

#[test]
fn every_testbin_matches_its_expectations() {
    let mut problems = Vec::new();
    let mut results = Vec::new();
    for (prog, bin, twin, variant, exp) in builds() {
        assert!(bin.exists(), "{} missing: testbins/Makefile must build every variant", bin.display());
        let expects = parse_expect(&exp);
        let (p, cls) = check(&prog, &bin, twin.as_deref(), &variant, &expects);
        problems.extend(p);
        results.push((prog, variant, cls));
    }
    assert!(results.len() >= 8, "expected several testbins, found {}", results.len());
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    for (prog, variant, cls) in &results {
        snapshot(prog, variant, cls);
    }
}
