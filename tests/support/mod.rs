//! Test support: the local control plane (a `dify-gitops-testbed` process) and helpers to shape its state.
//!
//! `Testbed::shared()` is one cluster per test binary, loaded with the NKP fixture; tests that share it use
//! their own namespaces and never change cluster-scoped fixture objects. A test that must break the fixture
//! (delete the IngressClass, say) starts its own with `Testbed::start()`, torn down on drop.
//! The testbed watches this test process, so even a panicking or killed test run leaves nothing behind.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cli;
pub mod ops;

pub mod flux;
pub mod git_server;
pub mod net;
pub mod proxy;
pub mod sshd;
pub mod tls;
pub mod traefik;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub use cli::CliOutput;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

pub struct Testbed {
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    pub server: String,
    pub startup_seconds: f64,
    pub children: Vec<u32>,
    process: Child,
}

pub fn nkp_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nkp")
}

impl Testbed {
    /// One NKP-fixture cluster for the whole test binary.
    pub fn shared() -> &'static Testbed {
        static SHARED: OnceLock<Testbed> = OnceLock::new();
        SHARED.get_or_init(|| Testbed::start(&[nkp_fixture()]))
    }

    /// A cluster of this test's own, with the given fixtures applied; stopped when dropped.
    pub fn start(fixtures: &[PathBuf]) -> Testbed {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dify-gitops-testbed"));
        command.arg("--watch-pid").arg(std::process::id().to_string());
        for fixture in fixtures {
            command.arg("--fixture").arg(fixture);
        }
        let mut process =
            command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("starting dify-gitops-testbed");
        let mut line = String::new();
        BufReader::new(process.stdout.take().expect("testbed stdout"))
            .read_line(&mut line)
            .expect("reading the testbed's ready line");
        assert!(
            !line.is_empty(),
            "dify-gitops-testbed exited before it was ready (its stderr is above); are the tools on PATH? \
             scripts/test-tools install && export PATH=\"$(scripts/test-tools path):$PATH\""
        );
        let ready: serde_json::Value = serde_json::from_str(&line).expect("testbed ready line is JSON");
        let text = |key: &str| ready[key].as_str().expect("ready line field").to_string();
        Testbed {
            kubeconfig: PathBuf::from(text("kubeconfig")),
            dir: PathBuf::from(text("dir")),
            server: text("server"),
            startup_seconds: ready["startup_seconds"].as_f64().unwrap_or_default(),
            children: serde_json::from_value(ready["children"].clone()).unwrap_or_default(),
            process,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub async fn client(&self) -> kube::Client {
        dify_gitops_testbed::client_for(&self.kubeconfig).await.expect("kube client for the testbed")
    }

    /// `kubectl --kubeconfig <testbed> args…`, returning stdout; panics with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl (is it on PATH?)");
        assert!(output.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("kubectl output is UTF-8")
    }

    /// Runs the `dify-gitops` binary against this cluster.
    pub fn dify_gitops(&self, args: &[&str]) -> CliOutput {
        self.dify_gitops_with(&self.kubeconfig, args)
    }

    /// Runs the `dify-gitops` binary with another kubeconfig (an impersonating one, say).
    pub fn dify_gitops_with(&self, kubeconfig: &Path, args: &[&str]) -> CliOutput {
        cli::run(
            cli::command()
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                // The clone cache of `sync` stays inside the testbed's directory, removed with it.
                .env("XDG_CACHE_HOME", self.dir.join("cache")),
        )
    }

    /// A kubeconfig for the same cluster that acts as `user` (impersonation by the admin).
    pub fn impersonating_kubeconfig(&self, user: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("reading the testbed kubeconfig");
        let path = self.dir.join(format!("kubeconfig-as-{user}"));
        let with_as = admin.replacen("    token:", &format!("    as: {user}\n    token:"), 1);
        std::fs::write(&path, with_as).expect("writing the impersonating kubeconfig");
        path
    }

    /// Stops the testbed and waits for it, as a test runner's exit would.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
        let _ = self.process.wait();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Applies a YAML manifest (one or more documents) with the testbed's own server-side apply.
pub async fn apply_yaml(client: &kube::Client, yaml: &str) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("writing manifest");
    dify_gitops_testbed::apply_manifests(client, file.path()).await.expect("applying manifest");
}

/// A LoadBalancer Service named `name` (Kommander's Traefik, as a test stands it in) in a fresh namespace of the
/// shared cluster, named from `prefix`; returns the namespace. Its address comes with [`set_load_balancer_ip`].
pub async fn load_balancer(client: &kube::Client, prefix: &str, name: &str) -> String {
    let namespace = unique_namespace(prefix);
    apply_yaml(
        client,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\napiVersion: v1\nkind: Service\n\
             metadata: {{name: {name}, namespace: {namespace}}}\nspec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n"
        ),
    )
    .await;
    namespace
}

/// A fresh namespace name for one test on the shared cluster.
pub fn unique_namespace(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sets `status.loadBalancer.ingress[0]` of a Service, as a load-balancer controller (MetalLB on NKP) would.
pub async fn set_load_balancer_ip(client: &kube::Client, namespace: &str, name: &str, ip: &str) {
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), namespace);
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    services
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patching the Service load-balancer status");
}

/// True while a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// A HelmRelease CRD that serves the given versions (the first one stored).
pub fn helmrelease_crd(versions: &[&str]) -> String {
    let versions: String = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "  - name: {v}\n    served: true\n    storage: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
                 x-kubernetes-preserve-unknown-fields: true\n",
                i == 0
            )
        })
        .collect();
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: helmreleases.helm.toolkit.fluxcd.io}}\n\
         spec:\n  group: helm.toolkit.fluxcd.io\n  names: {{kind: HelmRelease, plural: helmreleases, singular: helmrelease, listKind: HelmReleaseList}}\n  \
         scope: Namespaced\n  versions:\n{versions}"
    )
}
