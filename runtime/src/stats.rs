//! Cold process-wide counters.
use core::sync::atomic::AtomicU64;

/// Hooked calls nested deeper than the per-thread stack records.
pub static DEPTH_OVERFLOWS: AtomicU64 = AtomicU64::new(0);
