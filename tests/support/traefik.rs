//! A real Traefik v3 in front of the testbed, configured as NKP runs Kommander's Traefik, and stub backends that
//! stand in for Dify's pods.
//!
//! Traefik: the `traefik` binary from `scripts/test-tools install traefik` (NKP main's v3.6.12), a local process on
//! free loopback ports with its Kubernetes Ingress and CRD providers pointed at the testbed's kube-apiserver (its
//! endpoint, admin token and CA), `ingressClass: kommander-traefik` as NKP 2.14+ sets it, entrypoints `web`
//! (redirecting to `websecure`, as NKP does) and `websecure` (TLS on the entrypoint, as the Traefik chart's default
//! that NKP keeps; the default certificate is signed by a test CA, as NKP's is by its kommander-ca).
//!
//! Stubs: the API server refuses loopback and link-local endpoint addresses, so the stubs live on their own
//! addresses in a network namespace joined to this host by a veth pair, behind EndpointSlices for the chart's own
//! Services. We chose that over ExternalName Services to `localhost` because it leaves the chart's Services exactly
//! as rendered (same type, selector, ports) and lets each stub answer on its component's real container port, on an
//! address of its own like a pod; Traefik then sees what it sees on NKP: Services with ready endpoints. The
//! namespace is anonymous: one thread of the test process enters it (`unshare(CLONE_NEWNET)`), so it and the veth
//! pair vanish with the process, even when the test run is killed, and nothing named is left to clean up.
//!
//! Nothing outlives the test process: Traefik is spawned with `PR_SET_PDEATHSIG` from a thread that lives as long
//! as the process, and killed by pid when its [`Traefik`] is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::Testbed;
use super::net::{free_port, serve_each};
use super::tls::serving_certificate;

/// The install command, printed whenever Traefik is missing.
pub const INSTALL_HINT: &str = "scripts/test-tools install traefik && export PATH=\"$(scripts/test-tools path):$PATH\"";

// ---- threads that stay put ----

type Job = Box<dyn FnOnce() + Send>;

/// A thread that lives as long as the process and runs jobs: processes it spawns get `PR_SET_PDEATHSIG` tied to a
/// thread that never ends early, and sockets it binds live in its network namespace.
struct Worker {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Worker {
    fn spawn(name: &str, setup: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> Worker {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let result = setup();
                let ok = result.is_ok();
                ready.send(result).expect("worker setup result");
                if ok {
                    for job in queue {
                        job();
                    }
                }
                // Keep the thread (and its namespace) until the process ends.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning a worker thread");
        started.recv().expect("worker setup").unwrap_or_else(|e| panic!("{name}: {e}"));
        Worker { jobs: Mutex::new(jobs) }
    }

    fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs.lock().unwrap().send(Box::new(move || tx.send(job()).expect("job result"))).expect("worker alive");
        rx.recv().expect("job result")
    }
}

/// Gives the child `PR_SET_PDEATHSIG` (SIGKILL): it dies when the thread that spawns it ends, and these threads
/// live as long as the test process.
fn die_with_spawning_thread(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn process_worker() -> &'static Worker {
    static WORKER: std::sync::OnceLock<Worker> = std::sync::OnceLock::new();
    WORKER.get_or_init(|| Worker::spawn("test-processes", || Ok(())))
}

fn run_ok(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

// ---- stub backends ----

/// A request as a stub saw it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl StubRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a stub answers.
#[derive(Debug, Clone)]
pub struct StubResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl StubResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, content_type: "application/json", headers: vec![], body: body.to_string() }
    }
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/html; charset=utf-8", headers: vec![], body: body.into() }
    }
}

pub type Handler = Arc<dyn Fn(&StubRequest) -> StubResponse + Send + Sync>;

/// A network namespace of the test: a /26 of 198.18.0.0/15 (benchmarking space, never routed), or of
/// 100.64.0.0/10 for pods ([`StubNet::create_pod_network`]), `.1` on this host's end of the veth pair, `.2` and up
/// for stubs. Up to four per test process.
pub struct StubNet {
    worker: Worker,
    ns_if: String,
    subnet: [u8; 3],
    last: u8,
    next: AtomicU8,
}

impl StubNet {
    pub fn create() -> StubNet {
        StubNet::create_in([198, 18])
    }

    /// A namespace whose addresses are in 100.64.0.0/10 (shared address space, RFC 6598): a private range, as a
    /// cluster's pod network is (NKP's is 192.168.0.0/16), so what counts pods as private networks (the chart's
    /// SSRF proxy admits clients from them) counts these; and unlike the RFC 1918 ranges, rarely a host's own LAN.
    pub fn create_pod_network() -> StubNet {
        StubNet::create_in([100, 64])
    }

    /// `base`: the first two octets of a range of at least a /15.
    fn create_in(base: [u8; 2]) -> StubNet {
        // Networks one test process may make (the dify suite makes one per Dify run): each process owns this many of
        // the range's 2048 blocks of 64 addresses, chosen by its pid.
        const PER_PROCESS: u32 = 8;
        static CREATED: AtomicU8 = AtomicU8::new(0);
        let n = CREATED.fetch_add(1, Ordering::Relaxed) as u32;
        assert!(n < PER_PROCESS, "at most {PER_PROCESS} stub networks per test process");
        let pid = std::process::id();
        let block = ((pid % (2048 / PER_PROCESS)) * PER_PROCESS + n) * 64; // a /15 from base
        let subnet = [base[0], base[1] + (block >> 16) as u8, (block >> 8) as u8];
        let last = (block & 0xff) as u8;
        let (host_if, ns_if) = (format!("dgt{pid}{n}h"), format!("dgt{pid}{n}n"));
        let (tid_tx, tid_rx) = mpsc::channel();
        let worker = Worker::spawn("test-netns", move || {
            // SAFETY: unshare(2) on this thread only; it changes no memory.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::other(format!(
                    "unshare(CLONE_NEWNET) failed ({}): the routing tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)",
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).expect("sending the tid");
            Ok(())
        });
        let tid = tid_rx.recv().expect("netns thread id").to_string();
        // Both ends are created here, one is moved into the namespace; when the namespace goes, so does the pair.
        run_ok("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        run_ok("ip", &["link", "set", &ns_if, "netns", &tid]);
        let ip = |host: u8| format!("{}.{}.{}.{}", subnet[0], subnet[1], subnet[2], last + host);
        run_ok("ip", &["addr", "add", &format!("{}/26", ip(1)), "dev", &host_if]);
        run_ok("ip", &["link", "set", &host_if, "up"]);
        let (inside, first) = (ns_if.clone(), ip(2));
        worker.run(move || {
            run_ok("ip", &["link", "set", "lo", "up"]);
            run_ok("ip", &["addr", "add", &format!("{first}/26"), "dev", &inside]);
            run_ok("ip", &["link", "set", &inside, "up"]);
        });
        StubNet { worker, ns_if, subnet, last, next: AtomicU8::new(2) }
    }

    /// The namespace's network, e.g. `100.64.3.0/26`.
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.{}/26", self.subnet[0], self.subnet[1], self.subnet[2], self.last)
    }

    /// This host's end of the veth pair: reachable from inside the namespace, and from this host.
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], self.last + 1)
    }

    /// Spawns `command` inside the namespace. The child gets `PR_SET_PDEATHSIG` (SIGKILL) tied to the namespace's
    /// thread, which lives as long as the test process, so it never outlives the test run.
    pub fn spawn(&self, mut command: Command) -> std::io::Result<Child> {
        self.worker.run(move || {
            die_with_spawning_thread(&mut command);
            command.spawn()
        })
    }

    /// A fresh stub address (a pod IP, as it were), added to the namespace's interface.
    pub fn new_address(&self) -> Ipv4Addr {
        let host = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(host < 63, "out of stub addresses");
        let ip = Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], self.last + host);
        if host > 2 {
            let ns_if = self.ns_if.clone();
            self.worker.run(move || run_ok("ip", &["addr", "add", &format!("{ip}/26"), "dev", &ns_if]));
        }
        ip
    }

    /// A listener on `ip:port` inside the namespace, for a server of the test's own.
    pub fn bind(&self, ip: Ipv4Addr, port: u16) -> std::io::Result<TcpListener> {
        self.worker.run(move || TcpListener::bind((ip, port)))
    }

    /// Serves `handler` on `ip:port` inside the namespace. Every answer carries `X-Stub-Component`, `X-Stub-Path`
    /// (the path the backend saw) and `X-Stub-Forwarded-Prefix` (what StripPrefix reported).
    pub fn serve(&self, ip: Ipv4Addr, port: u16, component: &str, handler: Handler) {
        let component = component.to_string();
        let listener = self.bind(ip, port).unwrap_or_else(|e| panic!("binding a stub on {ip}:{port}: {e}"));
        serve_each(listener, "stub backend", move |stream| {
            answer(stream, &component, &*handler);
            Ok(())
        });
    }
}

fn answer(mut stream: TcpStream, component: &str, handler: &(dyn Fn(&StubRequest) -> StubResponse + Send + Sync)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("cloning the stub stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let request = StubRequest { method, path, headers };
    let response = handler(&request);
    let reason = match response.status {
        200 => "OK",
        301 => "Moved Permanently",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Stub",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         X-Stub-Component: {component}\r\nX-Stub-Path: {}\r\nX-Stub-Forwarded-Prefix: {}\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        request.path,
        request.header("X-Forwarded-Prefix").unwrap_or_default(),
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(response.body.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

// ---- Traefik ----

/// Ports and files of a running Traefik.
pub struct Traefik {
    pub web: u16,
    pub websecure: u16,
    pub ping: u16,
    pub dir: PathBuf,
    /// The CA that signed Traefik's default certificate (valid for 127.0.0.1 and 192.0.2.10).
    pub ca_file: PathBuf,
    pub startup: Duration,
    /// e.g. `3.6.12`
    pub version: String,
    child: Mutex<Child>,
    log: PathBuf,
}

/// Which Traefik: `$DIFY_GITOPS_TRAEFIK` when set (e.g. a v2.11 build, as NKP 2.12–2.13 ship), else `traefik` on
/// PATH; panics with the install command when there is none.
pub fn traefik_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("DIFY_GITOPS_TRAEFIK") {
        let binary = PathBuf::from(binary);
        assert!(binary.is_file(), "DIFY_GITOPS_TRAEFIK={} is not a file", binary.display());
        return binary;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("traefik")).find(|c| c.is_file()).unwrap_or_else(|| {
        panic!(
            "`traefik` is not on PATH: the routing tests run a real Traefik v3 (NKP's v3.6.12). Build it with: \
             {INSTALL_HINT}"
        )
    })
}

/// `traefik version`'s version, e.g. `3.6.12`.
pub fn traefik_version(binary: &Path) -> String {
    let output = Command::new(binary).arg("version").output().unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().trim_start_matches('v').to_string())
        .unwrap_or_else(|| panic!("no version in `{} version`: {text}", binary.display()))
}

/// The CRDs Traefik's CRD provider lists besides traefik.io Middleware (which the NKP fixture serves): it waits
/// for every informer to sync, so each kind must be served (Traefik 2.11 also lists the old traefik.containo.us
/// group). Open schemas: the tests create none of these objects.
pub fn traefik_crds(major: u32) -> String {
    let kinds = [
        ("IngressRoute", "ingressroutes"),
        ("IngressRouteTCP", "ingressroutetcps"),
        ("IngressRouteUDP", "ingressrouteudps"),
        ("MiddlewareTCP", "middlewaretcps"),
        ("TLSOption", "tlsoptions"),
        ("TLSStore", "tlsstores"),
        ("ServersTransport", "serverstransports"),
        ("ServersTransportTCP", "serverstransporttcps"),
        ("TraefikService", "traefikservices"),
    ];
    let mut crds: Vec<(&str, &str, &str)> = kinds.iter().map(|(k, p)| ("traefik.io", *k, *p)).collect();
    if major == 2 {
        crds.extend(kinds.iter().map(|(k, p)| ("traefik.containo.us", *k, *p)));
        crds.push(("traefik.containo.us", "Middleware", "middlewares"));
    }
    crds.iter()
        .map(|(group, kind, plural)| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                 metadata: {{name: {plural}.{group}}}\n\
                 spec:\n  group: {group}\n  scope: Namespaced\n\
                 \x20 names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}}}\n\
                 \x20 versions:\n  - name: v1alpha1\n    served: true\n    storage: true\n\
                 \x20   schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
                singular = kind.to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `token:` and `certificate-authority:` of the testbed's kubeconfig (it writes one user and one cluster).
fn kubeconfig_field(kubeconfig: &str, field: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("the testbed kubeconfig has no {field}"))
}

impl Traefik {
    /// Starts Traefik against `testbed` and waits until it answers its ping.
    pub fn start(testbed: &Testbed) -> Traefik {
        Traefik::start_with(testbed, None)
    }

    /// Starts Traefik with its `web` and `websecure` entrypoints on `address` ports 80 and 443, as a load balancer
    /// address serves them (so a browser can open `https://<address>/dify`); its certificate also names `address`.
    pub fn start_on(testbed: &Testbed, address: Ipv4Addr) -> Traefik {
        Traefik::start_with(testbed, Some(address))
    }

    fn start_with(testbed: &Testbed, address: Option<Ipv4Addr>) -> Traefik {
        let binary = traefik_binary();
        let version = traefik_version(&binary);
        let started = Instant::now();
        let dir = testbed.dir.join("traefik");
        std::fs::create_dir_all(&dir).expect("creating the Traefik directory");
        let kubeconfig = std::fs::read_to_string(&testbed.kubeconfig).expect("reading the testbed kubeconfig");
        let (token, ca) =
            (kubeconfig_field(&kubeconfig, "token"), kubeconfig_field(&kubeconfig, "certificate-authority"));

        let ca_file = dir.join("ca.crt");
        let address_name = address.map(|a| a.to_string());
        let mut names = vec!["127.0.0.1", "192.0.2.10", "localhost"];
        names.extend(address_name.as_deref());
        let serving = serving_certificate(&ca_file, "test kommander-ca", "kommander-traefik", &names);
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, serving.cert_pem).unwrap();
        std::fs::write(&key_file, serving.key_pem).unwrap();
        let dynamic = dir.join("dynamic.yaml");
        std::fs::write(
            &dynamic,
            format!(
                "tls:\n  stores:\n    default:\n      defaultCertificate:\n        certFile: {}\n        keyFile: {}\n",
                cert_file.display(),
                key_file.display()
            ),
        )
        .unwrap();

        let (web, websecure, ping) = match address {
            Some(_) => (80, 443, free_port()),
            None => (free_port(), free_port(), free_port()),
        };
        let listen = address.map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        let kube = format!("    endpoint: {}\n    token: {token}\n    certAuthFilePath: {ca}\n", testbed.server);
        let config = format!(
            "global: {{checkNewVersion: false, sendAnonymousUsage: false}}\n\
             entryPoints:\n\
             \x20 web:\n    address: {listen}:{web}\n\
             \x20   http: {{redirections: {{entryPoint: {{to: websecure, scheme: https, permanent: true}}}}}}\n\
             \x20 websecure:\n    address: {listen}:{websecure}\n    http: {{tls: {{}}}}\n\
             \x20 ping:\n    address: 127.0.0.1:{ping}\n\
             ping: {{entryPoint: ping}}\n\
             log: {{level: DEBUG{no_color}}}\n\
             providers:\n\
             \x20 kubernetesIngress:\n{kube}    ingressClass: kommander-traefik\n    throttleDuration: 0s\n\
             \x20 kubernetesCRD:\n{kube}    throttleDuration: 0s\n\
             \x20 file:\n    filename: {}\n",
            dynamic.display(),
            no_color = if version.starts_with("2.") { "" } else { ", noColor: true" },
        );
        let config_file = dir.join("traefik.yaml");
        std::fs::write(&config_file, config).unwrap();

        let log = dir.join("traefik.log");
        let (binary_c, config_c, log_c) = (binary.clone(), config_file.clone(), log.clone());
        let child = process_worker().run(move || {
            let out = std::fs::File::create(&log_c).expect("creating the Traefik log");
            let err = out.try_clone().unwrap();
            let mut command = Command::new(&binary_c);
            command.arg(format!("--configFile={}", config_c.display())).stdin(Stdio::null()).stdout(out).stderr(err);
            die_with_spawning_thread(&mut command);
            command.spawn()
        });
        let child = child.unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut traefik = Traefik {
            web,
            websecure,
            ping,
            dir,
            ca_file,
            startup: Duration::ZERO,
            version,
            child: Mutex::new(child),
            log,
        };
        traefik.wait_until(Duration::from_secs(30), "answered its ping", || {
            http_get(ping, "/ping").is_some_and(|r| r.split_whitespace().nth(1) == Some("200"))
        });
        traefik.startup = started.elapsed();
        traefik
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The last lines of Traefik's log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `ready` until it holds; panics with Traefik's log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!("Traefik exited ({status}); its log:\n{}", self.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "Traefik never {what} within {timeout:?}; its log:\n{}",
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback, returning the whole answer (status line, headers, body).
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}
