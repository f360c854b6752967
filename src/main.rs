use std::process::ExitCode;

use clap::Parser;
use dify_gitops::cli::Cli;
use dify_gitops::exit::{Exit, exit_for};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { Exit::Usage as u8 } else { Exit::Ok as u8 });
        }
    };
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("DIFY_GITOPS_LOG").unwrap_or_else(|_| EnvFilter::new(level)))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dify-gitops: error: starting the async runtime: {error}");
            return ExitCode::from(Exit::Error as u8);
        }
    };
    match runtime.block_on(dify_gitops::commands::run(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        // `dify-gitops … | head`: the reader has what it wanted; stopping is success, not an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::from(Exit::Ok as u8),
        Err(error) => {
            eprintln!("dify-gitops: error: {error:#}");
            ExitCode::from(exit_for(&error) as u8)
        }
    }
}

/// Whether writing the result failed because stdout's reader went away (EPIPE; Rust ignores SIGPIPE).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
