//! The release's NetworkPolicies enforced on the pods, as NKP's CNI (Cilium) enforces them: a connection a policy
//! does not admit is refused, and the refusal is recorded.
//!
//! Pods here share one network namespace, each on an address of its own, so a packet's source address does not say
//! which pod sent it. Its socket does: every process of a pod runs in a cgroup (v2) of that pod, entered before
//! exec, and one nftables table in the namespace sorts each new connection by its socket's cgroup
//! (`socket cgroupv2`) into that pod's chain. The chain accepts exactly what `network_policy::allows` admits, for
//! every pod and service the harness knows and every port the policies or the pods name, and decides any other
//! address as the policies decide for a place outside the cluster. What it refuses it adds to the pod's `refused`
//! set and resets (TCP) or answers port-unreachable (UDP), as Cilium's policy drop shows to an application that
//! has no answer.
//!
//! What is not a pod (the harness itself, as the kubelet's probes; Traefik; the cluster's DNS; the model servers)
//! runs outside those cgroups and is not filtered, so ingress to a release pod from Traefik is not judged.
//! Needs cgroup v2 mounted under `/sys/fs/cgroup` and Debian's nftables (`scripts/test-tools install`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::network_policy::{Endpoint, Port, Protocol, allows, named_ports};
use crate::support::traefik::StubNet;

const NFT: &str = "/usr/sbin/nft";
const TABLE: &str = "dify_network_policy";
/// A packet's destination, as the chains' sets hold it.
const CONCAT: &str = "ip daddr . meta l4proto . th dport";
/// Where nft resolves a `socket cgroupv2` path from.
const CGROUP_FS: &str = "/sys/fs/cgroup";

pub struct PodFirewall {
    /// This run's cgroup: `dify-gitops-<pid>-<n>` at the root of the cgroup v2 hierarchy, a cgroup per pod in it.
    run: PathBuf,
    /// The run's cgroup as nft names it (relative to /sys/fs/cgroup).
    nft_path: PathBuf,
    /// Pods in the order of their chains (`pod_<index>`, `refused_<index>`).
    pods: Mutex<Vec<String>>,
}

/// A connection the policies refused: which pod opened it, to where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub pod: String,
    pub ip: Ipv4Addr,
    pub port: Port,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}:{}/{}", self.pod, self.ip, self.port.number, self.port.protocol.nft())
    }
}

impl PodFirewall {
    /// A cgroup for this run, at the root of the cgroup v2 hierarchy.
    pub fn create() -> PodFirewall {
        assert!(Path::new(NFT).exists(), "{NFT} is missing: install Debian's nftables (`scripts/test-tools install`)");
        let mount = cgroup2_mount();
        let relative = mount.strip_prefix(CGROUP_FS).unwrap_or_else(|_| {
            panic!("cgroup v2 is mounted at {}, outside {CGROUP_FS}, where nft looks for it", mount.display())
        });
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("dify-gitops-{}-{n}", std::process::id());
        let run = mount.join(&name);
        std::fs::create_dir(&run).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", run.display()));
        PodFirewall { run, nft_path: relative.join(&name), pods: Mutex::new(Vec::new()) }
    }

    /// The pod's `cgroup.procs`, open for writing: a process that writes `0` to it enters the pod's cgroup.
    pub fn cgroup_procs(&self, pod: &str) -> File {
        let dir = self.pod_cgroup(pod);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("opening {}/cgroup.procs: {e}", dir.display()))
    }

    /// The pod's cgroup, created the first time: by the table that names it, or by the pod's first process.
    fn pod_cgroup(&self, pod: &str) -> PathBuf {
        let dir = self.run.join(pod);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        dir
    }

    /// Loads the table that enforces `policies` on `pods` (the release's, each in its cgroup) towards `pods` and
    /// `services` (the cluster's other pods the harness runs), kept as `ruleset` (nft's syntax). Returns the verdicts
    /// as a table for people.
    pub fn enforce(
        &self,
        net: &StubNet,
        policies: &[Value],
        pods: &[Endpoint],
        services: &[Endpoint],
        ruleset_file: &Path,
    ) -> String {
        let in_cluster: Vec<&Endpoint> = pods.iter().chain(services).collect();
        let cluster_ips: Vec<String> = in_cluster.iter().map(|e| e.ip.to_string()).collect();
        let policy_ports = named_ports(policies);
        let outside = Endpoint {
            name: "outside the cluster".into(),
            ip: Ipv4Addr::UNSPECIFIED,
            namespace: None,
            labels: Default::default(),
            ports: vec![],
        };
        let (mut sets, mut chains, mut dispatch) = (String::new(), String::new(), String::new());
        let mut table = String::from(
            "# What each pod may open under the release's NetworkPolicies. \"anything, but\": the destinations it \
             reaches only on the ports given (none: not at all); \"only\": all it reaches.\n",
        );
        let mut names = self.pods.lock().unwrap();
        for (index, pod) in pods.iter().enumerate() {
            names.push(pod.name.clone());
            // nft resolves the cgroup's path when it loads the table, so it must exist before the pod starts.
            self.pod_cgroup(&pod.name);
            let cgroup = self.nft_path.join(&pod.name);
            // Level 2: the pod's cgroup lies in the run's, at the hierarchy's root.
            let _ = writeln!(dispatch, "    socket cgroupv2 level 2 \"{}\" jump pod_{index}", cgroup.display());
            // Per destination: the ports admitted one by one, those refused though the rest are open, and the
            // addresses open on every port.
            let (mut admitted_exact, mut refused_exact, mut open) = (Vec::new(), Vec::new(), Vec::new());
            // For people: what it may reach (each destination and its ports), and where it is held to some ports.
            let (mut reaches, mut held) = (Vec::new(), Vec::new());
            for to in in_cluster.iter().filter(|to| to.ip != pod.ip) {
                let mut ports: BTreeSet<Port> = policy_ports.iter().copied().collect();
                ports.extend(to.ports.iter().copied());
                let (admitted, refused): (Vec<Port>, Vec<Port>) =
                    ports.into_iter().partition(|p| allows(policies, pod, to, *p));
                if any_other_port(policies, pod, to) {
                    open.push(to.ip.to_string());
                    refused_exact.extend(refused.iter().map(|p| element(to.ip, p)));
                    reaches.push(format!("{} (any port)", to.name));
                    if !refused.is_empty() {
                        let ports: Vec<String> = refused.iter().map(port_name).collect();
                        held.push(format!("{} (not {})", to.name, ports.join(" ")));
                    }
                } else {
                    admitted_exact.extend(admitted.iter().map(|p| element(to.ip, p)));
                    let served: Vec<String> = to.ports.iter().filter(|p| admitted.contains(p)).map(port_name).collect();
                    let ports = if served.is_empty() { "none".to_string() } else { served.join(" ") };
                    held.push(format!("{} ({ports})", to.name));
                    if !served.is_empty() {
                        reaches.push(format!("{} ({ports})", to.name));
                    }
                }
            }
            let mut chain = format!(
                "  chain pod_{index} {{\n    ip daddr 127.0.0.0/8 accept\n    meta nfproto ipv6 accept\n    \
                 ip daddr {} accept\n",
                pod.ip
            );
            if !admitted_exact.is_empty() {
                let _ = writeln!(chain, "    {CONCAT} {{ {} }} accept", admitted_exact.join(", "));
            }
            if !refused_exact.is_empty() {
                let _ = writeln!(chain, "    {CONCAT} {{ {} }} goto refuse_{index}", refused_exact.join(", "));
            }
            if !open.is_empty() {
                let _ = writeln!(chain, "    ip daddr {{ {} }} accept", open.join(", "));
            }
            let beyond = format!("ip daddr != {{ {} }}", cluster_ips.join(", "));
            if any_other_port(policies, pod, &outside) {
                let _ = writeln!(chain, "    {beyond} accept");
                let but = if held.is_empty() { String::new() } else { format!(", but {}", held.join(", ")) };
                let _ = writeln!(table, "{:<28} anything{but}", pod.name);
            } else {
                let ports: Vec<String> = policy_ports
                    .iter()
                    .filter(|p| allows(policies, pod, &outside, **p))
                    .map(|p| format!("{} . {}", p.protocol.nft(), p.number))
                    .collect();
                if !ports.is_empty() {
                    let _ = writeln!(chain, "    {beyond} meta l4proto . th dport {{ {} }} accept", ports.join(", "));
                    reaches.push(format!("outside the cluster ({})", ports.join(" ")));
                }
                let _ = writeln!(table, "{:<28} only {}", pod.name, reaches.join(", "));
            }
            let _ = write!(
                chain,
                "    goto refuse_{index}\n  }}\n  chain refuse_{index} {{\n    \
                 meta l4proto {{ tcp, udp }} add @refused_{index} {{ {CONCAT} }}\n    \
                 meta l4proto tcp reject with tcp reset\n    reject with icmpx port-unreachable\n  }}\n"
            );
            chains.push_str(&chain);
            let _ = writeln!(
                sets,
                "  set refused_{index} {{ type ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; }}"
            );
        }
        let ruleset = format!(
            "table inet {TABLE} {{\n{sets}{chains}  chain output {{\n    \
             type filter hook output priority filter; policy accept;\n    \
             ct state established,related accept\n{dispatch}  }}\n}}\n"
        );
        std::fs::write(ruleset_file, &ruleset).unwrap();
        let (ok, text) = nft(net, &["-f", ruleset_file.to_str().unwrap()]);
        assert!(ok, "nft could not load the pods' NetworkPolicy table: {text}\n{ruleset}");
        table
    }

    /// Every connection refused so far, by pod.
    pub fn refused(&self, net: &StubNet) -> Result<Vec<Refusal>, String> {
        let (ok, text) = nft(net, &["-j", "list", "table", "inet", TABLE]);
        if !ok {
            return Err(format!("nft could not list the pods' NetworkPolicy table: {text}"));
        }
        let listed: Value = serde_json::from_str(&text).map_err(|e| format!("nft -j printed {e}: {text}"))?;
        let names = self.pods.lock().unwrap();
        let mut refusals = Vec::new();
        for entry in listed["nftables"].as_array().into_iter().flatten() {
            let set = &entry["set"];
            let Some(index) = set["name"].as_str().and_then(|n| n.strip_prefix("refused_")) else { continue };
            let pod = index.parse::<usize>().ok().and_then(|i| names.get(i)).ok_or_else(|| format!("set {index}"))?;
            for element in set["elem"].as_array().into_iter().flatten() {
                refusals
                    .push(refusal(pod, element).ok_or_else(|| format!("a refused element nft printed: {element}"))?);
            }
        }
        refusals.sort();
        Ok(refusals)
    }
}

impl Drop for PodFirewall {
    /// Ends whatever still runs in the pods' cgroups, then removes them.
    fn drop(&mut self) {
        let pods: Vec<PathBuf> =
            std::fs::read_dir(&self.run).into_iter().flatten().flatten().map(|e| e.path()).collect();
        for pod in &pods {
            let _ = std::fs::write(pod.join("cgroup.kill"), "1");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for pod in pods.iter().chain([&self.run]) {
            while std::fs::remove_dir(pod).is_err() && pod.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One element of a `refused_<n>` set as `nft -j` prints it: `{"concat": [ip, protocol, port]}`, or that inside
/// `{"elem": {"val": …}}` when it carries an expiry.
fn refusal(pod: &str, element: &Value) -> Option<Refusal> {
    let value = element.get("elem").map_or(element, |e| &e["val"]);
    let parts = value["concat"].as_array()?;
    let protocol = match parts.get(1)? {
        Value::String(s) if s == "tcp" => Protocol::Tcp,
        Value::Number(n) if n.as_u64() == Some(6) => Protocol::Tcp,
        _ => Protocol::Udp,
    };
    let ip = parts.first()?.as_str()?.parse().ok()?;
    let number = u16::try_from(parts.get(2)?.as_u64()?).ok()?;
    Some(Refusal { pod: pod.to_string(), ip, port: Port { protocol, number } })
}

/// Whether `from` may reach `to` on the ports no policy names (their verdicts are all the same): port 1, TCP and UDP.
fn any_other_port(policies: &[Value], from: &Endpoint, to: &Endpoint) -> bool {
    [Protocol::Tcp, Protocol::Udp].into_iter().all(|protocol| allows(policies, from, to, Port { protocol, number: 1 }))
}

/// A destination and port as an element of the chains' sets.
fn element(ip: Ipv4Addr, port: &Port) -> String {
    format!("{ip} . {} . {}", port.protocol.nft(), port.number)
}

fn port_name(port: &Port) -> String {
    match port.protocol {
        Protocol::Tcp => port.number.to_string(),
        Protocol::Udp => format!("{}/udp", port.number),
    }
}

/// Runs nft inside the pods' network namespace: whether it succeeded, and what it printed.
fn nft(net: &StubNet, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(NFT);
    command.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let output = net.spawn(command).and_then(|c| c.wait_with_output()).expect("running nft");
    let text = if output.status.success() { output.stdout } else { output.stderr };
    (output.status.success(), String::from_utf8_lossy(&text).into_owned())
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` beside v1).
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
        })
        .expect("cgroup v2 is not mounted: the harness puts each pod's processes in a cgroup of its own")
}
