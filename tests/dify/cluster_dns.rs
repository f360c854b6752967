//! The cluster's DNS, as CoreDNS is for an air-gapped NKP cluster: Debian's dnsmasq on an address of its own in the
//! pods' network, answering for each Service by its full name (`<name>.<namespace>.svc.cluster.local`) and with
//! NXDOMAIN, at once, for every other name (it has no upstream: the internet's names do not resolve).
//!
//! Pods reach it as a kubelet sets them up ([`ClusterDns::resolv_conf`]): it is their only nameserver, with the search
//! list of their namespace and `ndots:5`, so a short name (`dify-api`) or a name with its namespace (`vllm.models`)
//! resolves only through the search list, as on a cluster. Every query is logged (`logs/cluster-dns.log`).
//!
//! dnsmasq runs as the test's user (root), outside the pods, and is killed by its pid when this drops.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::traefik::StubNet;

/// The cluster's domain, as NKP's (and every kubeadm cluster's) default.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

pub struct ClusterDns {
    pub ip: Ipv4Addr,
    /// The query log.
    pub log: PathBuf,
    /// The records file in the directory dnsmasq watches (`--hostsdir`): rewritten whole on each change.
    records: PathBuf,
    entries: Mutex<Vec<(Ipv4Addr, String)>>,
    child: Child,
}

/// What the query log says: each name asked, and whether it was answered.
#[derive(Debug, Default)]
pub struct Queries {
    /// Names answered with an address.
    pub answered: Vec<String>,
    /// Names answered NXDOMAIN (a search-list candidate, or a name outside the cluster).
    pub nxdomain: Vec<String>,
}

impl ClusterDns {
    /// dnsmasq on `ip:53` inside `net`; its records under `dir/cluster-dns/`, its log in `logs`.
    pub fn start(net: &StubNet, ip: Ipv4Addr, dir: &Path, logs: &Path) -> ClusterDns {
        let binary = Path::new("/usr/sbin/dnsmasq");
        assert!(
            binary.exists(),
            "{} is missing: install Debian's dnsmasq-base (`scripts/test-tools install`)",
            binary.display()
        );
        let records_dir = dir.join("cluster-dns");
        std::fs::create_dir_all(&records_dir).unwrap();
        std::fs::create_dir_all(logs).unwrap();
        let records = records_dir.join("services");
        std::fs::write(&records, "").unwrap();
        let log = logs.join("cluster-dns.log");
        let mut command = Command::new(binary);
        command
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--user=root", "--group=root"])
            // Only its own records, re-read when the file changes; no /etc/hosts, no upstream, and every name
            // answered here (NXDOMAIN when it has no record).
            .args(["--no-hosts", "--no-resolv", "--no-poll", "--local=/#/"])
            .arg(format!("--hostsdir={}", records_dir.display()))
            .args(["--bind-interfaces", &format!("--listen-address={ip}"), "--port=53"])
            // No caching: a record added between two lookups is seen by the second.
            .args(["--cache-size=0", "--log-queries", &format!("--log-facility={}", log.display())])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join("cluster-dns.stderr")).unwrap());
        let child = net.spawn(command).unwrap_or_else(|e| panic!("starting dnsmasq (the cluster's DNS): {e}"));
        let dns = ClusterDns { ip, log, records, entries: Mutex::new(Vec::new()), child };
        // Listening once it has read its (empty) records: it binds its socket before.
        dns.wait_read(0);
        dns
    }

    /// The `/etc/resolv.conf` a kubelet writes for a pod of `namespace` (dnsPolicy ClusterFirst).
    pub fn resolv_conf(&self, namespace: &str) -> String {
        let d = CLUSTER_DOMAIN;
        format!("nameserver {}\nsearch {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n", self.ip)
    }

    /// Service `name` of `namespace` at `ip`: `<name>.<namespace>.svc.cluster.local`, its only record.
    pub fn add_service(&self, ip: Ipv4Addr, name: &str, namespace: &str) -> String {
        let fqdn = format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}");
        let mut entries = self.entries.lock().unwrap();
        entries.push((ip, fqdn.clone()));
        let text: String = entries.iter().map(|(ip, name)| format!("{ip} {name}\n")).collect();
        // dnsmasq re-reads the file when it is closed after writing (inotify).
        std::fs::write(&self.records, text).expect("writing the cluster DNS records");
        self.wait_read(entries.len());
        fqdn
    }

    /// The query log read back: each name asked (A queries), answered or NXDOMAIN, in order.
    pub fn queries(&self) -> Queries {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut queries = Queries::default();
        for line in text.lines() {
            // "<records file> <name> is <address>" / "config <name> is NXDOMAIN"
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(is) = words.iter().rposition(|w| *w == "is") else { continue };
            let (Some(name), Some(answer)) = (words.get(is.wrapping_sub(1)), words.get(is + 1)) else { continue };
            if *answer == "NXDOMAIN" {
                queries.nxdomain.push(name.to_string());
            } else if answer.parse::<Ipv4Addr>().is_ok() {
                queries.answered.push(name.to_string());
            }
        }
        queries
    }

    /// Waits until dnsmasq has read its records file with `names` names in it (its log says so on each read).
    fn wait_read(&self, names: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let read = format!("read {} - {names} names", self.records.display());
        while !std::fs::read_to_string(&self.log).unwrap_or_default().lines().any(|l| l.ends_with(&read)) {
            assert!(
                Instant::now() < deadline,
                "the cluster DNS (dnsmasq on {}:53) never logged {read:?}: {}",
                self.ip,
                std::fs::read_to_string(self.log.with_file_name("cluster-dns.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
