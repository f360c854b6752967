//! The SOPS document format for Kubernetes Secret manifests encrypted for age recipients,
//! compatible with the `sops` CLI 3.13.2 and Flux's kustomize-controller.
//!
//! **Architecture invariant: this module does no I/O.** No files, processes or network: it maps
//! strings and values to strings and values. Plaintext therefore never reaches disk from here;
//! callers decide where ciphertext goes.
//!
//! What a file holds (see `getsops/sops` `sops.go`, `aes/cipher.go`, `stores/`):
//! - every value under a key matching `^(data|stringData)$` anywhere on its path is replaced by
//!   `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` (see [`cipher`]); empty strings stay empty; keys
//!   and all other values stay readable;
//! - a random 32-byte data key encrypts the values; it is age-encrypted and armored once per
//!   recipient into `sops.age[]`;
//! - `sops.mac` is SHA-512 over every non-null value (plaintext bytes, depth-first, document
//!   order), upper-case hex, encrypted with the data key and `lastmodified` as AAD. It detects
//!   any change to a value, to the order, or to which values are encrypted.
//!
//! Flux's kustomize-controller decrypts without checking the MAC; `sops -d` and [`decrypt`]
//! check it.

mod cipher;
mod keys;
mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use anyhow::{Context, bail};
use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha512};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use zeroize::Zeroizing;

pub use keys::{Recipients, parse_identities};

use cipher::{DataKey, IV_LEN};
use yaml::{Node, Scalar};

/// The `encrypted_regex` written into every file: only Secret payloads are encrypted.
pub const ENCRYPTED_REGEX: &str = "^(data|stringData)$";

/// The sops version written into `sops.version`.
pub const SOPS_VERSION: &str = "3.13.2";

/// `sha256("sops")`: the MAC's first bytes when `mac_only_encrypted` is set (sops.go).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b,
    0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Encrypts a manifest (a JSON object, key order kept) for the recipients: values under
/// `data`/`stringData` are encrypted, everything else stays readable and is covered by the MAC.
/// `now` becomes `lastmodified` (UTC, whole seconds).
pub fn encrypt(manifest: &Value, recipients: &Recipients, now: SystemTime) -> anyhow::Result<String> {
    encrypt_with(manifest, recipients, now, None)
}

/// Whether a YAML text is a SOPS file: its root mapping has `sops` metadata with a `mac`
/// (how Flux's kustomize-controller recognises one).
pub fn is_sops(yaml_text: &str) -> bool {
    let Ok(root) = yaml::parse(yaml_text) else {
        return false;
    };
    root.iter().any(|(k, v)| k == "sops" && matches!(v, Node::Map(m) if m.iter().any(|(k, _)| k == "mac")))
}

/// A decrypted and verified SOPS file.
pub struct Decrypted {
    /// The plaintext manifest, key order kept, `sops` metadata removed.
    pub manifest: Value,
    /// The file's age recipients (`sops.age[].recipient`), in file order.
    pub recipients: Vec<String>,
    /// The file's `lastmodified`, as written.
    pub last_modified: String,
    data_key: DataKey,
    /// Armored data key per recipient, reused when the recipients do not change.
    wrapped: Vec<(String, String)>,
    /// IVs of the file's ciphertexts by (AAD, plaintext bytes), as sops' own stash: re-encrypting
    /// an unchanged value with the same key gives the same ciphertext, so diffs stay minimal.
    ivs: IvStash,
}

/// IVs by AAD and plaintext bytes.
#[derive(Default)]
struct IvStash(HashMap<String, Vec<(cipher::Plain, [u8; IV_LEN])>>);

impl IvStash {
    fn insert(&mut self, aad: String, plain: cipher::Plain, iv: [u8; IV_LEN]) {
        self.0.entry(aad).or_default().push((plain, iv));
    }

    fn get(&self, aad: &str, plain: &[u8]) -> Option<[u8; IV_LEN]> {
        self.0.get(aad)?.iter().find(|(p, _)| p.as_slice() == plain).map(|(_, iv)| *iv)
    }
}

impl fmt::Debug for Decrypted {
    /// Never prints the manifest or key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("recipients", &self.recipients)
            .field("last_modified", &self.last_modified)
            .finish_non_exhaustive()
    }
}

impl Decrypted {
    /// Encrypts `manifest` as an update of this file. With the same recipients it keeps the data
    /// key, the armored keys and the ciphertext of every unchanged value, and when the manifest
    /// is unchanged it keeps `lastmodified` too, so the output is byte-identical to a file this
    /// module wrote. New recipients get a fresh data key.
    pub fn reencrypt(&self, manifest: &Value, recipients: &Recipients, now: SystemTime) -> anyhow::Result<String> {
        encrypt_with(manifest, recipients, now, Some(self))
    }
}

/// Decrypts a SOPS YAML file with any of the identities and verifies its MAC. A file that was
/// changed after encryption (a value, the order, the MAC or `lastmodified`) is refused. Errors
/// name paths, never plaintext values.
pub fn decrypt(yaml_text: &str, identities: &[age::x25519::Identity]) -> anyhow::Result<Decrypted> {
    let mut root = yaml::parse(yaml_text).context("could not read the SOPS file")?;
    let position =
        root.iter().position(|(k, _)| k == "sops").context("not a SOPS file: there is no top-level `sops` metadata")?;
    let (_, metadata) = root.remove(position);
    let meta = Metadata::from_node(metadata).context("the file's `sops` metadata is invalid")?;

    if identities.is_empty() {
        bail!("no age identity given to decrypt the file (recipients: {})", meta.recipients().join(", "));
    }
    let mut failures = Vec::new();
    let mut data_key = None;
    for (recipient, enc) in &meta.age {
        match keys::unwrap(enc, identities) {
            Ok(key) => {
                data_key = Some(key);
                break;
            }
            Err(e) => failures.push(format!("{recipient}: {e:#}")),
        }
    }
    let Some(data_key) = data_key else {
        bail!(
            "none of the given age identities can decrypt this file's data key; the file is encrypted for {} ({})",
            meta.recipients().join(", "),
            failures.join("; ")
        );
    };

    let mut hash = Sha512::new();
    if meta.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut ivs = IvStash::default();
    walk(&mut root, &mut Vec::new(), &mut |path, value| {
        let encrypted = meta.rule.encrypts(path);
        if encrypted {
            let Scalar::Str(text) = value else {
                bail!("the value should be encrypted but is not a string");
            };
            let aad = aad(path);
            let iv = if text.is_empty() { None } else { Some(cipher::parse(text)?.iv) };
            *value = cipher::decrypt(text, &data_key, &aad)?;
            if let (Some(iv), Some((plain, _))) = (iv, cipher::plain_bytes(value)?)
                && let Ok(iv) = <[u8; IV_LEN]>::try_from(iv.as_slice())
            {
                ivs.insert(aad, plain, iv);
            }
        }
        if (encrypted || !meta.mac_only_encrypted)
            && let Some((plain, _)) = cipher::plain_bytes(value)?
        {
            hash.update(&plain);
        }
        Ok(())
    })?;
    let computed = hex_upper(&hash.finalize());

    let mac_aad = go_rfc3339(&meta.last_modified)?;
    let stored = cipher::decrypt(&meta.mac, &data_key, &mac_aad).context(
        "the file's MAC cannot be decrypted: `sops.mac` or `sops.lastmodified` was modified after encryption; refusing the file",
    )?;
    let Scalar::Str(stored) = stored else {
        bail!("the file's MAC is not a string; refusing the file");
    };
    if stored != computed {
        bail!(
            "MAC mismatch: the file was modified after it was encrypted (a value, a key, the order or which values \
             are encrypted changed); refusing the file"
        );
    }
    if let Some(iv) = cipher::parse(&meta.mac).ok().and_then(|e| <[u8; IV_LEN]>::try_from(e.iv.as_slice()).ok()) {
        ivs.insert(format!("mac:{mac_aad}"), Zeroizing::new(stored.into_bytes()), iv);
    }

    let manifest = to_json(&Node::Map(root)).context("the decrypted manifest cannot be represented as JSON")?;
    Ok(Decrypted {
        manifest,
        recipients: meta.recipients().into_iter().map(str::to_owned).collect(),
        last_modified: meta.last_modified.clone(),
        data_key,
        wrapped: meta.age,
        ivs,
    })
}

fn encrypt_with(
    manifest: &Value,
    recipients: &Recipients,
    now: SystemTime,
    previous: Option<&Decrypted>,
) -> anyhow::Result<String> {
    let Node::Map(mut root) = from_json(manifest).context("the manifest cannot be written as YAML")? else {
        bail!("the manifest to encrypt must be a mapping (a Kubernetes object)");
    };
    if root.iter().any(|(k, _)| k == "sops") {
        bail!("the manifest has a top-level `sops` key, which SOPS reserves for its metadata");
    }
    let same_recipients = previous.filter(|p| p.recipients.iter().map(String::as_str).eq(recipients.iter()));
    let data_key = match same_recipients {
        Some(p) => p.data_key.clone(),
        None => cipher::new_data_key(),
    };
    let reuse_iv = |aad: &str, plain: &[u8]| -> [u8; IV_LEN] {
        same_recipients.and_then(|p| p.ivs.get(aad, plain)).unwrap_or_else(cipher::new_iv)
    };
    let last_modified = match same_recipients {
        Some(p) if p.manifest == *manifest => p.last_modified.clone(),
        _ => format_rfc3339(now)?,
    };

    let rule = Rule::EncryptedRegex(Regex::new(ENCRYPTED_REGEX).context("the encrypted_regex is invalid")?);
    let mut hash = Sha512::new();
    walk(&mut root, &mut Vec::new(), &mut |path, value| {
        let Some((plain, _)) = cipher::plain_bytes(value)? else {
            return Ok(());
        };
        hash.update(&plain);
        if rule.encrypts(path) {
            let aad = aad(path);
            *value = Scalar::Str(cipher::encrypt(value, &data_key, &aad, &reuse_iv(&aad, &plain))?);
        }
        Ok(())
    })?;
    let mac = hex_upper(&hash.finalize());
    let mac_aad = go_rfc3339(&last_modified)?;
    let mac_iv = reuse_iv(&format!("mac:{mac_aad}"), mac.as_bytes());
    let enc_mac = cipher::encrypt(&Scalar::Str(mac), &data_key, &mac_aad, &mac_iv)?;

    let mut age_entries = Vec::new();
    for (text, recipient) in recipients.entries() {
        let armored = match same_recipients.and_then(|p| p.wrapped.iter().find(|(r, _)| r == text)) {
            Some((_, armored)) => armored.clone(),
            None => {
                keys::wrap(&data_key, recipient).with_context(|| format!("could not wrap the data key for {text}"))?
            }
        };
        age_entries.push(Node::Map(vec![
            ("enc".into(), Node::Scalar(Scalar::Str(armored))),
            ("recipient".into(), Node::Scalar(Scalar::Str(text.clone()))),
        ]));
    }
    // Keys sorted by name, as sops serializes its metadata.
    let sops = Node::Map(vec![
        ("age".into(), Node::Seq(age_entries)),
        ("encrypted_regex".into(), Node::Scalar(Scalar::Str(ENCRYPTED_REGEX.into()))),
        ("lastmodified".into(), Node::Scalar(Scalar::Str(last_modified))),
        ("mac".into(), Node::Scalar(Scalar::Str(enc_mac))),
        ("version".into(), Node::Scalar(Scalar::Str(SOPS_VERSION.into()))),
    ]);
    root.push(("sops".into(), sops));
    Ok(yaml::emit(&root))
}

/// The AAD of a value: its key path joined by `:` with a trailing `:`.
fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Visits every scalar depth-first in document order with its key path (sequence elements keep
/// their parent's path). Nulls are skipped, as sops skips them.
fn walk(
    entries: &mut [(String, Node)],
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&[String], &mut Scalar) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (key, node) in entries.iter_mut() {
        path.push(key.clone());
        walk_node(node, path, f)?;
        path.pop();
    }
    Ok(())
}

fn walk_node(
    node: &mut Node,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&[String], &mut Scalar) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match node {
        Node::Map(entries) => walk(entries, path, f),
        Node::Seq(items) => items.iter_mut().try_for_each(|item| walk_node(item, path, f)),
        Node::Scalar(Scalar::Null) => Ok(()),
        Node::Scalar(value) => f(path, value).with_context(|| format!("at `{}`", path.join("."))),
    }
}

/// Which values a file encrypts (sops' `shouldBeEncrypted`, without the comment rules).
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
}

impl Rule {
    fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::UnencryptedRegex(re) => !path.iter().any(|k| re.is_match(k)),
            Rule::EncryptedRegex(re) => path.iter().any(|k| re.is_match(k)),
        }
    }
}

struct Metadata {
    /// (recipient, armored data key)
    age: Vec<(String, String)>,
    last_modified: String,
    mac: String,
    rule: Rule,
    mac_only_encrypted: bool,
}

impl Metadata {
    fn recipients(&self) -> Vec<&str> {
        self.age.iter().map(|(r, _)| r.as_str()).collect()
    }

    fn from_node(node: Node) -> anyhow::Result<Self> {
        let Node::Map(entries) = node else {
            bail!("`sops` is not a mapping");
        };
        let text = |key: &str, node: &Node| -> anyhow::Result<String> {
            match node {
                Node::Scalar(Scalar::Str(s) | Scalar::Time(s)) => Ok(s.clone()),
                Node::Scalar(Scalar::Int(i)) => Ok(i.to_string()),
                Node::Scalar(Scalar::Float(f)) => Ok(f.to_string()),
                _ => bail!("`sops.{key}` is not a string"),
            }
        };
        let (mut age, mut last_modified, mut mac) = (Vec::new(), None, None);
        let mut rules = Vec::new();
        let mut mac_only_encrypted = false;
        for (key, value) in &entries {
            match key.as_str() {
                "age" => {
                    let Node::Seq(items) = value else { bail!("`sops.age` is not a list") };
                    for item in items {
                        let Node::Map(fields) = item else { bail!("a `sops.age` entry is not a mapping") };
                        let field = |name: &str| {
                            fields
                                .iter()
                                .find(|(k, _)| k == name)
                                .with_context(|| format!("a `sops.age` entry has no `{name}`"))
                                .and_then(|(_, v)| text(name, v))
                        };
                        age.push((field("recipient")?, field("enc")?));
                    }
                }
                "lastmodified" => last_modified = Some(text(key, value)?),
                "mac" => mac = Some(text(key, value)?),
                "mac_only_encrypted" => mac_only_encrypted = matches!(value, Node::Scalar(Scalar::Bool(true))),
                "unencrypted_suffix" => rules.push(Rule::UnencryptedSuffix(text(key, value)?)),
                "encrypted_suffix" => rules.push(Rule::EncryptedSuffix(text(key, value)?)),
                "unencrypted_regex" | "encrypted_regex" => {
                    let pattern = text(key, value)?;
                    let re = Regex::new(&pattern).with_context(|| format!("`sops.{key}` is not a valid regex"))?;
                    rules.push(if key == "encrypted_regex" {
                        Rule::EncryptedRegex(re)
                    } else {
                        Rule::UnencryptedRegex(re)
                    });
                }
                "unencrypted_comment_regex" | "encrypted_comment_regex" => {
                    bail!("`sops.{key}` is not supported; re-encrypt the file with encrypted_regex {ENCRYPTED_REGEX}")
                }
                "key_groups" | "shamir_threshold" if !matches!(value, Node::Seq(s) if s.is_empty()) => {
                    bail!("key groups (Shamir secret sharing) are not supported; use a flat list of age recipients")
                }
                _ => {}
            }
        }
        if rules.len() > 1 {
            bail!(
                "more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex and unencrypted_regex is set"
            );
        }
        let rule = rules.pop().unwrap_or_else(|| Rule::UnencryptedSuffix("_unencrypted".into()));
        if age.is_empty() {
            bail!("the file has no age recipients (`sops.age`); only age-encrypted files are supported");
        }
        Ok(Self {
            age,
            last_modified: last_modified.context("`sops.lastmodified` is missing")?,
            mac: mac.filter(|m| !m.is_empty()).context("`sops.mac` is missing: refusing a file without a MAC")?,
            rule,
            mac_only_encrypted,
        })
    }
}

/// `now` in UTC, whole seconds, RFC 3339 — how sops writes `lastmodified`.
fn format_rfc3339(now: SystemTime) -> anyhow::Result<String> {
    let t = OffsetDateTime::from(now).to_offset(UtcOffset::UTC).replace_nanosecond(0).context("invalid time")?;
    t.format(&Rfc3339).context("could not format the timestamp")
}

/// Go's `time.Parse(time.RFC3339, s).Format(time.RFC3339)`: the MAC's AAD on decryption
/// (fractional seconds dropped, the offset kept, `Z` for UTC).
fn go_rfc3339(s: &str) -> anyhow::Result<String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .with_context(|| format!("`sops.lastmodified` ({s}) is not an RFC 3339 timestamp"))?
        .replace_nanosecond(0)
        .context("invalid time")?;
    t.format(&Rfc3339).context("could not format the timestamp")
}

fn from_json(value: &Value) -> anyhow::Result<Node> {
    Ok(match value {
        Value::Null => Node::Scalar(Scalar::Null),
        Value::Bool(b) => Node::Scalar(Scalar::Bool(*b)),
        Value::Number(n) => Node::Scalar(if let Some(i) = n.as_i64() {
            Scalar::Int(i)
        } else if let Some(u) = n.as_u64() {
            Scalar::Uint(u)
        } else {
            Scalar::Float(n.as_f64().context("a number is out of range")?)
        }),
        Value::String(s) => Node::Scalar(Scalar::Str(s.clone())),
        Value::Array(items) => Node::Seq(items.iter().map(from_json).collect::<anyhow::Result<_>>()?),
        Value::Object(map) => {
            Node::Map(map.iter().map(|(k, v)| Ok((k.clone(), from_json(v)?))).collect::<anyhow::Result<_>>()?)
        }
    })
}

fn to_json(node: &Node) -> anyhow::Result<Value> {
    Ok(match node {
        Node::Map(entries) => {
            Value::Object(entries.iter().map(|(k, v)| Ok((k.clone(), to_json(v)?))).collect::<anyhow::Result<_>>()?)
        }
        Node::Seq(items) => Value::Array(items.iter().map(to_json).collect::<anyhow::Result<_>>()?),
        Node::Scalar(Scalar::Null) => Value::Null,
        Node::Scalar(Scalar::Bool(b)) => Value::Bool(*b),
        Node::Scalar(Scalar::Int(i)) => Value::from(*i),
        Node::Scalar(Scalar::Uint(u)) => Value::from(*u),
        Node::Scalar(Scalar::Float(f)) => {
            Value::Number(serde_json::Number::from_f64(*f).context("a float is not representable in JSON")?)
        }
        Node::Scalar(Scalar::Str(s)) => Value::String(s.clone()),
        Node::Scalar(Scalar::Time(_)) => bail!("unquoted YAML timestamps are not supported; quote the value"),
    })
}

#[cfg(test)]
mod tests;
