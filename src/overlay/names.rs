//! What the overlay's files and objects are called, and the labels sync puts on its objects.

use serde_json::{Value, json};

/// File names inside the environment's directory.
pub const VALUES_FILE: &str = "dify-values.yaml";
pub const SECRETS_FILE: &str = "dify-secrets.sops.yaml";
/// Object names the HelmRelease refers to.
pub const VALUES_CONFIGMAP: &str = "dify-values";
pub const SECRETS_SECRET: &str = "dify-secrets";

/// The labels of the objects sync writes: who manages them, and that Flux reconciles on their change.
pub fn labels() -> Value {
    json!({"app.kubernetes.io/managed-by": "dify-gitops", "reconcile.fluxcd.io/watch": "Enabled"})
}
