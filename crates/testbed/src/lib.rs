//! A real, throw-away Kubernetes control plane on loopback: etcd + kube-apiserver from the pinned test tools,
//! generated certificates, an admin token, a kubeconfig, and optionally a fixture applied to it.
//!
//! No controller runs (no controller-manager, no scheduler, no kubelet): objects are stored and admitted for
//! real, but nothing reconciles them. A LoadBalancer Service gets an address only when a test patches its
//! status, which is exactly what the discover tests need.
//!
//! Architecture invariant: nothing the testbed starts outlives it. Children die with it (see
//! [`process::Child`]), and its directory is removed when [`LocalCluster`] is dropped.

pub mod certs;
mod fixture;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use fixture::apply_manifests;
pub use process::free_port;
use process::{Child, find_tool};

/// The user the admin token authenticates as (group `system:masters`).
pub const ADMIN_USER: &str = "testbed-admin";

const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct LocalCluster {
    // Field order is drop order: the API server stops before etcd, the directory goes last.
    apiserver: Child,
    etcd: Child,
    kubeconfig: PathBuf,
    server: String,
    startup: Duration,
    dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts etcd and kube-apiserver (found on PATH) and waits until `/readyz` answers.
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        sweep_stale_directories();
        let etcd_bin = find_tool("etcd")?;
        let apiserver_bin = find_tool("kube-apiserver")?;
        let dir = tempfile::Builder::new()
            .prefix("dify-gitops-testbed-")
            .tempdir()
            .context("creating the testbed directory")?;
        let path = |name: &str| dir.path().join(name);

        std::fs::write(path("owner.pid"), std::process::id().to_string()).context("writing owner.pid")?;
        let pki = certs::Pki::generate()?;
        let token = random_token()?;
        write_private(&path("ca.crt"), &pki.ca_pem)?;
        write_private(&path("apiserver.crt"), &pki.serving_cert_pem)?;
        write_private(&path("apiserver.key"), &pki.serving_key_pem)?;
        write_private(&path("service-account.key"), &pki.service_account_key_pem)?;
        write_private(&path("service-account.pub"), &pki.service_account_public_pem)?;
        write_private(&path("tokens.csv"), &format!("{token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"))?;

        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name=testbed".into(),
            format!("--data-dir={}", path("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testbed={peer_url}"),
            // Test data is thrown away: skipping fsync makes every write several times faster.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        let mut etcd = Child::spawn("etcd", &etcd_bin, &etcd_args, path("etcd.log"))?;

        let port = free_port()?;
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path("certs").display()),
            format!("--tls-cert-file={}", path("apiserver.crt").display()),
            format!("--tls-private-key-file={}", path("apiserver.key").display()),
            format!("--client-ca-file={}", path("ca.crt").display()),
            format!("--token-auth-file={}", path("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            // As on NKP: privileged pods are allowed by the API server, and refused by Pod Security admission.
            "--allow-privileged=true".into(),
            // The defaults plus the ones this project relies on, named so a reader sees PodSecurity is on.
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,\
             DefaultStorageClass,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
                .into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path("service-account.pub").display()),
            format!("--service-account-signing-key-file={}", path("service-account.key").display()),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // No kubelet runs, so there are no endpoints to reconcile for the `kubernetes` Service.
            "--endpoint-reconciler-type=none".into(),
        ];
        let mut apiserver =
            Child::spawn("kube-apiserver", &apiserver_bin, &apiserver_args, path("kube-apiserver.log"))?;

        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = path("kubeconfig");
        write_private(&kubeconfig, &kubeconfig_yaml(&server, &path("ca.crt"), &token))?;

        let client = client_for(&kubeconfig).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            etcd.ensure_running()?;
            apiserver.ensure_running()?;
            let request = http::Request::get("/readyz").body(Vec::new()).context("building /readyz request")?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => break,
                _ if Instant::now() > deadline => bail!(
                    "kube-apiserver did not become ready within {READY_TIMEOUT:?}; last lines of its log:\n{}",
                    apiserver.log_tail()
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(Self { apiserver, etcd, kubeconfig, server, startup: started.elapsed(), dir })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Wall time from `start` being called to `/readyz` answering `ok`.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    pub fn pids(&self) -> [u32; 2] {
        [self.etcd.pid(), self.apiserver.pid()]
    }

    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }
}

/// Removes directories of testbeds whose process is gone: only a SIGKILL of the testbed itself skips its own
/// cleanup, and the next start mends that.
fn sweep_stale_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let is_testbed = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dify-gitops-testbed-"));
        let owner = std::fs::read_to_string(dir.join("owner.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
        // SAFETY: signal 0 only checks that the process exists.
        if let (true, Some(pid)) = (is_testbed, owner)
            && unsafe { libc::kill(pid, 0) } != 0
        {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// A kube client for a kubeconfig file, ignoring the environment.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let config = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("building a kube client")
}

fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: {ADMIN_USER}\n  user:\n    token: {token}\ncontexts:\n\
         - name: testbed\n  context:\n    cluster: testbed\n    user: {ADMIN_USER}\ncurrent-context: testbed\n",
        ca = ca.display()
    )
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
