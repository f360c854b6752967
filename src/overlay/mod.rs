//! The environment overlay: the non-secret chart values (a ConfigMap) and the secret set (a SOPS-encrypted
//! Secret) that a Flux HelmRelease of `chart/dify` consumes. This module plans an overlay from the desired
//! settings and what the ops repo already holds; it reads and writes no file itself.
//!
//! Architecture invariant: a secret, once generated, is carried over from the existing encrypted overlay and
//! never regenerated unless rotated by name. Without the operator's identity, the existing ciphertext is kept
//! byte for byte and only non-secret values change.

mod changes;
mod helmrelease;
mod secrets;
mod values;

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub use changes::{Change, commit_message};
pub use helmrelease::HELMRELEASE_FILE;
pub use secrets::{SECRET_NAMES, SecretSet};
pub use values::PlainValues;

use crate::config::Environment;
use crate::sops;

/// File names inside the environment's directory.
pub const VALUES_FILE: &str = "dify-values.yaml";
pub const SECRETS_FILE: &str = "dify-secrets.sops.yaml";
/// Object names the HelmRelease refers to.
pub const VALUES_CONFIGMAP: &str = "dify-values";
pub const SECRETS_SECRET: &str = "dify-secrets";

/// What the ops repo holds now for the environment (file texts, as read).
#[derive(Debug, Default, Clone)]
pub struct Existing {
    pub values_file: Option<String>,
    pub secrets_file: Option<String>,
    /// The HelmRelease `init` wrote, if the directory has one.
    pub helmrelease_file: Option<String>,
}

/// What to write, and what changed compared with [`Existing`].
pub struct Plan {
    pub values_file: String,
    pub secrets_file: String,
    /// The HelmRelease moved to the API the cluster serves, when it was on another.
    pub helmrelease_file: Option<String>,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Inputs that are not in the environment config.
pub struct Request<'a> {
    /// The discovered load-balancer address (or a given host).
    pub host: &'a str,
    /// The operator's age identities; without them existing secrets cannot be read or changed.
    pub identities: &'a [age::x25519::Identity],
    /// Secret names to regenerate.
    pub rotate: &'a [String],
    pub now: SystemTime,
    /// The HelmRelease API the cluster's Flux serves; None when unknown (no cluster asked, or no Flux).
    pub served_helmrelease_api: Option<crate::cluster::flux::HelmReleaseApi>,
}

pub fn plan(env: &Environment, existing: &Existing, request: &Request) -> Result<Plan> {
    for name in request.rotate {
        secrets::check_rotatable(name)?;
    }
    let desired_values = PlainValues::for_environment(env, request.host);
    let values_file = values::configmap_file(env, &desired_values)?;
    let old_values = match &existing.values_file {
        Some(text) => Some(PlainValues::from_configmap_file(text).context("reading the existing values ConfigMap")?),
        None => None,
    };
    let mut changes = changes::values(old_values.as_ref(), &desired_values);

    let (secrets_file, secret_changes) = plan_secrets(env, existing.secrets_file.as_deref(), request)?;
    changes.extend(secret_changes);
    // A byte-level difference with no named change (formatting, a renamed namespace label) still counts.
    if changes.is_empty() && existing.values_file.as_deref() != Some(values_file.as_str()) {
        changes.push(Change::Reformatted(VALUES_FILE));
    }
    let retargeted = match (&existing.helmrelease_file, request.served_helmrelease_api) {
        (Some(text), Some(served)) => helmrelease::retarget(text, served),
        _ => None,
    };
    let helmrelease_file = retargeted.map(|(text, change)| {
        changes.push(change);
        text
    });
    Ok(Plan { values_file, secrets_file, helmrelease_file, changes })
}

fn plan_secrets(env: &Environment, existing: Option<&str>, request: &Request) -> Result<(String, Vec<Change>)> {
    let Some(existing) = existing else {
        let set = SecretSet::generate_all()?;
        let file = sops::encrypt(&secret_manifest(env, &set), &env.recipients, request.now)
            .context("encrypting the overlay's Secret")?;
        return Ok((file, SECRET_NAMES.iter().map(|n| Change::SecretGenerated(n)).collect()));
    };
    if request.identities.is_empty() {
        return keep_without_identity(env, existing, request);
    }
    let decrypted = sops::decrypt(existing, request.identities).with_context(|| {
        format!(
            "cannot decrypt the existing {SECRETS_FILE} with the given age identity: is it one of the file's \
             recipients, and is the file intact? Nothing was changed"
        )
    })?;
    let (set, mut changes) = SecretSet::carry_over(&decrypted.manifest, request.rotate)?;
    let manifest = secret_manifest(env, &set);
    let same_recipients = decrypted.recipients.iter().map(String::as_str).eq(env.recipients.iter());
    if manifest == decrypted.manifest && same_recipients {
        return Ok((existing.to_string(), changes));
    }
    if !same_recipients {
        changes.push(Change::Recipients);
    }
    let file = decrypted.reencrypt(&manifest, &env.recipients, request.now).context("re-encrypting the Secret")?;
    if changes.is_empty() && file != existing {
        changes.push(Change::Reformatted(SECRETS_FILE));
    }
    Ok((file, changes))
}

/// No identity: the ciphertext stays as it is, which is only right when it already holds every secret for the
/// same Secret object and recipients.
fn keep_without_identity(env: &Environment, existing: &str, request: &Request) -> Result<(String, Vec<Change>)> {
    if !request.rotate.is_empty() {
        bail!("rotating a secret needs the operator's age identity: set SOPS_AGE_KEY_FILE or pass --identity");
    }
    let readable: Value = serde_saphyr::from_str(existing).context("the existing Secret file is not YAML")?;
    if !sops::is_sops(existing) {
        bail!("the existing {SECRETS_FILE} is not SOPS-encrypted: a plain Secret must never be in the ops repo");
    }
    let present: Vec<&str> =
        readable["stringData"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let missing: Vec<&str> = SECRET_NAMES.iter().copied().filter(|n| !present.contains(n)).collect();
    if !missing.is_empty() {
        bail!(
            "the existing {SECRETS_FILE} lacks {}: adding a secret needs the operator's age identity \
             (SOPS_AGE_KEY_FILE or --identity)",
            missing.join(", ")
        );
    }
    if readable["metadata"]["namespace"] != json!(env.namespace) {
        bail!("the namespace changed to {}: re-encrypting the Secret needs the operator's age identity", env.namespace);
    }
    let recipients: Vec<&str> = readable["sops"]["age"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["recipient"].as_str()).collect())
        .unwrap_or_default();
    if !recipients.iter().copied().eq(env.recipients.iter()) {
        tracing::warn!("the recipients changed, but without the operator's identity the Secret keeps its old ones");
    }
    Ok((existing.to_string(), Vec::new()))
}

/// The plaintext Secret manifest (never written: only its encryption is).
fn secret_manifest(env: &Environment, set: &SecretSet) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRETS_SECRET, "namespace": env.namespace, "labels": labels()},
        "type": "Opaque",
        "stringData": set.to_string_data(),
    })
}

/// Labels on both overlay objects: Flux's helm-controller reconciles the release when they change.
fn labels() -> Value {
    json!({"app.kubernetes.io/managed-by": "dify-gitops", "reconcile.fluxcd.io/watch": "Enabled"})
}
