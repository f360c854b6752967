//! Bringing a release up as a cluster would: the testbed holds the chart's release (`helm install --no-hooks`), and
//! each workload runs in the order a cluster gets there (data stores, the services Dify calls, the migration Job,
//! Dify's Deployments, the bootstrap Job), each until its probes pass. `Install` owns every process it started and
//! stops them when dropped.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::credentials::{Ids, Privileges, ids_of, privileges_of};
use crate::egress_proxy::EgressProxy;
use crate::images::{self, Images, Kind};
use crate::model_server::{self, ModelServer};
use crate::network_policy::{Endpoint, Port, Protocol};
use crate::pod_firewall::Refusal;
use crate::pods::{Cluster, Launch, Process, descendants, tcp_open};
use crate::pypi_mirror::PypiMirror;
use crate::release::{Container, Release};
use crate::root;
use crate::s3_store::{self, S3Store};
use crate::scenario;
use crate::support::traefik::{Traefik, traefik_crds};
use crate::support::{Testbed, nkp_fixture};

const NAMESPACE: &str = "dify";
/// The namespace of the model servers' Services.
const MODELS_NAMESPACE: &str = "models";
/// The egress proxy's port on the load balancer's address.
const EGRESS_PORT: u16 = 3128;
/// The S3 store's port on its own address (versitygw's default).
const S3_PORT: u16 = 7070;
/// The Secret with the S3 store's keys, created before the install (`storage.files.s3.existingSecret`).
const S3_SECRET: &str = "dify-s3";

/// What `tests/dify/prepare VERSION` built (it must have run: the suite runs it first).
fn prepared(version: &str) -> Images {
    let out = Command::new(root().join("tests/dify/prepare")).args(["path", version]).output().unwrap();
    assert!(out.status.success(), "tests/dify/prepare path {version}: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let parts = [
        "src",
        "api-venv",
        "web-dify",
        "plugin-daemon",
        "sandbox",
        "weaviate",
        "model-plugin",
        "model-plugin-offline",
        "model-plugin-signed",
        "pypi-mirror",
    ];
    for part in parts {
        assert!(
            dir.join(part).is_dir(),
            "{} is missing: build it with `tests/dify/prepare {version}` (scripts/test dify does)",
            dir.join(part).display()
        );
    }
    let node = Command::new("sh").args(["-c", "command -v node"]).output().unwrap();
    let node = PathBuf::from(String::from_utf8(node.stdout).unwrap().trim());
    assert!(node.is_file(), "node is not on PATH: scripts/test-tools install node");
    let node_dir = std::fs::canonicalize(&node).unwrap().parent().unwrap().to_path_buf();
    Images {
        src: dir.join("src"),
        api_venv: dir.join("api-venv"),
        web_build: dir.join("web-dify"),
        web_root: dir.join("web-root"),
        plugin_daemon: dir.join("plugin-daemon"),
        sandbox: dir.join("sandbox"),
        weaviate: dir.join("weaviate"),
        signed_package: dir.join("model-plugin-signed/openai_api_compatible.signed.difypkg"),
        trusted_key: dir.join("model-plugin-signed/harness.public.pem"),
        offline_package: dir.join("model-plugin-offline/openai_api_compatible-offline.difypkg"),
        package: dir.join("model-plugin/openai_api_compatible.difypkg"),
        package_src: dir.join("model-plugin/src/models/openai_api_compatible"),
        pypi_mirror: dir.join("pypi-mirror"),
        run_dir: PathBuf::new(),
        node_dir,
    }
}

/// A running pod: its process and what started it (exec probes run in the same context).
struct Pod {
    container: Container,
    launch: Launch,
    ip: Ipv4Addr,
    process: Process,
}

pub struct Install {
    pub testbed: Testbed,
    /// Kept for its lifetime: it serves the front door until the install is dropped.
    _traefik: Traefik,
    /// The pods' only way out (to PyPI, for plugin installs).
    pub egress: EgressProxy,
    /// The private model endpoint the model plugin is pointed at.
    pub model: ModelServer,
    /// A second model server on another private address, which the SSRF proxy's allow-list does not admit.
    pub unlisted_model: ModelServer,
    /// The S3-compatible store of Dify's files and the plugin daemon's storage, with `Files::S3`.
    pub s3: Option<S3Store>,
    /// The private PyPI mirror, in the run that installs plugins' dependencies from one.
    pub mirror: Option<PypiMirror>,
    pub cluster: Cluster,
    pub release: Release,
    pub images: Images,
    pub address: Ipv4Addr,
    pods: Vec<Pod>,
    /// Addresses by workload name.
    pub addresses: std::collections::BTreeMap<String, Ipv4Addr>,
    pub output: PathBuf,
    pub figures: Vec<String>,
    /// When the set-up began (testbed, Traefik, then `helm install`): figures count from here.
    pub started: Instant,
}

fn helm(testbed: &Testbed, args: &[&str]) -> String {
    let output = Command::new("helm")
        .args(args)
        .env("KUBECONFIG", &testbed.kubeconfig)
        .output()
        .expect("running helm (is it on PATH?)");
    assert!(output.status.success(), "helm {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Install {
    /// `label` names the run's output directory, `test-output/dify/<label>/`.
    pub fn set_up(
        version: &str,
        extra_sets: &[&str],
        label: &str,
        setup: FirstSetUp,
        egress: Egress,
        files: Files,
    ) -> Install {
        let started = Instant::now();
        let mut images = prepared(version);
        let output = root().join("test-output/dify").join(label);
        let _ = std::fs::remove_dir_all(&output);
        std::fs::create_dir_all(&output).unwrap();
        let crds = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(crds.path(), traefik_crds(3)).unwrap();
        let testbed = Testbed::start(&[nkp_fixture(), crds.path().to_path_buf()]);
        let run_dir = testbed.dir.join("dify");
        std::fs::create_dir_all(&run_dir).unwrap();
        images.run_dir = run_dir.clone();
        let cluster = Cluster::create(&run_dir, NAMESPACE, &images.host_dirs());
        let address = cluster.net.host_address();
        let traefik = Traefik::start_on(&testbed, address);
        // A corporate proxy beside the load balancer, and a model server on a private address of the pod network.
        let egress_proxy = EgressProxy::start(address, EGRESS_PORT, &cluster.net.cidr(), &run_dir);
        // The artifact server's packages: the offline bundle, or with a PyPI mirror the package as it was made.
        let package = if egress == Egress::AirGappedMirror { &images.package } else { &images.offline_package };
        let packages = package.parent().unwrap().to_path_buf();
        // Each is a Service of a namespace of its own, as a vLLM or Ollama in the cluster is: the release names it
        // `<service>.<namespace>`, which resolves only through a pod's search list.
        let mut model = ModelServer::start(&cluster.net, cluster.net.new_address(), 8000, &packages);
        model.serve_as(&cluster.dns, "model-server", MODELS_NAMESPACE);
        let mut unlisted_model = ModelServer::start(&cluster.net, cluster.net.new_address(), 8000, &packages);
        unlisted_model.serve_as(&cluster.dns, "unlisted-model", MODELS_NAMESPACE);
        // Files on S3: a store outside the release, on an address of its own, its data where no pod sees it.
        let s3 = (files == Files::S3)
            .then(|| S3Store::start(&cluster.net, cluster.net.new_address(), S3_PORT, &testbed.dir.join("s3-store")));
        let mirror = (egress == Egress::AirGappedMirror).then(|| {
            let packages = images.pypi_mirror.join("packages");
            PypiMirror::start(
                &cluster.net,
                cluster.net.new_address(),
                8443,
                &packages,
                &run_dir,
                &cluster.dir.join("logs"),
            )
        });

        // The seed's install: path /dify on Kommander's Traefik, the chart's default web image for that path.
        testbed.kubectl(&["create", "namespace", NAMESPACE]);
        // This machine reaches PyPI through a TLS-inspecting network, whose CA only its own trust store holds: the
        // plugin daemon gets that store through the chart's caBundle, as an operator behind such a proxy gives theirs.
        testbed.kubectl(&[
            "-n",
            NAMESPACE,
            "create",
            "configmap",
            "egress-ca",
            "--from-file=ca.crt=/etc/ssl/certs/ca-certificates.crt",
        ]);
        let chart = root().join("chart/dify");
        let sets = [
            "expose.ingressClassName=kommander-traefik".to_string(),
            "expose.path=/dify".to_string(),
            "external.scheme=https".to_string(),
            format!("external.host={address}"),
            "images.dify.repository=langgenius/dify".to_string(),
            format!("images.dify.tag={version}"),
            format!("secrets.difySecretKey={}", random_hex(32)),
            "storage.storageClassName=nutanix-volume".to_string(),
        ];
        let mut args = vec!["install", "dify", chart.to_str().unwrap(), "-n", NAMESPACE, "--no-hooks"];
        for set in &sets {
            args.extend(["--set-string", set]);
        }
        // The SSRF proxy refuses private destinations (as from Dify 1.15; below it the chart's default follows
        // Dify's: open) except the model server's address, on its allow-list.
        let mut sets = vec![
            ("--set", "ssrfProxy.allowPrivateNetworks=false".to_string()),
            ("--set-json", format!("ssrfProxy.allowList.cidrs=[\"{}/32\"]", model.ip)),
        ];
        match egress {
            // The plugin daemon installs plugins' dependencies through the proxy and reaches the model directly.
            // The model plugin is signed with the organisation's own key, which the daemon trusts (signatures stay
            // verified).
            Egress::Proxy => {
                let key = format!("harness.public.pem={}", images.trusted_key.display());
                testbed.kubectl(&["-n", NAMESPACE, "create", "configmap", "plugin-keys", "--from-file", &key]);
                sets.extend([
                    ("--set", format!("pluginDaemon.proxy.http={}", egress_proxy.url)),
                    ("--set", format!("pluginDaemon.proxy.https={}", egress_proxy.url)),
                    ("--set", format!("pluginDaemon.proxy.noProxy={}", model.host)),
                    ("--set", "pluginDaemon.caBundle.configMap=egress-ca".to_string()),
                    ("--set", "pluginDaemon.trustedKeys.configMap=plugin-keys".to_string()),
                    ("--set-json", "pluginDaemon.trustedKeys.keys=[\"harness.public.pem\"]".to_string()),
                ])
            }
            // The chart's locked-down egress for a proxied site: the daemon leaves through the SSRF proxy only, which
            // forwards all but the allow-listed model server to the corporate proxy (ssrfProxy.upstream). Signed
            // package and trusted key, and this machine's CA, as with Egress::Proxy.
            Egress::ProxyThroughSsrf => {
                let key = format!("harness.public.pem={}", images.trusted_key.display());
                testbed.kubectl(&["-n", NAMESPACE, "create", "configmap", "plugin-keys", "--from-file", &key]);
                sets.extend([
                    ("--set", "pluginDaemon.egressThroughSsrfProxy=true".to_string()),
                    ("--set-string", format!("ssrfProxy.upstream.host={address}")),
                    ("--set", format!("ssrfProxy.upstream.port={EGRESS_PORT}")),
                    ("--set", "pluginDaemon.caBundle.configMap=egress-ca".to_string()),
                    ("--set", "pluginDaemon.trustedKeys.configMap=plugin-keys".to_string()),
                    ("--set-json", "pluginDaemon.trustedKeys.keys=[\"harness.public.pem\"]".to_string()),
                ])
            }
            // Nothing is configured to leave the namespace, and nothing could: no marketplace, no corporate proxy. The
            // offline bundle is unsigned (repackaging drops the signature): signature verification off, a documented
            // chart value, in this run only. The daemon and its plugins leave through the SSRF proxy, so the
            // allow-list decides which model endpoints plugins reach.
            Egress::AirGapped => sets.extend([
                ("--set", "pluginDaemon.marketplace=false".to_string()),
                ("--set", "pluginDaemon.forceVerifyingSignature=false".to_string()),
                ("--set", "pluginDaemon.egressThroughSsrfProxy=true".to_string()),
            ]),
            // The same, with the package as made (unsigned, no wheels): its dependencies come from the site's PyPI
            // mirror, whose private CA the daemon is given, as an NKP site gives its Nexus's.
            Egress::AirGappedMirror => {
                let mirror = mirror.as_ref().unwrap();
                let ca = format!("ca.crt={}", mirror.ca.display());
                testbed.kubectl(&["-n", NAMESPACE, "create", "configmap", "mirror-ca", "--from-file", &ca]);
                sets.extend([
                    ("--set", "pluginDaemon.marketplace=false".to_string()),
                    ("--set", "pluginDaemon.forceVerifyingSignature=false".to_string()),
                    ("--set", "pluginDaemon.egressThroughSsrfProxy=true".to_string()),
                    ("--set-string", format!("pluginDaemon.pipIndexUrl={}", mirror.url)),
                    ("--set", "pluginDaemon.caBundle.configMap=mirror-ca".to_string()),
                ])
            }
        }
        // Dify's files and the plugin daemon's storage (which follows storage.files.type) on the store, with the keys
        // in a Secret made beforehand, as an operator makes it.
        if let Some(store) = &s3 {
            store.create_secret(&testbed.kubeconfig, NAMESPACE, S3_SECRET);
            sets.extend([
                ("--set-string", "storage.files.type=s3".to_string()),
                ("--set-string", format!("storage.files.s3.endpoint={}", store.endpoint)),
                ("--set-string", format!("storage.files.s3.bucket={}", s3_store::BUCKET)),
                ("--set-string", format!("storage.files.s3.region={}", s3_store::REGION)),
                ("--set-string", "storage.files.s3.addressStyle=path".to_string()),
                ("--set-string", format!("storage.files.s3.existingSecret={S3_SECRET}")),
            ]);
        }
        sets.extend(extra_sets.iter().map(|s| ("--set", s.to_string())));
        if setup == FirstSetUp::Bootstrap {
            sets.extend(bootstrap_sets(&model, egress));
            if matches!(egress, Egress::Proxy | Egress::ProxyThroughSsrf) {
                // The model plugin's package, as an operator without the marketplace hands it to the chart.
                let package = format!("plugin.difypkg={}", images.signed_package.display());
                testbed.kubectl(&["-n", NAMESPACE, "create", "configmap", "model-plugin", "--from-file", &package]);
            }
        }
        for (flag, set) in &sets {
            args.extend([*flag, set.as_str()]);
        }
        helm(&testbed, &args);
        let hooks_yaml = helm(&testbed, &["get", "hooks", "dify", "-n", NAMESPACE]);
        let hooks = to_json_objects(&testbed, &hooks_yaml);
        let release = Release::read(
            NAMESPACE,
            |kind| serde_json::from_str(&testbed.kubectl(&["get", kind, "-n", NAMESPACE, "-o", "json"])).unwrap(),
            hooks,
        );
        let mut install = Install {
            testbed,
            _traefik: traefik,
            egress: egress_proxy,
            model,
            unlisted_model,
            s3,
            mirror,
            cluster,
            release,
            images,
            address,
            pods: Vec::new(),
            addresses: Default::default(),
            output,
            figures: Vec::new(),
            started,
        };
        install.wire_services();
        install.enforce_network_policies();
        install.figure(format!("set-up (testbed, Traefik, helm install): {:.1} s", started.elapsed().as_secs_f64()));
        install
    }

    pub fn figure(&mut self, line: String) {
        eprintln!("dify: {line}");
        self.figures.push(line);
    }

    /// Every chat and embedding request the model server received is in the SSRF proxy's access log (`ssrf_log`),
    /// each line `passed` as `how` says; the count of those requests.
    pub fn model_requests_through_ssrf_proxy(&self, ssrf_log: &str, passed: impl Fn(&str) -> bool, how: &str) -> usize {
        let mut through = 0;
        for route in ["chat/completions", "embeddings"] {
            let request = format!("POST {}/{route}", self.model.url);
            let logged: Vec<&str> = ssrf_log.lines().filter(|l| l.contains(&request)).collect();
            let received = self.model.requests_to(&format!("/v1/{route}")).len();
            assert!(
                received > 0 && logged.len() == received && logged.iter().all(|l| passed(l)),
                "the model server received {received} requests to /v1/{route}; the SSRF proxy {how}: {logged:?}"
            );
            through += received;
        }
        through
    }

    /// The bootstrap Job's log says it installed the model plugin and added both models (their checks reach the
    /// model server through the plugin); its install line becomes a figure.
    pub fn check_bootstrap_set_up_the_provider(&mut self) {
        let bootstrap = std::fs::read_to_string(self.cluster.dir.join("logs/dify-bootstrap-0.log")).unwrap_or_default();
        let installed = bootstrap.lines().find(|l| l.contains("plugin: ") && l.contains(" installed in "));
        let installed = installed.unwrap_or_else(|| panic!("the bootstrap Job installed no plugin:\n{bootstrap}"));
        for model in [
            format!("model: {} (llm) added", model_server::CHAT_MODEL),
            format!("model: {} (text-embedding) added", model_server::EMBEDDING_MODEL),
        ] {
            assert!(bootstrap.contains(&model), "the bootstrap Job should log {model:?}:\n{bootstrap}");
        }
        self.figure(format!("bootstrap: {}", installed.trim()));
    }

    /// Each workload gets a pod address; each Service of the release resolves, by name, to the address of the
    /// workload it selects, and an EndpointSlice puts that address behind it for Traefik.
    pub fn wire_services(&mut self) {
        for w in &self.release.workloads {
            let name = w["metadata"]["name"].as_str().unwrap().to_string();
            let ip = self.cluster.net.new_address();
            self.cluster.add_pod(ip, &format!("{name}-0"));
            self.addresses.insert(name, ip);
        }
        let mut slices = Vec::new();
        for service in &self.release.services {
            let name = service["metadata"]["name"].as_str().unwrap();
            let selector = service["spec"]["selector"].as_object().cloned().unwrap_or_default();
            let Some(workload) = self.release.workloads.iter().find(|w| {
                let labels = &w["spec"]["template"]["metadata"]["labels"];
                w["kind"] != "Job" && selector.iter().all(|(k, v)| &labels[k] == v)
            }) else {
                continue;
            };
            let workload_name = workload["metadata"]["name"].as_str().unwrap();
            let ip = self.addresses[workload_name];
            let ns = NAMESPACE;
            self.cluster.add_service(ip, name);
            let container_ports = &workload["spec"]["template"]["spec"]["containers"][0]["ports"];
            let ports: Vec<Value> = service["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let target = match &p["targetPort"] {
                        Value::Number(n) => n.as_u64().unwrap(),
                        Value::String(port_name) => container_ports
                            .as_array()
                            .and_then(|a| a.iter().find(|c| &c["name"] == port_name))
                            .and_then(|c| c["containerPort"].as_u64())
                            .unwrap_or_else(|| panic!("{workload_name} has no container port {port_name}")),
                        other => panic!("targetPort {other}"),
                    };
                    json!({"name": p["name"], "port": target, "protocol": "TCP"})
                })
                .collect();
            slices.push(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-harness"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
                "ports": ports,
            }));
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": slices});
        let file = self.cluster.dir.join("endpointslices.json");
        std::fs::write(&file, list.to_string()).unwrap();
        self.testbed.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// The release's NetworkPolicies, enforced on its pods from here on (`pod_firewall.rs`): towards each other,
    /// the cluster's DNS (CoreDNS's pods in `kube-system`) and the model servers (pods of namespace `models`).
    /// Everything else the pods reach (the S3 store, the PyPI mirror, the corporate proxy, the load balancer) is
    /// outside the cluster. The verdicts go to `network-policy.txt`, nftables's rules to `network-policy.nft`.
    fn enforce_network_policies(&mut self) {
        let pods: Vec<Endpoint> = self
            .release
            .workloads
            .iter()
            .map(|w| {
                let name = w["metadata"]["name"].as_str().unwrap();
                let template = &w["spec"]["template"];
                let ports = template["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .map(|p| Port {
                        protocol: if p["protocol"] == "UDP" { Protocol::Udp } else { Protocol::Tcp },
                        number: p["containerPort"].as_u64().unwrap() as u16,
                    })
                    .collect();
                Endpoint {
                    name: format!("{name}-0"),
                    ip: self.addresses[name],
                    namespace: Some(NAMESPACE.to_string()),
                    labels: serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default(),
                    ports,
                }
            })
            .collect();
        let pod = |name: &str, ip: Ipv4Addr, namespace: &str, label: (&str, &str), ports: Vec<Port>| Endpoint {
            name: name.to_string(),
            ip,
            namespace: Some(namespace.to_string()),
            labels: [(label.0.to_string(), label.1.to_string())].into(),
            ports,
        };
        let dns_ports =
            vec![Port { protocol: Protocol::Udp, number: 53 }, Port { protocol: Protocol::Tcp, number: 53 }];
        let model_port = |port| vec![Port { protocol: Protocol::Tcp, number: port }];
        let services = vec![
            pod("coredns", self.cluster.dns.ip, "kube-system", ("k8s-app", "kube-dns"), dns_ports),
            pod("model-server", self.model.ip, MODELS_NAMESPACE, ("app", "model-server"), model_port(self.model.port)),
            pod(
                "unlisted-model",
                self.unlisted_model.ip,
                MODELS_NAMESPACE,
                ("app", "unlisted-model"),
                model_port(self.unlisted_model.port),
            ),
        ];
        let policies = &self.release.network_policies;
        let ruleset = self.output.join("network-policy.nft");
        let table = self.cluster.firewall.enforce(&self.cluster.net, policies, &pods, &services, &ruleset);
        let _ = std::fs::write(self.output.join("network-policy.txt"), &table);
        self.figure(format!(
            "network policies: the release's {} NetworkPolicies enforced on its {} pods (network-policy.txt)",
            policies.len(),
            pods.len()
        ));
    }

    /// No pod opened a connection the release's NetworkPolicies refuse, other than the `provoked` ones a check
    /// opened on purpose: Dify did all it did within its policies, as on a cluster that enforces them.
    pub fn check_no_connection_refused(&self, provoked: &[Refusal]) {
        let unexpected: Vec<String> =
            self.refusals().iter().filter(|r| !provoked.contains(r)).map(ToString::to_string).collect();
        assert!(
            unexpected.is_empty(),
            "the release's NetworkPolicies refused connections its pods opened, as a cluster that enforces them \
             (NKP's Cilium) would: {}. What each pod may open: {}",
            unexpected.join(", "),
            self.output.join("network-policy.txt").display()
        );
    }

    /// Every connection a pod opened that the release's NetworkPolicies refused, so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.cluster.firewall.refused(&self.cluster.net).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts every container of `workload` (init containers first, each to completion).
    pub fn start(&mut self, workload: &str) {
        let ip = self.addresses[workload];
        let pod = format!("{workload}-0");
        for init in self.release.containers(workload, true) {
            let launch = self.images.launch(&init, &pod);
            let process = self.cluster.start(launch);
            process.wait_success(Duration::from_secs(300));
        }
        for container in self.release.containers(workload, false) {
            let launch = self.images.launch(&container, &pod);
            let process = self.cluster.start(launch.clone());
            self.pods.push(Pod { container, launch, ip, process });
        }
    }

    /// Starts `workloads` side by side, then waits for each to be ready, as a cluster brings up a tier.
    pub fn start_all(&mut self, workloads: &[String]) {
        for workload in workloads {
            self.start(workload);
        }
        for workload in workloads {
            let took = self.wait_ready(workload);
            self.figure(format!("{workload} ready in {:.1} s", took.as_secs_f64()));
        }
    }

    /// Runs Job `job` (again, as each upgrade does) to its success. Returns how long it took and what this run
    /// logged.
    pub fn run_job(&mut self, job: &str) -> (Duration, String) {
        let log = self.cluster.dir.join(format!("logs/{job}-0.log"));
        let before = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        self.pods.retain(|p| p.container.workload != job);
        self.start(job);
        let took = self.pod(job).process.wait_success(Duration::from_secs(900));
        let text = std::fs::read(&log).unwrap_or_default();
        (took, String::from_utf8_lossy(&text[before.min(text.len())..]).into_owned())
    }

    /// A key of a Secret of the release, as `kubectl get secret … -o jsonpath` and base64 give it to a user.
    pub fn secret_value(&self, secret: &str, key: &str) -> String {
        let jsonpath = format!("jsonpath={{.data.{key}}}");
        let encoded = self.testbed.kubectl(&["-n", NAMESPACE, "get", "secret", secret, "-o", &jsonpath]);
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap()).unwrap()
    }

    /// The pid of `workload`'s (first) container.
    pub fn pid_of(&self, workload: &str) -> u32 {
        self.pod(workload).process.id()
    }

    fn pod(&self, workload: &str) -> &Pod {
        self.pods.iter().find(|p| p.container.workload == workload).unwrap_or_else(|| panic!("no pod {workload}"))
    }

    /// Runs one probe of `pod` once: Ok when it passes, Err with why not.
    fn probe_once(&self, pod: &Pod, probe: &Value) -> Result<(), String> {
        let port = |p: &Value| -> u16 {
            match p {
                Value::Number(n) => n.as_u64().unwrap() as u16,
                Value::String(name) => *pod.container.ports.get(name).unwrap_or_else(|| panic!("no port {name}")),
                _ => panic!("probe port {p}"),
            }
        };
        if let Some(get) = probe.get("httpGet") {
            let path = get["path"].as_str().unwrap_or("/");
            return match http_get(pod.ip, port(&get["port"]), path) {
                Some(status) if (200..400).contains(&status) => Ok(()),
                Some(status) => Err(format!("GET {path}: {status}")),
                None => Err(format!("GET {path}: no answer")),
            };
        }
        if let Some(tcp) = probe.get("tcpSocket") {
            let port = port(&tcp["port"]);
            return if tcp_open(pod.ip, port) { Ok(()) } else { Err(format!("port {port} closed")) };
        }
        if let Some(exec) = probe.get("exec") {
            let argv: Vec<String> =
                exec["command"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            let mut launch = pod.launch.clone();
            launch.program = argv[0].clone();
            launch.args = argv[1..].to_vec();
            launch.join = Some(pod.process.id());
            let process = self.cluster.start(launch);
            let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1).max(1));
            let started = Instant::now();
            loop {
                if let Some(status) = process.exited() {
                    return if status.success() {
                        Ok(())
                    } else {
                        Err(format!("`{}` exited {status}: {}", argv.join(" "), process.log_tail(5)))
                    };
                }
                if started.elapsed() > timeout {
                    return Err(format!("`{}` ran past its {timeout:?} timeout", argv.join(" ")));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("probe {probe} is not emulated")
    }

    /// Waits until the workload's startup and readiness probes pass, as the kubelet would before sending it
    /// traffic: each within `failureThreshold × periodSeconds` (checked here every 2 s). A workload without
    /// either probe is checked with its liveness probe.
    pub fn wait_ready(&mut self, workload: &str) -> Duration {
        let started = Instant::now();
        let pod = self.pod(workload);
        let mut probes: Vec<(&str, Value)> = Vec::new();
        for (name, probe) in [("startup", &pod.container.startup), ("readiness", &pod.container.readiness)] {
            if let Some(p) = probe {
                probes.push((name, p.clone()));
            }
        }
        if probes.is_empty()
            && let Some(p) = &pod.container.liveness
        {
            probes.push(("liveness", p.clone()));
        }
        for (name, probe) in probes {
            let budget = probe["failureThreshold"].as_u64().unwrap_or(3)
                * probe["periodSeconds"].as_u64().unwrap_or(10)
                + probe["initialDelaySeconds"].as_u64().unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(budget.max(30));
            loop {
                let pod = self.pod(workload);
                if let Some(status) = pod.process.exited() {
                    panic!("pod {} exited ({status}); its log:\n{}", pod.launch.pod, pod.process.log_tail(60));
                }
                match self.probe_once(pod, &probe) {
                    Ok(()) => break,
                    Err(why) if Instant::now() > deadline => panic!(
                        "{workload}: its {name} probe never passed within {budget} s, so the kubelet would never mark \
                         it Ready: {why}\nthe pod's log:\n{}",
                        pod.process.log_tail(40)
                    ),
                    Err(_) => std::thread::sleep(Duration::from_secs(2)),
                }
            }
        }
        started.elapsed()
    }

    /// Every container the harness started ran as the uid, gid and supplementary groups its rendering gives it:
    /// each process as it started (Jobs included), and every process still alive in its pod's process group
    /// (gunicorn's and Celery's workers, PostgreSQL's backends). Prints the table and keeps it as `ids.txt`.
    pub fn check_ids(&self) {
        let started = self.cluster.started.lock().unwrap();
        let mut table = format!(
            "{:<44} {:>5} {:>5}  {:<8}  {:<3}  {:<7}  {:<54}  {}\n",
            "container", "uid", "gid", "groups", "nnp", "seccomp", "capabilities (effective)", "processes"
        );
        let mut wrong = Vec::new();
        for s in started.iter() {
            let mut seen: Vec<(Ids, Privileges)> =
                s.seen.iter().cloned().zip(s.seen_privileges.iter().cloned()).collect();
            seen.extend(descendants(s.pid).into_iter().filter_map(|pid| Some((ids_of(pid)?, privileges_of(pid)?))));
            let name = format!("{}/{}", s.pod, s.container);
            let bad: Vec<String> = seen
                .iter()
                .filter(|(ids, privileges)| *ids != s.expected || *privileges != s.privileges)
                .map(|(ids, privileges)| format!("{ids} {privileges}"))
                .collect();
            let verdict = if seen.is_empty() {
                "none seen".to_string()
            } else if bad.is_empty() {
                format!("{} as rendered", seen.len())
            } else {
                format!("{} of {} differ: {}", bad.len(), seen.len(), bad.join("; "))
            };
            if seen.is_empty() || !bad.is_empty() {
                wrong.push(name.clone());
            }
            let privileges = format!("{:<68}", s.privileges.to_string());
            table.push_str(&format!("{name:<44} {}  {privileges}  {verdict}\n", s.expected));
        }
        eprint!(
            "dify: ids, capabilities, no_new_privs and seccomp of every container (rendered securityContext; \
             /proc/<pid>/status):\n{table}"
        );
        let _ = std::fs::write(self.output.join("ids.txt"), &table);
        assert!(
            wrong.is_empty(),
            "these containers did not run as their rendering says: {}\n{table}",
            wrong.join(", ")
        );
    }

    /// What the pods wrote, by who owns it: each volume of the run and each container's layer over `/etc`, to two
    /// levels, with its files' count, size and owners (`written.txt`). Shows where a process running as its
    /// chart's uid writes (the plugin daemon: its storage, uv's cache under its `HOME`).
    fn written(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let mut out = String::new();
        let mut roots: Vec<PathBuf> = Vec::new();
        for top in ["volumes", "pods"] {
            for pod in std::fs::read_dir(self.cluster.dir.join(top)).into_iter().flatten().flatten() {
                for entry in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
                    roots.push(entry.path());
                }
            }
        }
        roots.push(self.cluster.dir.join("image-api/app/api"));
        roots.sort();
        for root in roots {
            let mut groups: std::collections::BTreeMap<String, (u64, u64, std::collections::BTreeSet<u32>)> =
                Default::default();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let Ok(meta) = entry.path().symlink_metadata() else { continue };
                    let rel = entry.path().strip_prefix(&root).unwrap().to_path_buf();
                    let key: PathBuf = rel.components().take(2).collect();
                    if meta.file_type().is_symlink() && root.ends_with("app/api") {
                        continue;
                    }
                    if meta.is_dir() {
                        stack.push(entry.path());
                    }
                    let group = groups.entry(key.display().to_string()).or_default();
                    group.0 += u64::from(meta.is_file());
                    group.1 += if meta.is_file() { meta.len() } else { 0 };
                    group.2.insert(meta.uid());
                }
            }
            let name = root.strip_prefix(&self.cluster.dir).unwrap().display().to_string();
            for (key, (files, bytes, owners)) in groups {
                let owners: Vec<String> = owners.iter().map(u32::to_string).collect();
                out.push_str(&format!(
                    "{name}/{key}: {files} files, {:.1} MiB, owners {}\n",
                    bytes as f64 / 1048576.0,
                    owners.join(",")
                ));
            }
        }
        out
    }

    pub fn https_status(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sk", "-o", "-", "-w", "\n%{http_code}", &format!("https://{}{path}", self.address)])
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

/// Whatever happened, the figures and every pod's log stay with the screenshots.
impl Drop for Install {
    fn drop(&mut self) {
        let dns = self.cluster.dns.queries();
        let mut outside: Vec<&String> = dns.nxdomain.iter().filter(|n| !n.ends_with(".cluster.local")).collect();
        outside.sort();
        outside.dedup();
        self.figure(format!(
            "cluster DNS: {} lookups answered, {} NXDOMAIN (search-list candidates, and {} names outside the \
             cluster: {})",
            dns.answered.len(),
            dns.nxdomain.len(),
            outside.len(),
            outside.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" ")
        ));
        match self.cluster.firewall.refused(&self.cluster.net) {
            Ok(refused) => {
                let list: Vec<String> = refused.iter().map(ToString::to_string).collect();
                let said = if list.is_empty() { "none".to_string() } else { list.join(", ") };
                self.figure(format!("network policies: connections refused: {said}"));
            }
            Err(e) => self.figure(format!("network policies: the refusals could not be read: {e}")),
        }
        let _ = std::fs::write(self.output.join("figures.txt"), self.figures.join("\n") + "\n");
        let _ = std::fs::write(self.output.join("written.txt"), self.written());
        if let Ok(logs) = std::fs::read_dir(self.cluster.dir.join("logs")) {
            for log in logs.flatten() {
                let _ = std::fs::copy(log.path(), self.output.join(log.file_name()));
            }
        }
    }
}

/// The HTTP status of `GET path` on `ip:port`.
fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 16];
    stream.read_exact(&mut head[..12]).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// YAML documents as JSON objects, converted by kubectl (client side, nothing created).
fn to_json_objects(testbed: &Testbed, yaml: &str) -> Vec<Value> {
    let file = testbed.dir.join("hooks.yaml");
    std::fs::write(&file, yaml).unwrap();
    let text = testbed.kubectl(&["create", "--dry-run=client", "-o", "json", "-f", file.to_str().unwrap()]);
    // One JSON object per document, one after another.
    serde_json::Deserializer::from_str(&text).into_iter::<Value>().map(|v| v.expect("kubectl printed JSON")).collect()
}

/// Installs the chart for `version` and starts what the harness runs, in the order a cluster would get there:
/// data stores, plugin daemon, the migration Job, then every Deployment, each until its probes pass.
pub fn bring_up(
    version: &str,
    extra_sets: &[&str],
    label: &str,
    setup: FirstSetUp,
    egress: Egress,
    files: Files,
) -> Install {
    let mut install = Install::set_up(version, extra_sets, label, setup, egress, files);

    // Data stores first (every StatefulSet: PostgreSQL, Redis, Weaviate), as they come up before the migration
    // Job's init container lets it run.
    let of_kind = |install: &Install, kinds: &[Kind], kind_of_workload: &str| -> Vec<String> {
        install
            .release
            .workloads
            .iter()
            .filter(|w| w["kind"] == kind_of_workload)
            .filter(|w| {
                let image = w["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
                images::kind_of(image).is_some_and(|k| kinds.contains(&k))
            })
            .map(|w| w["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let stores = of_kind(&install, &[Kind::Postgres, Kind::Redis, Kind::Weaviate], "StatefulSet");
    install.start_all(&stores);
    // The services Dify calls: the SSRF proxy, the sandbox behind it, and the plugin daemon (it needs only the
    // stores and creates its own database; the api asks it for models when an app is created).
    let services = of_kind(&install, &[Kind::SsrfProxy, Kind::Sandbox, Kind::PluginDaemon], "Deployment");
    install.start_all(&services);

    // The post-install hook: the migration Job, its init container first.
    let migration_started = Instant::now();
    let jobs: Vec<String> = install
        .release
        .workloads
        .iter()
        .filter(|w| w["kind"] == "Job")
        .map(|w| w["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let job = jobs.iter().find(|j| j.ends_with("-migration")).expect("the release has a migration Job").clone();
    install.start(&job);
    let took = install.pod(&job).process.wait_success(Duration::from_secs(900));
    install.figure(format!("migration Job ({job}) succeeded in {:.1} s", took.as_secs_f64()));

    // Dify's own Deployments (api, worker, beat, web, and api-websocket where the chart renders it).
    let deployments = of_kind(&install, &[Kind::Api, Kind::Web], "Deployment");
    let not_run: Vec<&str> = install
        .release
        .workloads
        .iter()
        .map(|w| w["metadata"]["name"].as_str().unwrap())
        .filter(|n| ![&stores, &services, &deployments, &jobs].iter().any(|l| l.iter().any(|d| d == n)))
        .collect();
    assert!(not_run.is_empty(), "the harness runs every workload of the release, but not: {}", not_run.join(", "));
    for workload in &deployments {
        install.start(workload);
    }
    let took = install.wait_ready("dify-api");
    install.figure(format!(
        "api ready {:.1} s after start; {:.1} s from the start of migration",
        took.as_secs_f64(),
        migration_started.elapsed().as_secs_f64()
    ));
    for workload in deployments.iter().filter(|d| *d != "dify-api") {
        let took = install.wait_ready(workload);
        install.figure(format!("{workload} ready in {:.1} s", took.as_secs_f64()));
    }
    // The front door: the api through Traefik at the chart's path.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = install.https_status("/dify/console/api/setup");
        if code == 200 && body.contains("step") {
            break;
        }
        assert!(Instant::now() < deadline, "Traefik never routed /dify/console/api/setup to the api: {code} {body}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The bootstrap hook Job (weight 10, after the migration's 0), when the release has one.
    if let Some(bootstrap) = jobs.iter().find(|j| j.ends_with("-bootstrap")) {
        let (took, _) = install.run_job(bootstrap);
        install.figure(format!("bootstrap Job ({bootstrap}) succeeded in {:.1} s", took.as_secs_f64()));
    }
    install.check_ids();

    install
}

/// Who sets up Dify after the install.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FirstSetUp {
    /// A person, in the browser (the chart's default).
    InBrowser,
    /// The chart's bootstrap Job: the admin, the model plugin from a local package (a ConfigMap), and the model
    /// server's models with a key.
    Bootstrap,
}

/// How the release reaches the world.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Egress {
    /// Through a corporate proxy (a squid of the test's): plugins' dependencies come from PyPI.
    Proxy,
    /// Through the SSRF proxy only (`pluginDaemon.egressThroughSsrfProxy`), which forwards everything but the
    /// allow-listed model server to the corporate proxy (`ssrfProxy.upstream`): plugins' dependencies come from PyPI.
    ProxyThroughSsrf,
    /// Not at all: the marketplace off, no proxy, the model plugin's offline bundle; the plugin daemon leaves through
    /// the SSRF proxy (`pluginDaemon.egressThroughSsrfProxy`), whose allow-list admits the model server only.
    AirGapped,
    /// As `AirGapped`, but the model plugin's package as made (a pyproject.toml and uv.lock, no wheels), its
    /// dependencies from a private PyPI mirror over TLS with a private CA (`pluginDaemon.pipIndexUrl`, `caBundle`).
    AirGappedMirror,
}

/// Where Dify's files and the plugin daemon's packages live.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Files {
    /// The chart's volumes (`storage.files.type=pvc`, the default).
    Volume,
    /// An S3-compatible store outside the release (`storage.files.type=s3`; the daemon follows it).
    S3,
}

/// The chart values of the bootstrap: `(flag, key=value)`. The plugin: air-gapped, the offline bundle from the
/// model server's `/packages/` (an artifact server of the cluster's network); otherwise the package from a
/// ConfigMap `model-plugin` (the signed package).
fn bootstrap_sets(model: &ModelServer, egress: Egress) -> Vec<(&'static str, String)> {
    let models = json!([
        {"name": model_server::CHAT_MODEL, "type": "llm", "credentials": {"vision_support": "support"}},
        {"name": model_server::EMBEDDING_MODEL, "type": "text-embedding"},
    ]);
    vec![
        ("--set", "bootstrap.enabled=true".to_string()),
        ("--set-string", format!("bootstrap.adminEmail={}", scenario::ADMIN_EMAIL)),
        ("--set", "bootstrap.modelProvider.enabled=true".to_string()),
        match egress {
            Egress::Proxy | Egress::ProxyThroughSsrf => {
                ("--set-string", "bootstrap.modelProvider.packageConfigMap.name=model-plugin".to_string())
            }
            Egress::AirGapped | Egress::AirGappedMirror => {
                let file = if egress == Egress::AirGapped {
                    "openai_api_compatible-offline.difypkg"
                } else {
                    "openai_api_compatible.difypkg"
                };
                let base = model.url.trim_end_matches("/v1");
                ("--set-string", format!("bootstrap.modelProvider.packageUrl={base}/packages/{file}"))
            }
        },
        ("--set-string", format!("bootstrap.modelProvider.endpointUrl={}", model.url)),
        ("--set-json", format!("bootstrap.modelProvider.models={models}")),
        ("--set-string", format!("secrets.openaiApiKey=sk-harness-{}", random_hex(12))),
    ]
}
