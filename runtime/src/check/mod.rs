//! Heap checks (issue 12), off unless `ALLOCSITE_CHECK` or `rewrite --check` asks:
//! poisoning, an end-of-area canary, double and wrong frees, a quarantine of freed
//! chunks. The interposed allocators call in here only behind `on()`, one predictable
//! branch on a global, so a run without checks pays nothing else.
//!
//! This layer sits beside `hooks`/`interpose` (it uses the index and the sites below
//! it); what a finding prints is symbolized by `findings.rs` in the report layer, which
//! `lib.rs` installs as `finding::SINK` at start-up.
pub mod options;
pub mod nested;
pub mod pattern;
pub mod freed;
pub mod finding;
pub mod maps;
pub mod quarantine;
pub mod recycle;
pub mod chunk;
pub mod spanobj;
pub mod baked;
pub mod sub;
pub mod gap;

#[inline(always)]
pub fn on() -> bool {
    options::FLAGS.load(core::sync::atomic::Ordering::Relaxed) != 0
}

/// The checks' locks (fork holds them across `fork`, before the index locks: none of
/// them is held while an index lock is taken, except the quarantine's DRAIN, taken
/// first, whose holder may take any other while it frees a batch).
pub fn locks() -> [&'static crate::sys::Spin; 6] {
    [&quarantine::DRAIN, &chunk::PRE_LOCK, &finding::LOCK, &quarantine::LOCK, &sub::LOCK, &gap::LOCK]
}
