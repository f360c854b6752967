//! The non-secret chart values: flat dotted keys (what a change names) to typed values (a string, a boolean, a
//! number, or a list, which is one value: a change names the whole list), and the ConfigMap that carries them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::names::{SECRETS_SECRET, VALUES_CONFIGMAP, labels};
use crate::config::Environment;

/// Dotted chart value keys to values, e.g. `external.host` → `"192.0.2.10"`, `pluginDaemon.marketplace` → `false`.
/// A leaf is never an object: objects are further dotted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainValues(pub BTreeMap<String, Value>);

impl PlainValues {
    pub fn for_environment(env: &Environment, host: &str) -> Self {
        let chart = &env.chart;
        let entries = [
            ("expose.ingressClassName", chart.ingress_class.as_str()),
            ("expose.path", chart.path.as_str()),
            ("external.scheme", chart.scheme.as_str()),
            ("external.host", host),
            ("images.dify.repository", chart.image_repository.as_str()),
            ("images.dify.tag", chart.image_tag.as_str()),
            ("storage.storageClassName", chart.storage_class.as_str()),
            ("secrets.existingSecret", SECRETS_SECRET),
        ];
        let mut values: BTreeMap<String, Value> =
            entries.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        values.extend(chart.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self(values)
    }

    /// Reads the values back from a ConfigMap file this module wrote.
    pub fn from_configmap_file(text: &str) -> Result<Self> {
        let configmap: Value = serde_saphyr::from_str(text).context("not YAML")?;
        let values = configmap["data"]["values.yaml"].as_str().context("no data.values.yaml")?;
        let tree: Value = serde_saphyr::from_str(values).context("data.values.yaml is not YAML")?;
        let mut flat = BTreeMap::new();
        flatten("", &tree, &mut flat);
        Ok(Self(flat))
    }

    /// Nested chart values, keys in a stable order.
    pub fn to_tree(&self) -> Value {
        let mut root = Map::new();
        for (key, value) in &self.0 {
            let mut node = &mut root;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    node.insert(part.to_string(), value.clone());
                } else {
                    node = node
                        .entry(part.to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .expect("dotted keys never collide with a leaf");
                }
            }
        }
        Value::Object(root)
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

/// A value on one line, for change lists and commit messages: a string as it is, lists and objects in YAML's
/// flow style (`[10.20.0.0/24, vllm.corp]`, `[{name: llama, type: llm}]`), a string inside them quoted only when
/// it would read as something else.
pub fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => flow(other),
    }
}

fn flow(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let plain = !s.is_empty()
                && !s.starts_with(|c: char| c.is_whitespace() || "-?:&*!|>'\"%@`#".contains(c))
                && !s.ends_with(char::is_whitespace)
                && !s.contains(|c: char| ",[]{}#".contains(c) || c.is_control())
                && !s.contains(": ")
                && serde_saphyr::from_str::<Value>(s).ok().as_ref() == Some(value);
            if plain { s.clone() } else { Value::String(s.clone()).to_string() }
        }
        Value::Array(items) => format!("[{}]", items.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!(
                "{{{}}}",
                map.iter().map(|(k, v)| format!("{}: {}", flow(&json!(k)), flow(v))).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// The ConfigMap file: `data.values.yaml` holds the chart values as a YAML document.
pub fn configmap_file(env: &Environment, values: &PlainValues) -> Result<String> {
    let values_yaml = serde_saphyr::to_string(&values.to_tree()).context("serialising chart values")?;
    let configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": VALUES_CONFIGMAP, "namespace": env.namespace, "labels": labels()},
        "data": {"values.yaml": values_yaml},
    });
    let body = serde_saphyr::to_string(&configmap).context("serialising the values ConfigMap")?;
    Ok(format!("# Written by dify-gitops: non-secret values of the Dify chart for this environment.\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_survive_the_configmap_and_strings_stay_strings() {
        let values = PlainValues(
            [
                ("external.host", json!("192.0.2.10")),
                ("images.dify.tag", json!("1.13.3")),
                ("bootstrap.adminName", json!("true")),
                ("pluginDaemon.marketplace", json!(false)),
                ("ssrfProxy.upstream.port", json!(3128)),
                ("ssrfProxy.allowList.cidrs", json!(["10.20.0.0/24"])),
                ("bootstrap.modelProvider.models", json!([{"name": "m", "credentials": {"context_size": "8192"}}])),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        let text = serde_saphyr::to_string(
            &json!({"data": {"values.yaml": serde_saphyr::to_string(&values.to_tree()).unwrap()}}),
        )
        .unwrap();
        assert_eq!(PlainValues::from_configmap_file(&text).unwrap(), values);
    }

    #[test]
    fn compact_is_flow_yaml_on_one_line() {
        assert_eq!(compact(&json!("10.0.0.5")), "10.0.0.5");
        assert_eq!(compact(&json!(false)), "false");
        assert_eq!(compact(&json!(["a.corp", "true", "x, y", ""])), r#"[a.corp, "true", "x, y", ""]"#);
        assert_eq!(compact(&json!([{"name": "m", "type": "llm"}])), "[{name: m, type: llm}]");
    }
}
