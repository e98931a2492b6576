//! Cold process-wide counters.
use core::sync::atomic::AtomicU64;

/// Hooked calls nested deeper than the per-thread stack records.
pub static DEPTH_OVERFLOWS: AtomicU64 = AtomicU64::new(0);
/// Allocations made while the runtime itself was working on the thread (signal
/// handlers interrupting it): not indexed.
pub static REENTRANT: AtomicU64 = AtomicU64::new(0);
/// Frees seen in the same situation (their records stay until the address is reused).
pub static REENTRANT_FREES: AtomicU64 = AtomicU64::new(0);
/// Allocations whose site could not be interned (site table full or metadata cap).
pub static NO_SITE: AtomicU64 = AtomicU64::new(0);
