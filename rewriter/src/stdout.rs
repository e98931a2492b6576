//! Writing to standard output without panicking: `print!` panics when the reader
//! has gone (`allocsite analyze BIN | head`), and a panic is never the answer to
//! something the user did.

use std::io::{ErrorKind, Write};

/// Writes `text` to standard output. A reader that went away is not an error
/// (like `head` closing the pipe); anything else is, named as `stdout`.
pub fn write(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(format!("stdout: cannot write: {e}")),
        _ => Ok(()),
    }
}
