//! The `portcullis` binary: the allocator, then the commands of [`portcullis::cli`].

// The one unsafe call of the program is below, justified where it is made.
#![deny(unsafe_code)]

/// pingora allocates and frees small buffers on every request from every worker thread;
/// glibc's malloc serialises those threads on its arena locks (a tenth of the proxy's CPU in a
/// profile), mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    return_freed_memory_at_once();
    portcullis::cli::main()
}

/// mimalloc hands pages freed by a thread back to the OS only when that same thread calls
/// the allocator again after `purge_delay` (10 ms): a worker thread that goes idle keeps them.
/// After 3,000 idle connections closed, the process stayed at its peak (292 MiB) for good.
/// Purging at once returns them; `bench/ab.sh` measured no cost on the request path above
/// its noise (see SECURITY.md, "Memory per connection").
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    // `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike); the Rust
    // bindings leave it out "for stability", so it is named here.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores a process-wide option value, read at each purge;
    // mimalloc allows setting options at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}
