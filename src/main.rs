/// pingora allocates and frees small buffers on every request from every worker thread;
/// glibc's malloc serialises those threads on its arena locks (a tenth of the proxy's CPU in a
/// profile), mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
