//! Allocator settings for the one-shot query commands (`query`, `backtest`).
//!
//! These evaluate with large short-lived buffers (a decoded selector is often tens of MB).
//! glibc returns such blocks to the kernel on free (they are mmapped, or trimmed from the
//! top of the heap), so the next buffer of the same size page-faults its memory in again:
//! a third of the backtest's CPU time was the kernel zeroing pages. Keeping freed memory for
//! reuse removes most of that (backtest of docs/examples/rules.yml over 8 days: 0.72 s ->
//! 0.58 s, system time 0.42 s -> 0.18 s; docs/BENCHMARKS.md). The process's peak memory is
//! unchanged; it just keeps it until exit, which a one-shot command does anyway. Long-lived
//! commands (`repl`) and `ingest`, whose memory bound is a goal, keep glibc's defaults.

/// Raises glibc's mmap and trim thresholds (see the module docs); a no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::keep_freed_memory();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    use std::os::raw::c_int;

    extern "C" {
        /// glibc's `mallopt(3)`.
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;

    pub fn keep_freed_memory() {
        // SAFETY: `mallopt` only sets allocator parameters (it takes glibc's arena lock and
        // may be called at any time); the arguments are documented parameter numbers and
        // in-range values. A failure leaves the defaults, which is harmless.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
