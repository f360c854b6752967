//! The chart as the cluster holds it after `helm install`: its workloads, and each container resolved to the exact
//! command, args and environment a kubelet would give it. Nothing here knows Dify: every value comes from the
//! rendered objects and the Secrets and ConfigMaps the install created (the chart generates some of them).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

/// The objects of one release, as JSON from the API server.
pub struct Release {
    pub namespace: String,
    pub workloads: Vec<Value>,
    pub services: Vec<Value>,
    pub network_policies: Vec<Value>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Each ConfigMap's keys as the files of a volume: `data` and `binaryData` (a plugin package) alike.
    config_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// One container of one workload, resolved.
#[derive(Debug, Clone)]
pub struct Container {
    /// The workload's name, e.g. `dify-api`; the harness names its pod `<workload>-0`.
    pub workload: String,
    /// The container's own name in the pod spec.
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    /// In the order the kubelet sets them (envFrom first, then env), `$(VAR)` references expanded.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Container port numbers by name.
    pub ports: BTreeMap<String, u16>,
    pub mounts: Vec<Mount>,
    pub readiness: Option<Value>,
    pub startup: Option<Value>,
    pub liveness: Option<Value>,
    /// Who the container runs as: its `securityContext` over the pod's.
    pub run_as: RunAs,
}

/// The identity fields of the rendered `securityContext`s, the container's over the pod's as the kubelet merges
/// them (`fsGroup` and `supplementalGroups` exist only at pod level). None where neither sets a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAs {
    pub user: Option<u32>,
    pub group: Option<u32>,
    pub fs_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    pub non_root: bool,
    /// The container's `capabilities.add` and `capabilities.drop`, as written (`KILL`, `ALL`).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// The container's `allowPrivilegeEscalation: false` (unset or true: escalation allowed).
    pub no_privilege_escalation: bool,
    /// `seccompProfile.type`, the container's over the pod's (`RuntimeDefault`); None where neither sets it, which
    /// a kubelet without `--seccomp-default` runs unconfined.
    pub seccomp: Option<String>,
}

/// What backs a volume, which decides how the kubelet creates it and who may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// `emptyDir`: created world-writable (0777).
    EmptyDir,
    /// A `persistentVolumeClaim` or a StatefulSet's `volumeClaimTemplates`: a fresh filesystem's root (0755).
    Claim,
    /// A `configMap` (or a Secret, projected): its keys as files, read-only.
    ConfigMap,
}

/// One volume mount of a container.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Where the container sees it.
    pub path: String,
    /// The pod's volume: the same name in two containers of a pod is the same volume.
    pub volume: String,
    pub sub_path: Option<String>,
    /// A ConfigMap volume's files (key to content); None for other volumes.
    pub config: Option<BTreeMap<String, Vec<u8>>>,
    pub kind: VolumeKind,
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn string_map(value: &Value, decode: bool) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        let text = v.as_str().unwrap_or_default();
        let text = if decode {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|e| panic!("Secret key {key} is not base64: {e}"));
            String::from_utf8(bytes).unwrap_or_else(|_| panic!("Secret key {key} is not UTF-8"))
        } else {
            text.to_string()
        };
        map.insert(key.clone(), text);
    }
    map
}

impl Release {
    /// `get` returns `kubectl get <kind> -o json` of the release's namespace; `hooks` are the release's hook
    /// objects (as JSON), which `helm install --no-hooks` did not create.
    pub fn read(namespace: &str, get: impl Fn(&str) -> Value, hooks: Vec<Value>) -> Release {
        let mut workloads = Vec::new();
        for kind in ["deployments", "statefulsets"] {
            workloads.extend(items(&get(kind)));
        }
        workloads.extend(hooks.into_iter().filter(|o| o["kind"] == "Job"));
        let secrets = items(&get("secrets"))
            .iter()
            .map(|s| {
                let mut data = string_map(&s["data"], true);
                data.extend(string_map(&s["stringData"], false));
                (s["metadata"]["name"].as_str().unwrap().to_string(), data)
            })
            .collect();
        let listed = items(&get("configmaps"));
        let name = |c: &Value| c["metadata"]["name"].as_str().unwrap().to_string();
        let config_maps = listed.iter().map(|c| (name(c), string_map(&c["data"], false))).collect();
        let config_files = listed
            .iter()
            .map(|c| {
                let mut files: BTreeMap<String, Vec<u8>> =
                    string_map(&c["data"], false).into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                for (key, v) in c["binaryData"].as_object().into_iter().flatten() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or_default())
                        .unwrap_or_else(|e| panic!("ConfigMap {} binaryData {key} is not base64: {e}", name(c)));
                    files.insert(key.clone(), bytes);
                }
                (name(c), files)
            })
            .collect();
        Release {
            namespace: namespace.to_string(),
            workloads,
            services: items(&get("services")),
            network_policies: items(&get("networkpolicies")),
            secrets,
            config_maps,
            config_files,
        }
    }

    pub fn workload(&self, name: &str) -> &Value {
        self.workloads
            .iter()
            .find(|w| w["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the release has no workload {name}"))
    }

    /// The main containers of a workload, resolved (`init: true` for its init containers).
    pub fn containers(&self, workload: &str, init: bool) -> Vec<Container> {
        let object = self.workload(workload);
        let spec = &object["spec"]["template"]["spec"];
        let list = if init { &spec["initContainers"] } else { &spec["containers"] };
        list.as_array().into_iter().flatten().map(|c| self.resolve(workload, c)).collect()
    }

    fn resolve(&self, workload: &str, c: &Value) -> Container {
        let pod = format!("{workload}-0");
        let mut env: Vec<(String, String)> = Vec::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            let (map, what) = if let Some(name) = from["secretRef"]["name"].as_str() {
                (self.secrets.get(name), format!("Secret {name}"))
            } else {
                let name = from["configMapRef"]["name"].as_str().unwrap_or_default();
                (self.config_maps.get(name), format!("ConfigMap {name}"))
            };
            let optional = from["secretRef"]["optional"] == true || from["configMapRef"]["optional"] == true;
            match map {
                Some(map) => env.extend(map.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone()))),
                None if optional => {}
                None => panic!("{workload}/{}: envFrom names {what}, which the release does not have", c["name"]),
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                Some(expand(v, &env))
            } else if e["value"].is_null() && e["valueFrom"].is_null() {
                Some(String::new())
            } else {
                self.value_from(&e["valueFrom"], &pod)
            };
            if let Some(value) = value {
                env.push((name, value));
            }
        }
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| a.iter().map(|s| expand(s.as_str().unwrap_or_default(), &env)).collect())
        };
        let ports = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["containerPort"].as_u64()? as u16)))
            .collect();
        let pod_context = &self.workload(workload)["spec"]["template"]["spec"]["securityContext"];
        let context = &c["securityContext"];
        let id = |key: &str| -> Option<u32> {
            let value = if context[key].is_null() { &pod_context[key] } else { &context[key] };
            value.as_u64().map(|v| u32::try_from(v).unwrap_or_else(|_| panic!("{workload}/{}: {key} {v}", c["name"])))
        };
        let run_as = RunAs {
            user: id("runAsUser"),
            group: id("runAsGroup"),
            fs_group: pod_context["fsGroup"].as_u64().map(|v| v as u32),
            supplemental_groups: pod_context["supplementalGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_u64().map(|v| v as u32))
                .collect(),
            non_root: if context["runAsNonRoot"].is_null() {
                pod_context["runAsNonRoot"] == true
            } else {
                context["runAsNonRoot"] == true
            },
            capabilities_add: strings(&context["capabilities"]["add"]).unwrap_or_default(),
            capabilities_drop: strings(&context["capabilities"]["drop"]).unwrap_or_default(),
            no_privilege_escalation: context["allowPrivilegeEscalation"] == false,
            seccomp: context["seccompProfile"]["type"]
                .as_str()
                .or(pod_context["seccompProfile"]["type"].as_str())
                .map(str::to_string),
        };
        Container {
            workload: workload.to_string(),
            name: c["name"].as_str().unwrap_or_default().to_string(),
            image: c["image"].as_str().unwrap_or_default().to_string(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            env: env.clone(),
            working_dir: c["workingDir"].as_str().map(str::to_string),
            ports,
            mounts: self.mounts(workload, c),
            readiness: Some(c["readinessProbe"].clone()).filter(|p| !p.is_null()),
            startup: Some(c["startupProbe"].clone()).filter(|p| !p.is_null()),
            liveness: Some(c["livenessProbe"].clone()).filter(|p| !p.is_null()),
            run_as,
        }
    }

    fn mounts(&self, workload: &str, c: &Value) -> Vec<Mount> {
        let volumes = &self.workload(workload)["spec"]["template"]["spec"]["volumes"];
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let volume = m["name"].as_str().unwrap_or_default().to_string();
                let spec = volumes.as_array().into_iter().flatten().find(|v| v["name"] == volume.as_str());
                let config = spec.and_then(|v| v["configMap"]["name"].as_str()).map(|name| {
                    let data = self.config_files.get(name).unwrap_or_else(|| {
                        panic!("{workload}: volume {volume} names ConfigMap {name}, which does not exist")
                    });
                    // `items` picks keys (and may rename them); without it every key is a file.
                    match spec.and_then(|v| v["configMap"]["items"].as_array()) {
                        Some(items) => items
                            .iter()
                            .map(|i| {
                                let key = i["key"].as_str().unwrap_or_default();
                                let text = data.get(key).unwrap_or_else(|| panic!("ConfigMap {name} has no key {key}"));
                                (i["path"].as_str().unwrap_or(key).to_string(), text.clone())
                            })
                            .collect(),
                        None => data.clone(),
                    }
                });
                let kind = match spec {
                    _ if config.is_some() => VolumeKind::ConfigMap,
                    Some(v) if !v["emptyDir"].is_null() => VolumeKind::EmptyDir,
                    Some(v) if !v["persistentVolumeClaim"].is_null() => VolumeKind::Claim,
                    // Not among the pod's volumes: one of a StatefulSet's volumeClaimTemplates.
                    None => VolumeKind::Claim,
                    // A Secret or projected volume: read-only files, as a ConfigMap's.
                    Some(_) => VolumeKind::ConfigMap,
                };
                Mount {
                    path: m["mountPath"].as_str().unwrap_or_default().to_string(),
                    volume,
                    sub_path: m["subPath"].as_str().map(str::to_string),
                    config,
                    kind,
                }
            })
            .collect()
    }

    fn value_from(&self, from: &Value, pod: &str) -> Option<String> {
        let lookup = |maps: &BTreeMap<String, BTreeMap<String, String>>, r: &Value, what: &str| {
            let (name, key) = (r["name"].as_str().unwrap_or_default(), r["key"].as_str().unwrap_or_default());
            match maps.get(name).and_then(|m| m.get(key)) {
                Some(v) => Some(v.clone()),
                None if r["optional"] == true => None,
                None => panic!("{what} {name} has no key {key} (and the reference is not optional)"),
            }
        };
        if !from["secretKeyRef"].is_null() {
            lookup(&self.secrets, &from["secretKeyRef"], "Secret")
        } else if !from["configMapKeyRef"].is_null() {
            lookup(&self.config_maps, &from["configMapKeyRef"], "ConfigMap")
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            Some(match path {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => self.namespace.clone(),
                other => panic!("fieldRef {other} is not emulated by the harness"),
            })
        } else {
            panic!("valueFrom {from} is not emulated by the harness")
        }
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one is left as written, and
/// `$$` is a literal `$`.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[at..at + 3 + end]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn expansion_follows_kubernetes() {
    let env = vec![("A".to_string(), "x".to_string())];
    assert_eq!(expand("redis://:$(A)@h/1", &env), "redis://:x@h/1");
    assert_eq!(expand("$(B)-$$(A)-$", &env), "$(B)-$(A)-$");
}
