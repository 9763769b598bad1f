//! The `cache-reserve` binary: telemetry, command line, run.

use std::{io::IsTerminal, process::ExitCode};

use cache_reserve::cli::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Rust's allocations go to mimalloc: a reserve hit spent about a tenth of its time in glibc's `malloc`
/// and `free`, and mimalloc cut the CPU time per reserve hit by 10-15 % (BENCHMARKS.md, issue #11 third
/// session), for about 20 MiB more resident at start and a fifth more under many large misses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tune_malloc();
    tokio::runtime::Runtime::new().expect("the async runtime starts").block_on(run())
}

/// glibc's allocator (still used by the C code linked in: SQLite) keeps freed memory in per-thread arenas
/// and, after the first large free, serves even megabyte-sized buffers from them, holding memory beyond
/// what is live. Large buffers come straight from the kernel (and go back to it), and two arenas do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

/// A command whose output is piped into `head` ends quietly when the pipe closes, as Unix tools do
/// (Rust ignores SIGPIPE, and printing to a closed pipe would panic). The server keeps ignoring it.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: resets one signal's disposition to the default; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    // PostgreSQL's notices (e.g. "relation already exists, skipping" on every start) are not news.
    let default_level =
        if matches!(cli.command, Command::Serve(_)) { "info,sqlx::postgres::notice=warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cache-reserve: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
