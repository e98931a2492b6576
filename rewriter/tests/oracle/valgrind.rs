//! valgrind's memcheck as a leak oracle: the leak records of its XML output
//! (`--leak-check=full --show-leak-kinds=all --xml=yes`), each with its kind, block
//! count and stack (inlined frames are frames of their own: valgrind reads the DWARF
//! inline info, so an inlined helper's caller keeps its own line).

#[derive(Debug, Clone)]
pub struct Frame {
    pub func: String,
    pub file: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Leak {
    /// `Leak_DefinitelyLost`, `Leak_StillReachable`, `Leak_PossiblyLost`, `Leak_IndirectlyLost`.
    pub kind: String,
    pub blocks: u64,
    pub frames: Vec<Frame>,
}

/// The text of the first `<tag>…</tag>` in `s`.
fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = s.find(&open)? + open.len();
    let b = a + s[a..].find(&close)?;
    Some(&s[a..b])
}

/// Every `<tag>…</tag>` in `s`.
fn tags<'a>(mut s: &'a str, name: &str) -> Vec<&'a str> {
    let close = format!("</{name}>");
    let mut v = Vec::new();
    while let Some(t) = tag(s, name) {
        v.push(t);
        let end = s.find(t).unwrap_or(0) + t.len() + close.len();
        s = &s[end.min(s.len())..];
    }
    v
}

pub fn leaks(xml: &str) -> Vec<Leak> {
    let mut out = Vec::new();
    for e in tags(xml, "error") {
        let kind = tag(e, "kind").unwrap_or("").to_string();
        if !kind.starts_with("Leak_") {
            continue;
        }
        let blocks = tag(e, "leakedblocks").and_then(|b| b.trim().parse().ok()).unwrap_or(0);
        let frames = tag(e, "stack")
            .map(|st| {
                tags(st, "frame")
                    .into_iter()
                    .map(|f| Frame {
                        func: tag(f, "fn").unwrap_or("").to_string(),
                        file: tag(f, "file").unwrap_or("").to_string(),
                        line: tag(f, "line").and_then(|l| l.trim().parse().ok()).unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Leak { kind, blocks, frames });
    }
    out
}

#[test]
fn reads_leak_records() {
    let xml = "<valgrindoutput><error><unique>0x1</unique><kind>Leak_DefinitelyLost</kind>\
        <xwhat><text>8 bytes in 2 blocks</text><leakedbytes>8</leakedbytes><leakedblocks>2</leakedblocks></xwhat>\
        <stack><frame><ip>0x1</ip><fn>malloc</fn></frame><frame><ip>0x2</ip><fn>main</fn><dir>/x</dir><file>a.c</file><line>7</line></frame></stack></error>\
        <error><kind>InvalidRead</kind></error>\
        <error><kind>Leak_StillReachable</kind><xwhat><leakedblocks>1</leakedblocks></xwhat><stack><frame><fn>f</fn><file>b.c</file><line>3</line></frame></stack></error>\
        </valgrindoutput>";
    let l = leaks(xml);
    assert_eq!(l.len(), 2);
    assert_eq!((l[0].kind.as_str(), l[0].blocks, l[0].frames.len()), ("Leak_DefinitelyLost", 2, 2));
    assert_eq!((l[0].frames[1].func.as_str(), l[0].frames[1].file.as_str(), l[0].frames[1].line), ("main", "a.c", 7));
    assert_eq!((l[1].kind.as_str(), l[1].blocks, l[1].frames[0].line), ("Leak_StillReachable", 1, 3));
}
