//! The tracer's own memory, accounted by what it stores (not guessed from RSS): per
//! process and tree node, per breakpoint, per image (unwind table and symbols), per
//! learned function and per heap block remembered. Past `--max-mem` learning stops:
//! every breakpoint is removed and the tree keeps running, followed but not watched.

pub const PROC: u64 = 256;
pub const NODE: u64 = 160;
pub const BREAKPOINT: u64 = 96;
pub const BLOCK: u64 = 96;
pub const FUNCTION: u64 = 512;

pub struct Mem {
    pub used: u64,
    pub peak: u64,
    pub max: u64,
    /// Set once the bound was reached; learning stays off from then on.
    pub over: bool,
}

impl Mem {
    pub fn new(max: u64) -> Self {
        Mem { used: 0, peak: 0, max, over: false }
    }

    /// Account `n` more bytes; false (and `over` set) when that passes the bound.
    pub fn charge(&mut self, n: u64) -> bool {
        self.used += n;
        self.peak = self.peak.max(self.used);
        if self.used > self.max {
            self.over = true;
        }
        !self.over
    }

    pub fn release(&mut self, n: u64) {
        self.used = self.used.saturating_sub(n);
    }
}
