//! Allocator settings for CPU training.
//!
//! A training step allocates and frees many activation-sized buffers (tens of MB each). glibc
//! serves allocations above its mmap threshold with fresh `mmap`s and returns them on free, so
//! every step pays for the kernel zeroing those pages again: with EfficientNet-Lite0 at 224² the
//! page faults took a tenth of a training step and a third of inference (BENCHMARKS.md). Keeping
//! freed memory in the heap for reuse removes that cost, at the price of the process holding on to
//! its peak memory until it exits.

/// Environment variable that keeps glibc's default allocator behaviour when set to `1`.
pub const DEFAULT_MALLOC_ENV: &str = "KILN_DEFAULT_MALLOC";

/// Serves large allocations from the reusable heap instead of fresh mappings (glibc on Linux;
/// elsewhere, or when the user set `KILN_DEFAULT_MALLOC=1` or any `MALLOC_*` tuning, nothing).
pub fn tune_allocator() {
    let user_tuned = std::env::vars_os().any(|(key, value)| {
        let key = key.to_string_lossy();
        key.starts_with("MALLOC_") || (key == DEFAULT_MALLOC_ENV && value == "1")
    });
    if user_tuned {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
