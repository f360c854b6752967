//! Which Flux APIs the cluster serves. NKP bundles Flux 2.2 (NKP 2.12, HelmRelease v2beta2 only) up to 2.8;
//! HelmRelease `v2` exists from Flux 2.3 (NKP 2.13). `init` writes the one served, `sync` follows an upgrade.

use anyhow::{Result, bail};
use serde::Serialize;

/// Which HelmRelease API the cluster's Flux serves: v2 from Flux 2.3 (NKP 2.13), only v2beta2 on Flux 2.2 (NKP 2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HelmReleaseApi {
    V2,
    V2beta2,
}

impl HelmReleaseApi {
    /// The manifest's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            HelmReleaseApi::V2 => "helm.toolkit.fluxcd.io/v2",
            HelmReleaseApi::V2beta2 => "helm.toolkit.fluxcd.io/v2beta2",
        }
    }
}

/// Asks the API server which HelmRelease versions it serves.
pub async fn served_helmrelease_api(client: &kube::Client) -> Result<HelmReleaseApi> {
    let group = kube::discovery::group(client, "helm.toolkit.fluxcd.io").await.map_err(|_| {
        anyhow::anyhow!(
            "the cluster serves no HelmRelease API (helm.toolkit.fluxcd.io): is Flux installed? \
             Pass --helmrelease-api v2 (Flux >= 2.3) or v2beta2 (Flux 2.2) to choose without asking"
        )
    })?;
    let versions: Vec<&str> = group.versions().collect();
    if versions.contains(&"v2") {
        Ok(HelmReleaseApi::V2)
    } else if versions.contains(&"v2beta2") {
        Ok(HelmReleaseApi::V2beta2)
    } else {
        bail!("the cluster serves HelmRelease {} only, older than Flux 2.2: upgrade Flux", versions.join(", "))
    }
}
