//! `dify-gitops-testbed`: starts the local control plane, applies fixtures, prints one JSON line when ready,
//! and tears everything down on SIGINT/SIGTERM or when the watched process is gone.
//!
//! ```text
//! dify-gitops-testbed [--fixture PATH]... [--watch-pid PID]
//! {"kubeconfig":"/tmp/dify-gitops-testbed-x/kubeconfig","server":"https://127.0.0.1:40123","pid":4242,...}
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use dify_gitops_testbed::{LocalCluster, apply_manifests};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "Run a throw-away etcd + kube-apiserver on loopback for tests and demos")]
struct Args {
    /// Manifests to apply once the API server is ready (a file or a directory of *.yaml).
    #[arg(long)]
    fixture: Vec<PathBuf>,
    /// Tear down when this process exits (the test runner that owns the testbed).
    #[arg(long)]
    watch_pid: Option<i32>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Handlers first: a SIGTERM that arrives while starting must still lead to a clean teardown.
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let cluster = LocalCluster::start().await?;
    let client = cluster.client().await?;
    let mut objects = 0;
    for path in &args.fixture {
        objects += apply_manifests(&client, path).await.with_context(|| format!("fixture {}", path.display()))?;
    }
    let ready = serde_json::json!({
        "kubeconfig": cluster.kubeconfig(),
        "server": cluster.server(),
        "dir": cluster.dir(),
        "pid": std::process::id(),
        "children": cluster.pids(),
        "startup_seconds": cluster.startup().as_secs_f64(),
        "fixture_objects": objects,
    });
    println!("{ready}");

    let watched_gone = async {
        match args.watch_pid {
            Some(pid) => {
                // SAFETY: kill with signal 0 only checks that the process exists.
                while unsafe { libc::kill(pid, 0) } == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        _ = watched_gone => {}
    }
    drop(cluster);
    Ok(())
}
