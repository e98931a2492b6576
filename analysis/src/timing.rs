//! Developer aid: `ALLOCSITE_TIMES=1` prints how long each phase of the analysis
//! took (wall time, to stderr), to see where the rewrite-time budget goes (issue
//! 14: ≤ 0.5 s for a 7.3 MB sqlite3). Off, it costs one environment lookup.

use std::time::Instant;

pub struct Phases {
    on: bool,
    start: Instant,
    last: Instant,
}

impl Phases {
    pub fn new() -> Self {
        let now = Instant::now();
        Phases { on: std::env::var_os("ALLOCSITE_TIMES").is_some(), start: now, last: now }
    }

    /// The phase that just ended.
    pub fn mark(&mut self, what: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!("allocsite: {what:<24} {:7.1} ms (at {:7.1} ms)", (now - self.last).as_secs_f64() * 1e3, (now - self.start).as_secs_f64() * 1e3);
            self.last = now;
        }
    }
}
