//! Code in the sandbox reaches the SSRF proxy and nothing else, as the chart's NetworkPolicy for the sandbox says.
//! The proxy's allow-list decides where a Code node's requests go only if a snippet cannot go around the proxy: a
//! direct connection to an address the list admits (the model server) or to a pod of the release (api) must be
//! refused by the policy, while the proxy itself answers.
//!
//! The snippet runs through the sandbox's own API (`sandbox_api.rs`) and connects with a bare socket, no proxy
//! settings involved; the refusals are those the harness's enforcement recorded (`pod_firewall.rs`).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::install::Install;
use crate::pod_firewall::Refusal;
use crate::sandbox_api::SandboxApi;

/// What the snippet saw for each address, and the refusals recorded for the sandbox.
pub struct Reached {
    pub seen: String,
    pub refused: Vec<Refusal>,
}

pub fn check_code_reaches_only_the_ssrf_proxy(install: &mut Install) -> Reached {
    let sandbox = SandboxApi::of(install);
    let port_of = |workload: &str| {
        let container = install.release.containers(workload, false).into_iter().next().unwrap();
        *container.ports.values().next().unwrap_or_else(|| panic!("{workload} serves no port"))
    };
    let targets: [(&str, Ipv4Addr, u16); 3] = [
        ("ssrf-proxy", install.addresses["dify-ssrf-proxy"], port_of("dify-ssrf-proxy")),
        ("model-server", install.model.ip, install.model.port),
        ("api", install.addresses["dify-api"], port_of("dify-api")),
    ];
    let list: Vec<String> = targets.iter().map(|(name, ip, port)| format!("(\"{name}\", \"{ip}\", {port})")).collect();
    let code = format!(
        "import socket\nseen = []\nfor name, ip, port in [{}]:\n    try:\n        \
         socket.create_connection((ip, port), timeout=10).close()\n        seen.append(name + '=open')\n    \
         except Exception as e:\n        seen.append(name + '=' + type(e).__name__)\nprint(' '.join(seen))\n",
        list.join(", ")
    );
    let answer = sandbox
        .run_python(&code, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the sandbox did not run the connection snippet: {e}"));
    let seen = answer["data"]["stdout"].as_str().unwrap_or_default().trim().to_string();
    let expected = "ssrf-proxy=open model-server=ConnectionRefusedError api=ConnectionRefusedError";
    let refused: Vec<Refusal> = install.refusals().into_iter().filter(|r| r.pod == "dify-sandbox-0").collect();
    assert_eq!(
        seen, expected,
        "code in the sandbox should reach the SSRF proxy only (the sandbox's NetworkPolicy); it answered {answer}; \
         refusals recorded for the sandbox: {refused:?}"
    );
    for (name, ip, port) in &targets[1..] {
        assert!(
            refused.iter().any(|r| r.ip == *ip && r.port.number == *port),
            "the refusal of the sandbox's connection to {name} ({ip}:{port}) was not recorded: {refused:?}"
        );
    }
    Reached { seen, refused }
}
