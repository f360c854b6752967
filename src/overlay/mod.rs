//! The environment overlay: the non-secret chart values (a ConfigMap) and the secret set (a SOPS-encrypted
//! Secret) that a Flux HelmRelease of `chart/dify` consumes. This module plans an overlay from the desired
//! settings and what the ops repo already holds; it reads and writes no file itself.
//!
//! Architecture invariants: a secret, once generated, is carried over from the existing encrypted overlay and
//! never regenerated unless rotated by name. sync owns only what it generates: every other key of the Secret,
//! label, annotation or field is carried through re-encryption unchanged. Without the operator's identity, the
//! existing ciphertext is kept byte for byte and only non-secret values change; what would need a re-encryption
//! is refused rather than lose a key.

mod changes;
mod helmrelease;
mod names;
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

use names::labels;
pub use names::{SECRETS_FILE, SECRETS_SECRET, VALUES_CONFIGMAP, VALUES_FILE};

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
    let decrypted = decrypt_existing(existing, request.identities)?;
    let (set, changes) = SecretSet::carry_over(&decrypted.manifest, request.rotate)?;
    let manifest = carry_into(env, &set, &decrypted.manifest);
    reencrypt_if_changed(env, existing, &decrypted, &manifest, changes, request.now)
}

fn decrypt_existing(existing: &str, identities: &[age::x25519::Identity]) -> Result<sops::Decrypted> {
    sops::decrypt(existing, identities).with_context(|| {
        format!(
            "cannot decrypt the existing {SECRETS_FILE} with the given age identity: is it one of the file's \
             recipients, and is the file intact? Nothing was changed"
        )
    })
}

/// The existing file when neither the manifest nor the recipients changed (byte for byte: no diff, no commit);
/// else the manifest re-encrypted for the config's recipients, with the changes that say why and what was kept.
fn reencrypt_if_changed(
    env: &Environment,
    existing: &str,
    decrypted: &sops::Decrypted,
    manifest: &Value,
    mut changes: Vec<Change>,
    now: SystemTime,
) -> Result<(String, Vec<Change>)> {
    let recipients = changes::recipients(&decrypted.recipients, &env.recipients.iter().collect::<Vec<_>>());
    if *manifest == decrypted.manifest && recipients.is_none() {
        return Ok((existing.to_string(), changes));
    }
    changes.extend(recipients);
    let file = decrypted.reencrypt(manifest, &env.recipients, now).context("re-encrypting the Secret")?;
    if changes.is_empty() && file != existing {
        changes.push(Change::Reformatted(SECRETS_FILE));
    }
    let set_by_hand: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::SecretSet { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let kept: Vec<String> = foreign_keys(manifest).into_iter().filter(|k| !set_by_hand.contains(&k.as_str())).collect();
    if !kept.is_empty() && file != existing {
        changes.push(Change::Kept(kept));
    }
    Ok((file, changes))
}

/// No identity: the ciphertext stays as it is, which is only right when it already holds every secret for the
/// same Secret object. Re-encrypting is impossible without the identity, and would drop every key sync does not
/// generate, so whatever needs it is refused with the fix.
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
    let foreign = foreign_keys(&readable);
    let would_lose = if foreign.is_empty() {
        String::new()
    } else {
        format!(
            "; it holds {} key(s) sync does not generate ({}), which only a re-encryption with the identity carries \
             over",
            foreign.len(),
            foreign.join(", ")
        )
    };
    let missing: Vec<&str> = SECRET_NAMES.iter().copied().filter(|n| !present.contains(n)).collect();
    if !missing.is_empty() {
        bail!(
            "the existing {SECRETS_FILE} lacks {}: adding a secret means re-encrypting the Secret, which needs the \
             operator's age identity (set SOPS_AGE_KEY_FILE or pass --identity){would_lose}. Nothing was changed",
            missing.join(", ")
        );
    }
    if readable["metadata"]["namespace"] != json!(env.namespace) {
        bail!(
            "the namespace changed to {}: re-encrypting the Secret needs the operator's age identity (set \
             SOPS_AGE_KEY_FILE or pass --identity){would_lose}. Nothing was changed",
            env.namespace
        );
    }
    let recipients: Vec<String> = readable["sops"]["age"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["recipient"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(change) = changes::recipients(&recipients, &env.recipients.iter().collect::<Vec<_>>()) {
        tracing::warn!(
            "the config's recipients differ from the Secret's ({change}); without the operator's identity the \
             Secret stays encrypted for its old recipients: sync with SOPS_AGE_KEY_FILE set to re-encrypt it"
        );
    }
    Ok((existing.to_string(), Vec::new()))
}

/// The Secret manifest with sync's part replaced and everything else carried over: sync owns `apiVersion`,
/// `kind`, the name, namespace and its two labels, `type`, and the generated keys of `stringData`. Other keys
/// (of `stringData` and `data`), labels, annotations and fields stay as they are, in their order.
fn carry_into(env: &Environment, set: &SecretSet, existing: &Value) -> Value {
    let fresh = secret_manifest(env, set);
    let Some(mut manifest) = existing.as_object().cloned() else { return fresh };
    for field in ["apiVersion", "kind", "type"] {
        manifest.insert(field.into(), fresh[field].clone());
    }
    let mut metadata = manifest.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    metadata.insert("name".into(), fresh["metadata"]["name"].clone());
    metadata.insert("namespace".into(), fresh["metadata"]["namespace"].clone());
    let mut labels = metadata.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.extend(fresh["metadata"]["labels"].as_object().cloned().unwrap_or_default());
    metadata.insert("labels".into(), Value::Object(labels));
    manifest.insert("metadata".into(), Value::Object(metadata));
    let mut data = manifest.get("stringData").and_then(Value::as_object).cloned().unwrap_or_default();
    data.extend(fresh["stringData"].as_object().cloned().unwrap_or_default());
    manifest.insert("stringData".into(), Value::Object(data));
    Value::Object(manifest)
}

/// Keys of a Secret manifest (plain or SOPS: key names are never encrypted) that sync does not generate.
fn foreign_keys(manifest: &Value) -> Vec<String> {
    ["stringData", "data"]
        .iter()
        .filter_map(|field| manifest[*field].as_object())
        .flat_map(|m| m.keys())
        .filter(|k| !SECRET_NAMES.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// What `secret set` changes.
pub struct SetRequest<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// The reason to set a key sync generates (`--force`).
    pub force: Option<&'a str>,
    pub identities: &'a [age::x25519::Identity],
    pub now: SystemTime,
}

/// `secret set`: the Secret file with `name` set to the value, re-encrypted for the config's recipients; every
/// other key is carried over. Unchanged (the same file, no change) when the key already holds that value.
pub fn set_secret(env: &Environment, existing: Option<&str>, request: &SetRequest) -> Result<(String, Vec<Change>)> {
    let name = request.name;
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        && name != "."
        && name != "..";
    if !valid {
        bail!("'{name}' is not a Secret key: use letters, digits, '-', '_' and '.' (at most 253)");
    }
    let reason = request.force.map(str::trim);
    if reason == Some("") {
        bail!("--force needs a reason, e.g. --force \"SECRET_KEY of the install we migrate from\"");
    }
    if SECRET_NAMES.contains(&name) && reason.is_none() {
        bail!(
            "{name} is generated by sync: `dify-gitops sync --rotate {name}` gives it a new value; to set it by hand \
             anyway, pass --force with the reason (it goes into the commit message)"
        );
    }
    if request.value.is_empty() {
        bail!("the value for {name} is empty: pipe it on stdin or give --from-file");
    }
    let existing = existing.with_context(|| {
        format!("the environment has no {SECRETS_FILE} yet: run `dify-gitops sync` first, then set {name}")
    })?;
    if request.identities.is_empty() {
        bail!("setting a secret needs the operator's age identity: set SOPS_AGE_KEY_FILE or pass --identity");
    }
    let decrypted = decrypt_existing(existing, request.identities)?;
    if decrypted.manifest["data"].get(name).is_some() {
        bail!("{name} is under `data` (base64) in {SECRETS_FILE}; edit it there with `sops edit`");
    }
    let (set, mut changes) = SecretSet::carry_over(&decrypted.manifest, &[])?;
    let mut manifest = carry_into(env, &set, &decrypted.manifest);
    let old = manifest["stringData"].get(name).cloned();
    if old.as_ref().and_then(Value::as_str) != Some(request.value) {
        manifest["stringData"][name] = Value::String(request.value.to_string());
        changes.push(Change::SecretSet {
            name: name.to_string(),
            replaced: old.is_some(),
            reason: reason.map(str::to_string),
        });
    }
    reencrypt_if_changed(env, existing, &decrypted, &manifest, changes, request.now)
}

/// One key of the Secret, as `secret list` shows it: its name, and whether sync generates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub name: String,
    pub generated: bool,
}

/// The keys of a SOPS-encrypted Secret file (names are never encrypted: no identity needed), in file order.
pub fn list_secrets(existing: &str) -> Result<Vec<Listed>> {
    if !sops::is_sops(existing) {
        bail!("{SECRETS_FILE} is not SOPS-encrypted: a plain Secret must never be in the ops repo");
    }
    let readable: Value = serde_saphyr::from_str(existing).context("the Secret file is not YAML")?;
    Ok(["stringData", "data"]
        .iter()
        .filter_map(|field| readable[*field].as_object())
        .flat_map(|m| m.keys())
        .map(|name| Listed { name: name.clone(), generated: SECRET_NAMES.contains(&name.as_str()) })
        .collect())
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
#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Overrides;

    fn identity() -> age::x25519::Identity {
        age::x25519::Identity::generate()
    }

    fn env_for(recipients: &[&age::x25519::Identity]) -> Environment {
        let list: Vec<String> = recipients.iter().map(|i| i.to_public().to_string()).collect();
        let text = format!("environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{}]\n", list.join(", "));
        crate::config::parse(&text, Path::new("dify-gitops.yaml"), None, &Overrides::default()).unwrap()
    }

    fn request<'a>(identities: &'a [age::x25519::Identity], rotate: &'a [String]) -> Request<'a> {
        Request { host: "192.0.2.10", identities, rotate, now: SystemTime::now(), served_helmrelease_api: None }
    }

    /// The overlay's Secret as sync writes it, plus a key, a label and an annotation added by hand.
    fn with_hand_edits(env: &Environment, identities: &[age::x25519::Identity]) -> String {
        let (file, _) = plan_secrets(env, None, &request(identities, &[])).unwrap();
        let mut manifest = sops::decrypt(&file, identities).unwrap().manifest;
        manifest["stringData"]["openai-api-key"] = json!("sk-hand");
        manifest["data"] = json!({"tls.crt": "Y2VydA=="});
        manifest["metadata"]["labels"]["team"] = json!("platform");
        manifest["metadata"]["annotations"] = json!({"example.com/owner": "ops"});
        sops::encrypt(&manifest, &env.recipients, SystemTime::now()).unwrap()
    }

    #[test]
    fn keys_labels_and_annotations_added_by_hand_survive_a_rotation_and_are_named() {
        let me = identity();
        let env = env_for(&[&me]);
        let ids = [me];
        let existing = with_hand_edits(&env, &ids);
        let (same, changes) = plan_secrets(&env, Some(&existing), &request(&ids, &[])).unwrap();
        assert_eq!((same.as_str(), changes.len()), (existing.as_str(), 0), "nothing to do: the file is kept");

        let rotate = ["redis-password".to_string()];
        let (file, changes) = plan_secrets(&env, Some(&existing), &request(&ids, &rotate)).unwrap();
        let manifest = sops::decrypt(&file, &ids).unwrap().manifest;
        assert_eq!(manifest["stringData"]["openai-api-key"], "sk-hand");
        assert_eq!(manifest["data"]["tls.crt"], "Y2VydA==");
        assert_eq!(manifest["metadata"]["labels"]["team"], "platform");
        assert_eq!(manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"], "dify-gitops");
        assert_eq!(manifest["metadata"]["annotations"]["example.com/owner"], "ops");
        assert_eq!(
            changes,
            [Change::SecretRotated("redis-password"), Change::Kept(vec!["openai-api-key".into(), "tls.crt".into()])]
        );
        assert!(changes.iter().all(|c| !c.to_string().contains("sk-hand")));
    }

    #[test]
    fn without_an_identity_a_needed_re_encryption_is_refused_naming_the_keys_it_would_lose() {
        let me = identity();
        let env = env_for(&[&me]);
        let ids = [me];
        let existing = with_hand_edits(&env, &ids);
        let (kept, changes) = plan_secrets(&env, Some(&existing), &request(&[], &[])).unwrap();
        assert_eq!((kept.as_str(), changes.len()), (existing.as_str(), 0));

        let mut moved = env_for(&[&ids[0]]);
        moved.namespace = "elsewhere".into();
        let error = plan_secrets(&moved, Some(&existing), &request(&[], &[])).unwrap_err().to_string();
        assert!(error.contains("2 key(s) sync does not generate (openai-api-key, tls.crt)"), "{error}");
        assert!(error.contains("SOPS_AGE_KEY_FILE") && !error.contains("sk-hand"), "{error}");
    }

    #[test]
    fn a_changed_recipient_list_re_encrypts_and_names_who_gained_and_lost_access() {
        let (me, newcomer) = (identity(), identity());
        let env = env_for(&[&me]);
        let ids = [me];
        let existing = with_hand_edits(&env, &ids);
        let both = env_for(&[&ids[0], &newcomer]);
        let (file, changes) = plan_secrets(&both, Some(&existing), &request(&ids, &[])).unwrap();
        let added = newcomer.to_public().to_string();
        assert_eq!(changes[0], Change::Recipients { added: vec![added.clone()], removed: vec![] });
        let only_new = env_for(&[&newcomer]);
        let (file, changes) = plan_secrets(&only_new, Some(&file), &request(&ids, &[])).unwrap();
        let removed = ids[0].to_public().to_string();
        assert_eq!(changes[0], Change::Recipients { added: vec![], removed: vec![removed] });
        let manifest = sops::decrypt(&file, &[newcomer]).unwrap().manifest;
        assert_eq!(manifest["stringData"]["openai-api-key"], "sk-hand");
    }

    #[test]
    fn set_secret_adds_replaces_and_guards_generated_keys() {
        let me = identity();
        let env = env_for(&[&me]);
        let ids = [me];
        let (existing, _) = plan_secrets(&env, None, &request(&ids, &[])).unwrap();
        let set = |file: &str, name: &str, value: &str, force: Option<&str>| {
            let request = SetRequest { name, value, force, identities: &ids, now: SystemTime::now() };
            set_secret(&env, Some(file), &request)
        };
        let (file, changes) = set(&existing, "openai-api-key", "sk-1", None).unwrap();
        assert_eq!(changes, [Change::SecretSet { name: "openai-api-key".into(), replaced: false, reason: None }]);
        let (again, changes) = set(&file, "openai-api-key", "sk-1", None).unwrap();
        assert_eq!((again.as_str(), changes.len()), (file.as_str(), 0), "the same value changes nothing");
        let (file, changes) = set(&file, "openai-api-key", "sk-2", None).unwrap();
        assert_eq!(changes, [Change::SecretSet { name: "openai-api-key".into(), replaced: true, reason: None }]);
        assert_eq!(sops::decrypt(&file, &ids).unwrap().manifest["stringData"]["openai-api-key"], "sk-2");

        let refused = set(&file, "redis-password", "x", None).unwrap_err().to_string();
        assert!(refused.contains("--rotate redis-password") && refused.contains("--force"), "{refused}");
        assert!(set(&file, "redis-password", "x", Some("restored")).is_ok());
        assert!(set(&file, "a/b", "x", None).unwrap_err().to_string().contains("not a Secret key"));
        assert!(set(&file, "k", "", None).unwrap_err().to_string().contains("empty"));
        let listed = list_secrets(&file).unwrap();
        assert!(listed.contains(&Listed { name: "openai-api-key".into(), generated: false }));
        assert!(listed.contains(&Listed { name: "redis-password".into(), generated: true }));
    }
}
