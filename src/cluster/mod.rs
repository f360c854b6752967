//! Everything that talks to the Kubernetes API server: connecting, finding Kommander's Traefik and its
//! load-balancer address, the Flux APIs served, and the preflight checks. Nothing outside this module calls the API server.

pub mod flux;
mod footprint;
pub mod preflight;
mod quantity;
pub mod traefik;

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A connection to the API server, as [`connect`] makes it: what the other modules hand to this one's functions.
pub use kube::Client;

/// A client for the given kubeconfig file and context (defaults: $KUBECONFIG or ~/.kube/config, current context;
/// in a pod, the in-cluster service account).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<kube::Client> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {} (set --kubeconfig or KUBECONFIG)", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await.context("loading ~/.kube/config")?,
        None => kube::Config::infer().await.context("no kubeconfig found: set --kubeconfig or KUBECONFIG")?,
    };
    let server = config.cluster_url.to_string();
    kube::Client::try_from(config).with_context(|| format!("building a client for {server}"))
}
