//! `allocsite sites` on the Lua fixtures (built by testbins/realworld/build, which
//! is idempotent): most classified sites get a type, the objects Lua makes get
//! theirs at the sites that make them, and at -O0 every such type's size agrees
//! with what gdb (an independent DWARF reader) says.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn lua(variant: &str) -> PathBuf {
    let root = support::root();
    let dir = std::env::var_os("ALLOCSITE_REALWORLD_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("build/realworld"));
    // One build at a time: the tests run in parallel.
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let st = Command::new(root.join("testbins/realworld/build")).arg("lua").env("ALLOCSITE_REALWORLD_DIR", &dir).status().expect("run testbins/realworld/build");
        assert!(st.success(), "testbins/realworld/build lua failed");
    });
    dir.join("bin").join(variant)
}

fn sites(bin: &PathBuf) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_allocsite")).arg("sites").arg(bin).args(["--format", "json"]).output().expect("run allocsite sites");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("sites JSON");
    v["sites"].as_array().expect("sites array").clone()
}

/// gdb's `print EXPR` for the binary, as an integer.
fn gdb_int(bin: &PathBuf, expr: &str) -> i64 {
    let out = Command::new("gdb").args(["-nx", "-batch", "-ex"]).arg(format!("print (long)({expr})")).arg(bin).output().expect("run gdb");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.rsplit(" = ").next().unwrap_or("").trim();
    v.parse().unwrap_or_else(|_| panic!("gdb could not evaluate {expr}: {text}"))
}

fn typed_share(s: &[Value]) -> f64 {
    s.iter().filter(|x| x.get("type").is_some()).count() as f64 / s.len().max(1) as f64
}

/// (function making the object, type it makes, size expression gdb must agree with)
const MAKERS: &[(&str, &str, &str)] = &[
    ("luaH_new+", "Table", "constant {sizeof(Table)}"),
    ("luaF_newproto+", "Proto", "constant {sizeof(Proto)}"),
    ("newupval+", "UpVal", "constant {sizeof(UpVal)}"),
    // The closures' sizes come from their upvalue counts inside luaF_new*closure
    // (pass-through calls): the classified sites are their callers'.
    ("lua_pushcclosure+", "CClosure", ""),
    ("luaY_parser+", "LClosure", ""),
    ("lua_newthread+", "lua_State", "constant {sizeof(LX)}"),
    ("lua_newstate+", "LG", "constant {sizeof(LG)}"),
    ("internshrstr+", "TString", ""),
    ("lua_newuserdatauv+", "Udata", ""),
];

#[test]
fn lua_o0_types_agree_with_dwarf() {
    let bin = lua("lua.O0");
    let s = sites(&bin);
    let share = typed_share(&s);
    assert!(share >= 0.8, "only {:.0}% of {} sites typed", share * 100.0, s.len());
    for (func, ty, size) in MAKERS {
        let site = s
            .iter()
            .find(|x| x["function"].as_str().is_some_and(|f| f.starts_with(func)) && x["type"] == *ty)
            .unwrap_or_else(|| panic!("no site in {func} typed {ty}"));
        // Every {EXPR} in the expected size is evaluated by gdb.
        let mut want = String::new();
        let mut rest = *size;
        while let Some(i) = rest.find('{') {
            let j = rest[i..].find('}').expect("closing brace") + i;
            want.push_str(&rest[..i]);
            want.push_str(&gdb_int(&bin, &rest[i + 1..j]).to_string());
            rest = &rest[j + 1..];
        }
        want.push_str(rest);
        if !want.is_empty() {
            assert_eq!(site["size"], want.as_str(), "{func}: size expression");
        }
    }
}

#[test]
fn lua_o2_mostly_typed() {
    let s = sites(&lua("lua"));
    let share = typed_share(&s);
    assert!(share >= 0.8, "only {:.0}% of {} sites typed", share * 100.0, s.len());
    for (func, ty, _) in MAKERS.iter().filter(|m| !m.0.starts_with("newupval")) {
        assert!(s.iter().any(|x| x["type"] == *ty), "no site typed {ty} ({func})");
    }
}
