//! NetworkPolicy as the `networking.k8s.io/v1` API defines it, judged over plain data: whether one endpoint may open a
//! connection to another on a port, under a set of policies. `pod_firewall.rs` turns the verdicts into the
//! harness's packet filter; nothing here touches the system.
//!
//! What is judged is what the chart's policies use: pod and namespace selectors (`matchLabels` and
//! `matchExpressions`), numbered ports with `endPort`, and both policy types. An `ipBlock` or a named port makes the
//! judge panic, naming it, rather than answer wrongly.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

/// The transport of a port, as a policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn parse(name: Option<&str>) -> Protocol {
        match name.unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => panic!("NetworkPolicy port protocol {other} is not judged by the harness"),
        }
    }

    /// nftables's name for it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub protocol: Protocol,
    pub number: u16,
}

/// One end of a connection: a pod (with its namespace and labels), or an address outside the cluster.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// For messages: the pod's name, or what the address is.
    pub name: String,
    pub ip: Ipv4Addr,
    /// The pod's namespace; None outside the cluster.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The ports it serves (its containers' ports).
    pub ports: Vec<Port>,
}

impl Endpoint {
    /// The labels of its namespace: what the API server sets on every namespace.
    fn namespace_labels(&self) -> BTreeMap<String, String> {
        let name = self.namespace.clone().unwrap_or_default();
        BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name)])
    }
}

/// Whether `from` may open a connection to `to` on `port`: `from`'s egress allows it, and `to`'s ingress does.
pub fn allows(policies: &[Value], from: &Endpoint, to: &Endpoint, port: Port) -> bool {
    side_allows(policies, Side::Egress, from, to, port) && side_allows(policies, Side::Ingress, to, from, port)
}

/// Every port some policy names: for any other port, every verdict is the same as for another unnamed port.
pub fn named_ports(policies: &[Value]) -> Vec<Port> {
    let mut ports = Vec::new();
    for policy in policies {
        for side in [Side::Ingress, Side::Egress] {
            for rule in policy["spec"][side.field()].as_array().into_iter().flatten() {
                for port in rule["ports"].as_array().into_iter().flatten().filter(|p| !p["port"].is_null()) {
                    let protocol = Protocol::parse(port["protocol"].as_str());
                    let first = number(&port["port"]);
                    let last = port["endPort"].as_u64().map_or(first, |n| n as u16);
                    ports.extend((first..=last).map(|number| Port { protocol, number }));
                }
            }
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ingress,
    Egress,
}

impl Side {
    fn field(self) -> &'static str {
        match self {
            Side::Ingress => "ingress",
            Side::Egress => "egress",
        }
    }

    fn policy_type(self) -> &'static str {
        match self {
            Side::Ingress => "Ingress",
            Side::Egress => "Egress",
        }
    }

    fn peers(self) -> &'static str {
        match self {
            Side::Ingress => "from",
            Side::Egress => "to",
        }
    }
}

/// `subject`'s side of the connection: unrestricted when no policy of that type selects it; otherwise some rule of
/// one that does must admit `peer` on `port`. Outside the cluster nothing is selected.
fn side_allows(policies: &[Value], side: Side, subject: &Endpoint, peer: &Endpoint, port: Port) -> bool {
    let Some(namespace) = &subject.namespace else { return true };
    let selecting: Vec<&Value> = policies
        .iter()
        .filter(|p| p["metadata"]["namespace"].as_str() == Some(namespace))
        .filter(|p| selector_matches(&p["spec"]["podSelector"], &subject.labels))
        .filter(|p| has_type(p, side))
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|policy| {
        policy["spec"][side.field()]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| ports_match(&rule["ports"], port) && peers_match(&rule[side.peers()], namespace, peer))
    })
}

/// A policy's types: as written, or (unwritten) Ingress, plus Egress when it has egress rules.
fn has_type(policy: &Value, side: Side) -> bool {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types.iter().any(|t| t.as_str() == Some(side.policy_type())),
        None => side == Side::Ingress || policy["spec"]["egress"].is_array(),
    }
}

/// A rule's ports: none listed admits every port.
fn ports_match(ports: &Value, port: Port) -> bool {
    let Some(ports) = ports.as_array().filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| {
        // No port number: every port of the protocol.
        let range = (!p["port"].is_null()).then(|| {
            let first = number(&p["port"]);
            first..=p["endPort"].as_u64().map_or(first, |n| n as u16)
        });
        Protocol::parse(p["protocol"].as_str()) == port.protocol && range.is_none_or(|r| r.contains(&port.number))
    })
}

/// A rule's peers: none listed admits every peer. A pod selector alone means pods of the policy's namespace.
fn peers_match(peers: &Value, policy_namespace: &str, peer: &Endpoint) -> bool {
    let Some(peers) = peers.as_array().filter(|p| !p.is_empty()) else { return true };
    peers.iter().any(|p| {
        assert!(p.get("ipBlock").is_none(), "the harness does not judge NetworkPolicy ipBlock peers: {p}");
        let Some(namespace) = &peer.namespace else { return false };
        let namespace_ok = match p.get("namespaceSelector") {
            Some(selector) => selector_matches(selector, &peer.namespace_labels()),
            None => namespace == policy_namespace,
        };
        let pod_ok = p.get("podSelector").is_none_or(|selector| selector_matches(selector, &peer.labels));
        namespace_ok && pod_ok
    })
}

/// A label selector: every `matchLabels` pair and every `matchExpressions` requirement holds (empty: everything).
fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector["matchLabels"].as_object().into_iter().flatten();
    let pairs_hold = pairs.clone().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions_hold = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let value = labels.get(key).map(String::as_str);
        match e["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("label selector operator {other:?} in {selector}"),
        }
    });
    pairs_hold && expressions_hold
}

fn number(port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()).expect("a port number"),
        Value::String(name) => panic!("the harness does not judge named ports in NetworkPolicies ({name:?})"),
        other => panic!("a NetworkPolicy port without a number: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            name: format!("{namespace}/{labels:?}"),
            ip: Ipv4Addr::new(100, 64, 0, 9),
            namespace: Some(namespace.to_string()),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: vec![],
        }
    }

    const TCP: fn(u16) -> Port = |number| Port { protocol: Protocol::Tcp, number };
    const UDP: fn(u16) -> Port = |number| Port { protocol: Protocol::Udp, number };

    /// The shape of the chart's sandbox policy: ingress from two components, egress to the proxy and to DNS in any
    /// namespace.
    fn sandbox_policy() -> Value {
        json!({
            "metadata": {"namespace": "dify"},
            "spec": {
                "podSelector": {"matchLabels": {"c": "sandbox"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "c", "operator": "In", "values": ["api", "worker"]}]}}],
                    "ports": [{"port": 8194, "protocol": "TCP"}]}],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"c": "proxy"}}}], "ports": [{"port": 3128}]},
                    {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}
                ]
            }
        })
    }

    #[test]
    fn a_selected_pod_is_reached_only_from_its_listed_peers_on_its_listed_ports() {
        let policies = [sandbox_policy()];
        let (sandbox, api, web) =
            (pod("dify", &[("c", "sandbox")]), pod("dify", &[("c", "api")]), pod("dify", &[("c", "web")]));
        assert!(allows(&policies, &api, &sandbox, TCP(8194)));
        assert!(!allows(&policies, &api, &sandbox, TCP(22)), "an unlisted port");
        assert!(!allows(&policies, &web, &sandbox, TCP(8194)), "a component not In the list");
        let elsewhere = pod("other", &[("c", "api")]);
        assert!(
            !allows(&policies, &elsewhere, &sandbox, TCP(8194)),
            "a pod selector alone means the policy's namespace"
        );
        assert!(allows(&policies, &web, &api, TCP(5001)), "a pod no policy selects takes everything");
    }

    #[test]
    fn a_pod_with_egress_rules_reaches_only_what_they_list() {
        let policies = [sandbox_policy()];
        let sandbox = pod("dify", &[("c", "sandbox")]);
        let (proxy, dns) = (pod("dify", &[("c", "proxy")]), pod("kube-system", &[("k8s-app", "kube-dns")]));
        assert!(allows(&policies, &sandbox, &proxy, TCP(3128)), "a port without protocol is TCP");
        assert!(!allows(&policies, &sandbox, &proxy, UDP(3128)));
        assert!(allows(&policies, &sandbox, &dns, UDP(53)), "namespaceSelector {{}} is every namespace");
        assert!(!allows(&policies, &sandbox, &dns, TCP(53)));
        let outside = Endpoint { namespace: None, ..pod("x", &[]) };
        assert!(!allows(&policies, &sandbox, &outside, TCP(443)), "no rule names a place outside the cluster");
        assert_eq!(named_ports(&policies), vec![TCP(3128), TCP(8194), UDP(53)]);
    }

    #[test]
    fn unwritten_policy_types_are_ingress_plus_egress_when_egress_rules_exist() {
        let ingress_only = json!({"metadata": {"namespace": "dify"}, "spec": {"podSelector": {}, "ingress": []}});
        let (a, b) = (pod("dify", &[("c", "a")]), pod("dify", &[("c", "b")]));
        assert!(!allows(std::slice::from_ref(&ingress_only), &a, &b, TCP(80)), "an empty ingress list admits nothing");
        let mut both = ingress_only;
        both["spec"]["egress"] = json!([{"ports": [{"port": 80, "endPort": 90}]}]);
        both["spec"]["ingress"] = json!([{}]);
        assert!(allows(&[both.clone()], &a, &b, TCP(85)), "an empty rule admits every peer; endPort a range");
        assert!(!allows(&[both], &a, &b, TCP(91)));
    }
}
