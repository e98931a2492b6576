//! What a pointer that is no chunk points into, from /proc/self/maps (read without
//! allocating; only on the rare free of an unindexed pointer).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Region {
    Unmapped,
    /// A thread's stack (the `[stack]` mapping, or the one holding this thread's frame).
    Stack,
    /// A file's mapping (a program or library image, a mapped file).
    File,
    /// The heap or anonymous memory: may hold glibc chunks, [lo, hi).
    Anon(usize, usize),
}

fn hex(s: &[u8]) -> usize {
    s.iter().fold(0usize, |v, &c| v.wrapping_mul(16).wrapping_add((c as char).to_digit(16).unwrap_or(0) as usize))
}

/// Find the mapping of `p` (and whether it is the mapping of `here`, a local's address).
pub fn region(p: usize) -> Region {
    let here = &p as *const usize as usize;
    let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Region::Anon(p, p + 1);
    }
    let mut buf = [0u8; 8192];
    let mut have = 0usize;
    let mut result = Region::Unmapped;
    'outer: loop {
        let n = unsafe { libc::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have) };
        if n <= 0 {
            break;
        }
        have += n as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..have].iter().position(|&c| c == b'\n') {
            let line = &buf[start..start + nl];
            start += nl + 1;
            let dash = line.iter().position(|&c| c == b'-').unwrap_or(0);
            let sp = line.iter().position(|&c| c == b' ').unwrap_or(0);
            let (lo, hi) = (hex(&line[..dash]), hex(&line[dash + 1..sp.max(dash + 1)]));
            if p < lo || p >= hi {
                continue;
            }
            // fields: range perms offset dev inode [path]
            let mut fields = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
            let inode = fields.nth(4).unwrap_or(b"0");
            let path = fields.next().unwrap_or(b"");
            result = if path.starts_with(b"[stack") || (here >= lo && here < hi) {
                Region::Stack
            } else if inode != b"0" {
                Region::File
            } else {
                Region::Anon(lo, hi)
            };
            break 'outer;
        }
        buf.copy_within(start..have, 0);
        have -= start;
        if have == buf.len() {
            have = 0; // (a line longer than the buffer: skip it)
        }
    }
    unsafe { libc::close(fd) };
    result
}
