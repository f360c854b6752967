//! What changed between the overlay in the ops repo and the planned one, described without secret values:
//! the commit message, `diff` and `--dry-run` all print these.

use std::fmt;

use super::PlainValues;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Value {
        key: String,
        old: Option<String>,
        new: Option<String>,
    },
    SecretGenerated(&'static str),
    SecretRotated(&'static str),
    /// The Secret was re-encrypted for a different recipient set.
    Recipients,
    /// The file differs only in layout (written by an older version, or by hand).
    Reformatted(&'static str),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Value { key, old: Some(old), new: Some(new) } => write!(f, "{key} {old} -> {new}"),
            Change::Value { key, old: None, new: Some(new) } => write!(f, "{key} = {new}"),
            Change::Value { key, old: Some(_), new: None } => write!(f, "{key} removed"),
            Change::Value { key, .. } => write!(f, "{key}"),
            Change::SecretGenerated(name) => write!(f, "secret {name} generated"),
            Change::SecretRotated(name) => write!(f, "secret {name} rotated"),
            Change::Recipients => write!(f, "secret re-encrypted for new recipients"),
            Change::Reformatted(file) => write!(f, "{file} rewritten"),
        }
    }
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
                Change::Value { key, new: Some(new), .. } if key == wanted => Some(format!("{key} = {new}")),
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
        Change::Value { key: key.into(), old: old.map(Into::into), new: Some(new.into()) }
    }

    #[test]
    fn a_changed_address_is_the_headline() {
        let message = commit_message("prod", &[value("external.host", Some("10.0.0.5"), "10.0.0.6")]);
        assert!(message.starts_with("dify/prod: external.host 10.0.0.5 -> 10.0.0.6\n\n- external.host"), "{message}");
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
}
