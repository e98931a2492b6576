//! Flamegraph of bytes allocated, by outermost → innermost site (inferno).
use super::model::Report;

fn frame(s: &str) -> String {
    // ';' separates frames in the folded format
    s.replace(';', ":")
}

/// Folded stacks: `outermost;innermost bytes` (one frame when they are the same site).
pub fn folded(r: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    for o in &r.outermost {
        for i in &o.innermost {
            if i.bytes == 0 {
                continue;
            }
            if i.site == o.site {
                lines.push(format!("{} [{}] {}", frame(&o.label()), frame(&i.allocator), i.bytes));
            } else {
                lines.push(format!("{};{} [{}] {}", frame(&o.label()), frame(&i.label()), frame(&i.allocator), i.bytes));
            }
        }
    }
    lines.sort();
    lines
}

pub fn svg(r: &Report) -> Result<Vec<u8>, String> {
    let lines = folded(r);
    if lines.is_empty() {
        return Err("no allocated bytes to draw".into());
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("allocsite: bytes allocated by outermost → innermost site ({})", r.program);
    opts.count_name = "bytes".into();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(|s| s.as_str()), &mut out).map_err(|e| format!("flamegraph: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::model::{parse, SAMPLE};
    use super::*;

    #[test]
    fn folds_outermost_then_innermost() {
        let r = parse(SAMPLE).unwrap();
        let f = folded(&r);
        assert_eq!(f, vec!["main+0x9 [malloc] 200".to_string(), "main+0x9;ckd_2d+0x5 (d.c:3) [__ckd_calloc__] 500".to_string()]);
        let svg = String::from_utf8(svg(&r).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("ckd_2d+0x5"));
    }
}
