//! The link inputs the linker actually used, from its map file (`-Wl,-Map`):
//! every `LOAD` line (objects, archives, shared libraries resolved through `-L`,
//! `-l` and the default search path) and the archive members it pulled in.

use std::path::PathBuf;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Inputs {
    /// Object files linked whole.
    pub objects: Vec<PathBuf>,
    /// `archive(member)` for every member pulled in.
    pub members: Vec<String>,
    /// Shared libraries the output was linked against.
    pub shared: Vec<PathBuf>,
}

pub fn parse(map: &str) -> Inputs {
    let mut inp = Inputs::default();
    let mut in_members = false;
    for line in map.lines() {
        if line.starts_with("Archive member included") {
            in_members = true;
            continue;
        }
        if in_members && !line.is_empty() && !line.starts_with(' ') {
            // `libfoo.a(member.o)`, then (here or on the next line) the referencing file.
            match line.split_whitespace().next().filter(|m| m.ends_with(')') && m.contains('(')) {
                Some(m) => {
                    inp.members.push(m.to_string());
                    continue;
                }
                None => in_members = false,
            }
        }
        let Some(path) = line.strip_prefix("LOAD ") else { continue };
        let p = PathBuf::from(path.trim());
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let list = if name.ends_with(".a") {
            continue;
        } else if name.contains(".so") {
            &mut inp.shared
        } else {
            &mut inp.objects
        };
        if !list.contains(&p) {
            list.push(p);
        }
    }
    inp.members.dedup();
    inp
}

#[cfg(test)]
mod tests {
    #[test]
    fn loads_and_members() {
        let map = "Archive member included to satisfy reference by file (symbol)\n\nlibw2.a(w2.o)                 /tmp/cc1.o (wrap2_alloc)\n\nAs-needed library included to satisfy reference by file (symbol)\n\nlibw.so  /tmp/cc1.o (wrap_alloc)\n\nLOAD /usr/lib/x86_64-linux-gnu/Scrt1.o\nLOAD /tmp/cc1.o\nLOAD ./libw.so\nLOAD libw2.a\nLOAD /lib/x86_64-linux-gnu/libc.so.6\nLOAD ./libw.so\n";
        let i = super::parse(map);
        assert_eq!(i.members, vec!["libw2.a(w2.o)"]);
        assert_eq!(i.shared.len(), 2);
        assert_eq!(i.objects.len(), 2);
    }
}
