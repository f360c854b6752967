//! Applies YAML manifests (a fixture such as `tests/fixtures/nkp/`) with server-side apply, waiting for each
//! CustomResourceDefinition to be established so later documents and tests can use it at once.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};

const FIELD_MANAGER: &str = "dify-gitops-testbed";

/// Applies every `*.yaml` file of `dir` (in name order) or a single file; returns how many objects it applied.
pub async fn apply_manifests(client: &kube::Client, path: &Path) -> Result<usize> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let file = entry?.path();
            if file.extension().is_some_and(|e| e == "yaml") {
                files.push(file);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut applied = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("parsing YAML in {}", file.display()))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            apply_one(client, doc).await.with_context(|| format!("applying a document of {}", file.display()))?;
            applied += 1;
        }
    }
    Ok(applied)
}

async fn apply_one(client: &kube::Client, doc: serde_json::Value) -> Result<()> {
    let object: DynamicObject = serde_json::from_value(doc).context("not a Kubernetes object")?;
    let types = object.types.clone().context("object without apiVersion/kind")?;
    let name = object.metadata.name.clone().context("object without metadata.name")?;
    let gvk = GroupVersionKind::try_from(&types).context("bad apiVersion")?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the API server does not serve {}/{}", types.api_version, types.kind))?;
    let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (kube::discovery::Scope::Namespaced, None) => bail!("{} {name} needs metadata.namespace", types.kind),
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .with_context(|| format!("server-side apply of {} {name}", types.kind))?;
    if types.kind == "CustomResourceDefinition" {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        tokio::time::timeout(Duration::from_secs(30), await_condition(crds, &name, conditions::is_crd_established()))
            .await
            .with_context(|| format!("CRD {name} not established within 30 s"))?
            .with_context(|| format!("watching CRD {name}"))?;
    }
    Ok(())
}
