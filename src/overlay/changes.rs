//! What changed between the overlay in the ops repo and the planned one, described without secret values:
//! the commit message, `diff` and `--dry-run` all print these.

use std::fmt;

use serde_json::Value;

use super::values::{PlainValues, compact};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A chart value (or the HelmRelease's apiVersion) set, changed or removed; shown compactly, on one line.
    Value {
        key: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    SecretGenerated(&'static str),
    SecretRotated(&'static str),
    /// A key set by `secret set` (its name only; `reason` is the `--force` reason for a key sync generates).
    SecretSet {
        name: String,
        replaced: bool,
        reason: Option<String>,
    },
    /// The Secret was re-encrypted for the config's recipients: who gained and who lost access.
    Recipients {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Keys sync does not generate (added by hand or by `secret set`), carried through a re-encryption.
    Kept(Vec<String>),
    /// The file differs only in layout (written by an older version, or by hand).
    Reformatted(&'static str),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Value { key, old: Some(old), new: Some(new) } => {
                write!(f, "{key} {} -> {}", compact(old), compact(new))
            }
            Change::Value { key, old: None, new: Some(new) } => write!(f, "{key} = {}", compact(new)),
            Change::Value { key, old: Some(_), new: None } => write!(f, "{key} removed"),
            Change::Value { key, .. } => write!(f, "{key}"),
            Change::SecretGenerated(name) => write!(f, "secret {name} generated"),
            Change::SecretRotated(name) => write!(f, "secret {name} rotated"),
            Change::SecretSet { name, replaced, reason } => {
                write!(f, "secret {name} {}", if *replaced { "replaced" } else { "added" })?;
                match reason {
                    Some(reason) => write!(f, " by hand (--force: {reason})"),
                    None => Ok(()),
                }
            }
            Change::Recipients { added, removed } if added.is_empty() && removed.is_empty() => {
                write!(f, "secret re-encrypted: recipients reordered")
            }
            Change::Recipients { added, removed } => {
                let named = added
                    .iter()
                    .map(|r| format!("recipient {r} added"))
                    .chain(removed.iter().map(|r| format!("recipient {r} removed")));
                write!(f, "{}", named.collect::<Vec<_>>().join(", "))
            }
            Change::Kept(names) => {
                let keys = if names.len() == 1 { "key" } else { "keys" };
                write!(f, "kept {} {keys} sync does not generate: {}", names.len(), names.join(", "))
            }
            Change::Reformatted(file) => write!(f, "{file} rewritten"),
        }
    }
}

/// The recipients a file is encrypted for against the config's: None when they are the same, in the same order.
pub fn recipients(file: &[String], config: &[&str]) -> Option<Change> {
    if file.iter().map(String::as_str).eq(config.iter().copied()) {
        return None;
    }
    let added = config.iter().filter(|r| !file.iter().any(|f| f == *r)).map(|r| r.to_string()).collect();
    let removed = file.iter().filter(|f| !config.contains(&f.as_str())).cloned().collect();
    Some(Change::Recipients { added, removed })
}

pub fn values(old: Option<&PlainValues>, new: &PlainValues) -> Vec<Change> {
    let empty = PlainValues(Default::default());
    let old = old.unwrap_or(&empty);
    let mut changes = Vec::new();
    for (key, value) in &new.0 {
        if old.0.get(key) != Some(value) {
            changes.push(Change::Value { key: key.clone(), old: old.0.get(key).cloned(), new: Some(value.clone()) });
        }
    }
    for (key, value) in &old.0 {
        if !new.0.contains_key(key) {
            changes.push(Change::Value { key: key.clone(), old: Some(value.clone()), new: None });
        }
    }
    changes
}

/// `dify/<env>: external.host 10.0.0.5 -> 10.0.0.6` plus a body listing every change (never a secret value).
pub fn commit_message(env: &str, changes: &[Change]) -> String {
    let created = changes.iter().any(|c| matches!(c, Change::Value { key, old: None, .. } if key == "external.host"));
    let headline = if created {
        let value = |wanted: &str| {
            changes.iter().find_map(|c| match c {
                Change::Value { key, new: Some(new), .. } if key == wanted => Some(format!("{key} = {}", compact(new))),
                _ => None,
            })
        };
        let generated = changes.iter().filter(|c| matches!(c, Change::SecretGenerated(_))).count();
        let mut parts: Vec<String> = ["external.host", "images.dify.tag"].iter().filter_map(|k| value(k)).collect();
        parts.push(format!("{generated} secrets generated"));
        format!("create overlay ({})", parts.join(", "))
    } else {
        let shown: Vec<String> = changes.iter().take(3).map(Change::to_string).collect();
        let more = if changes.len() > shown.len() { ", ..." } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    let body: Vec<String> = changes.iter().map(|c| format!("- {c}")).collect();
    format!("dify/{env}: {headline}\n\n{}\n", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(key: &str, old: Option<&str>, new: &str) -> Change {
        Change::Value { key: key.into(), old: old.map(Value::from), new: Some(Value::from(new)) }
    }

    #[test]
    fn a_changed_address_is_the_headline() {
        let message = commit_message("prod", &[value("external.host", Some("10.0.0.5"), "10.0.0.6")]);
        assert!(message.starts_with("dify/prod: external.host 10.0.0.5 -> 10.0.0.6\n\n- external.host"), "{message}");
    }

    #[test]
    fn recipient_changes_name_who_gained_and_who_lost_access() {
        let file = vec!["age1a".to_string(), "age1b".to_string()];
        assert_eq!(recipients(&file, &["age1a", "age1b"]), None);
        let change = recipients(&file, &["age1a", "age1c"]).unwrap();
        assert_eq!(change.to_string(), "recipient age1c added, recipient age1b removed");
        let change = recipients(&file, &["age1b", "age1a"]).unwrap();
        assert_eq!(change.to_string(), "secret re-encrypted: recipients reordered");
    }

    #[test]
    fn kept_and_set_keys_are_named_without_values() {
        assert_eq!(
            Change::Kept(vec!["openai-api-key".into()]).to_string(),
            "kept 1 key sync does not generate: openai-api-key"
        );
        assert_eq!(Change::Kept(vec!["a".into(), "b".into()]).to_string(), "kept 2 keys sync does not generate: a, b");
        let set = Change::SecretSet { name: "smtp".into(), replaced: false, reason: None };
        assert_eq!(set.to_string(), "secret smtp added");
        let forced =
            Change::SecretSet { name: "redis-password".into(), replaced: true, reason: Some("migrated".into()) };
        assert_eq!(forced.to_string(), "secret redis-password replaced by hand (--force: migrated)");
    }

    #[test]
    fn a_new_overlay_says_so_and_counts_secrets() {
        let changes = [
            value("external.host", None, "10.0.0.5"),
            value("images.dify.tag", None, "1.13.3"),
            Change::SecretGenerated("dify-secret-key"),
            Change::SecretGenerated("redis-password"),
        ];
        let message = commit_message("prod", &changes);
        assert!(
            message.starts_with(
                "dify/prod: create overlay (external.host = 10.0.0.5, images.dify.tag = 1.13.3, 2 secrets generated)"
            ),
            "{message}"
        );
    }

    #[test]
    fn typed_values_are_shown_compactly_on_one_line() {
        use serde_json::json;
        let old = PlainValues(
            [
                ("pluginDaemon.marketplace".to_string(), json!(true)),
                ("ssrfProxy.upstream.port".to_string(), json!(3128)),
            ]
            .into(),
        );
        let new = PlainValues(
            [
                ("pluginDaemon.marketplace".to_string(), json!(false)),
                ("ssrfProxy.allowList.cidrs".to_string(), json!(["10.20.0.0/24", "fd00::/64"])),
                (
                    "bootstrap.modelProvider.models".to_string(),
                    json!([{"name": "llama-3", "type": "llm", "credentials": {"context_size": "8192"}}]),
                ),
            ]
            .into(),
        );
        let shown: Vec<String> = values(Some(&old), &new).iter().map(Change::to_string).collect();
        assert_eq!(
            shown,
            [
                "bootstrap.modelProvider.models = [{name: llama-3, type: llm, credentials: {context_size: \"8192\"}}]",
                "pluginDaemon.marketplace true -> false",
                "ssrfProxy.allowList.cidrs = [10.20.0.0/24, fd00::/64]",
                "ssrfProxy.upstream.port removed",
            ]
        );
    }
}
