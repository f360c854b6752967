//! The non-secret chart values: flat dotted keys (what a change names) and the ConfigMap that carries them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::names::{SECRETS_SECRET, VALUES_CONFIGMAP, labels};
use crate::config::Environment;

/// Dotted chart value keys to string values, e.g. `external.host` → `192.0.2.10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainValues(pub BTreeMap<String, String>);

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
        Self(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
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
                    node.insert(part.to_string(), Value::String(value.clone()));
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

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
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
