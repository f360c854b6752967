//! The secret set: SECRET_KEY and the internal passwords and keys, generated once from the OS CSPRNG and
//! carried over afterwards. Values live in memory only and are zeroized on drop.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::changes::Change;

/// Every key of the overlay's Secret. `dify-secret-key` feeds `secrets.difySecretKey`; the others are the
/// chart's `secrets.existingSecret` keys (agent tokens included, so switching the Agent node on finds them).
pub const SECRET_NAMES: &[&str] = &[
    "dify-secret-key",
    "postgres-password",
    "redis-password",
    "weaviate-api-key",
    "plugin-daemon-key",
    "inner-api-key",
    "sandbox-api-key",
    "init-password",
    "admin-password",
    "agent-api-token",
    "agent-local-sandbox-token",
    "agent-server-secret-key",
];

/// Rotating SECRET_KEY would make every stored provider credential unreadable and log everybody out.
const NEVER_ROTATED: &str = "dify-secret-key";

pub fn check_rotatable(name: &str) -> Result<()> {
    if name == NEVER_ROTATED {
        bail!(
            "--rotate {name} refused: Dify encrypts stored credentials with SECRET_KEY, so a new one makes them \
             unreadable; it must never change once set"
        );
    }
    if !SECRET_NAMES.contains(&name) {
        bail!("--rotate {name}: no such secret (have: {})", SECRET_NAMES.join(", "));
    }
    Ok(())
}

pub struct SecretSet(BTreeMap<&'static str, Zeroizing<String>>);

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretSet {
    pub fn generate_all() -> Result<Self> {
        SECRET_NAMES.iter().map(|name| Ok((*name, generate_for(name)?))).collect::<Result<_>>().map(Self)
    }

    /// The secrets of an existing plaintext Secret manifest: kept, except those named in `rotate`; missing ones
    /// are generated.
    pub fn carry_over(manifest: &Value, rotate: &[String]) -> Result<(Self, Vec<Change>)> {
        let existing = manifest["stringData"].as_object();
        let mut set = BTreeMap::new();
        let mut changes = Vec::new();
        for name in SECRET_NAMES {
            let kept = existing.and_then(|m| m.get(*name)).and_then(Value::as_str).filter(|v| !v.is_empty());
            let value = match kept {
                Some(_) if rotate.iter().any(|r| r == name) => {
                    changes.push(Change::SecretRotated(name));
                    generate_for(name)?
                }
                Some(value) => Zeroizing::new(value.to_string()),
                None => {
                    changes.push(Change::SecretGenerated(name));
                    generate_for(name)?
                }
            };
            set.insert(*name, value);
        }
        Ok((Self(set), changes))
    }

    pub fn to_string_data(&self) -> Value {
        let map: Map<String, Value> =
            self.0.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        Value::Object(map)
    }
}

/// A new value in the shape its consumer accepts, from the OS CSPRNG.
fn generate_for(name: &str) -> Result<Zeroizing<String>> {
    let bytes = random_bytes()?;
    Ok(Zeroizing::new(match name {
        // Dify wants letters and digits in a password (and the chart generates the same shape).
        "init-password" | "admin-password" => {
            let letters = bytes[..12]
                .iter()
                .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[usize::from(*b) % 52]));
            let digits = bytes[12..24].iter().map(|b| char::from(b'0' + b % 10));
            letters.chain(digits).collect()
        }
        // The agent backend requires unpadded base64url of exactly 32 bytes.
        "agent-server-secret-key" => {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
        }
        // Hex is safe everywhere these end up, Redis and Celery broker URLs included.
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }))
}

fn random_bytes() -> Result<Zeroizing<[u8; 32]>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn carry_over_keeps_values_rotates_named_ones_and_fills_gaps() {
        let manifest = json!({"stringData": {"dify-secret-key": "k", "postgres-password": "p", "redis-password": "r"}});
        let (set, changes) = SecretSet::carry_over(&manifest, &["redis-password".into()]).unwrap();
        let data = set.to_string_data();
        assert_eq!((data["dify-secret-key"].as_str(), data["postgres-password"].as_str()), (Some("k"), Some("p")));
        assert_ne!(data["redis-password"], "r");
        assert!(changes.contains(&Change::SecretRotated("redis-password")));
        assert!(changes.contains(&Change::SecretGenerated("sandbox-api-key")));
        assert_eq!(changes.len(), 1 + SECRET_NAMES.len() - 3);
    }

    #[test]
    fn generated_secrets_are_distinct_and_shaped_for_their_consumer() {
        let data = SecretSet::generate_all().unwrap().to_string_data();
        let value = |name: &str| data[name].as_str().unwrap().to_string();
        let passwords = ["init-password", "admin-password"];
        for name in SECRET_NAMES.iter().filter(|n| !passwords.contains(n) && **n != "agent-server-secret-key") {
            assert!(value(name).len() == 64 && value(name).chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        }
        for password in passwords.map(value) {
            assert_eq!(password.len(), 24);
            assert!(
                password[..12].chars().all(|c| c.is_ascii_alphabetic())
                    && password[12..].chars().all(|c| c.is_ascii_digit())
            );
        }
        use base64::Engine;
        let agent = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value("agent-server-secret-key")).unwrap();
        assert_eq!(agent.len(), 32);
        let unique: std::collections::BTreeSet<&str> =
            data.as_object().unwrap().values().filter_map(|v| v.as_str()).collect();
        assert_eq!(unique.len(), SECRET_NAMES.len());
    }

    #[test]
    fn secret_key_is_never_rotated_and_unknown_names_are_listed() {
        assert!(check_rotatable("dify-secret-key").unwrap_err().to_string().contains("must never change"));
        assert!(check_rotatable("nope").unwrap_err().to_string().contains("have: dify-secret-key"));
        assert!(check_rotatable("redis-password").is_ok());
    }

    #[test]
    fn debug_output_names_keys_only() {
        let set = SecretSet::generate_all().unwrap();
        let shown = format!("{set:?}");
        let data = set.to_string_data();
        assert!(!shown.contains(data["redis-password"].as_str().unwrap()));
        assert!(shown.contains("redis-password"));
    }
}
