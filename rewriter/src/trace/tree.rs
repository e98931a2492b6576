//! The process tree as seen by the tracer: one node per process (not per thread), in
//! creation order, with its parent, every path it exec'd and how it ended.

use super::sys::Pid;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Signal number, and whether a core was dumped.
    Signal(i32, bool),
}

impl Serialize for Exit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match *self {
            Exit::Code(c) => m.serialize_entry("code", &c)?,
            Exit::Signal(sig, core) => {
                m.serialize_entry("signal", &sig)?;
                if core {
                    m.serialize_entry("core", &true)?;
                }
            }
        }
        m.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub pid: Pid,
    /// The tracee that created it (0 for CMD itself).
    pub parent: Pid,
    /// Every program it ran, in order (the path of a successful `execve`).
    pub execs: Vec<String>,
    /// Threads it ever had, counting the main one.
    pub threads: u32,
    /// None when the tracer stopped following it (`--detach-after`, tracer exit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

#[derive(Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn add(&mut self, pid: Pid, parent: Pid) -> usize {
        self.nodes.push(Node { pid, parent, execs: Vec::new(), threads: 1, exit: None, detached: false });
        self.nodes.len() - 1
    }
}
