//! The ops-repo templates of `gitops/` on real Flux: source-, kustomize- and helm-controller (built from their Go
//! modules: `scripts/test-tools install flux`) run as local processes against the local kube-apiserver, and a local
//! git smart-HTTP server serves the ops repo and this repository's chart.
//!
//! Scenario: the ops repo holds `dify-gitops.yaml`, `clusters/test/dify.yaml` and the overlay in `apps/test/dify/`
//! (templates filled as `dify-gitops init` will); `dify-gitops sync` discovers the Traefik LB IP and commits the
//! values ConfigMap and the SOPS/age-encrypted Secret. The cluster holds what `flux bootstrap` leaves (GitRepository +
//! Kustomization `flux-system` over `clusters/test/`, without decryption) and the `sops-age` Secret with a freshly
//! generated age identity (never in git). Flux must then decrypt the overlay in the `dify` Kustomization, install the
//! chart from git, and put the LB IP into the Deployments' URL env and the overlay's SECRET_KEY into the api's
//! Secret. The operator adds `openai-api-key` with `dify-gitops secret set`; a new LB IP → `sync` commits (the key
//! kept) → Flux upgrades the release → the new IP is in the env and the key in the release's values. And an upgrade
//! to a new Dify version whose migration Job fails ends failed on the new version: no rollback, no retry.
//!
//! The controllers missing is a FAILURE naming the install command, never a skip.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::flux::{self, Flux, GitHttpServer, fill, git, wait_for};
use support::{Testbed, nkp_fixture};

const ENV: &str = "test";
const NAMESPACE: &str = "dify";
const OVERLAY_DIR: &str = "apps/test/dify";
const TRAEFIK: (&str, &str) = ("kon-workspace-test", "kommander-traefik");
/// The keys of the overlay Secret: the contract between `dify-gitops sync`, the chart and the HelmRelease.
use dify_gitops::overlay::SECRET_NAMES as SECRET_KEYS;

fn gitops() -> PathBuf {
    flux::repo_root().join("gitops")
}

/// `kubectl` that returns None instead of panicking (objects that do not exist yet).
fn kubectl_try(testbed: &Testbed, args: &[&str]) -> Option<String> {
    let output = Command::new("kubectl").arg("--kubeconfig").arg(&testbed.kubeconfig).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).to_string())
}

fn kubectl_stdin(testbed: &Testbed, args: &[&str], input: &str) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&testbed.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

// ---- the ops repo ----------------------------------------------------------------------------------------------

/// The operator's side: a work tree of the ops repo, its bare remote (served over HTTP), and the age identity.
struct OpsRepo {
    work: PathBuf,
    overlay_dir: String,
    writer: Writer,
    remote: PathBuf,
    identity: PathBuf,
    recipient: String,
}

impl OpsRepo {
    fn overlay(&self) -> PathBuf {
        self.work.join(&self.overlay_dir)
    }

    /// The overlay Secret as `sops -d` reads it (which also verifies the MAC): key → plaintext.
    fn decrypted_secrets(&self) -> BTreeMap<String, String> {
        let output = Command::new("sops")
            .args(["-d", "--input-type", "yaml", "--output-type", "json"])
            .arg(self.overlay().join("dify-secrets.sops.yaml"))
            .env("SOPS_AGE_KEY_FILE", &self.identity)
            .output()
            .expect("running sops (is it on PATH? scripts/test-tools path)");
        assert!(output.status.success(), "sops -d failed: {}", String::from_utf8_lossy(&output.stderr));
        let secret: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        serde_json::from_value(secret["stringData"].clone()).expect("stringData of the overlay Secret")
    }

    fn commit_and_push(&self, message: &str) {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
    }
}

/// Where the overlay goes, which HelmRelease API version `init` chose, and what writes the overlay.
#[derive(Clone, Copy)]
struct Layout<'a> {
    overlay_dir: &'a str,
    helmrelease_api: &'a str,
    writer: Writer,
}

/// What produces the overlay: the real `dify-gitops sync`, or the same contract by hand with the `sops` CLI (an
/// independent check that a Secret encrypted by the reference implementation works with Flux the same way).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    DifyGitops,
    SopsCli,
}

const DEFAULT_LAYOUT: Layout = Layout { overlay_dir: OVERLAY_DIR, helmrelease_api: "v2", writer: Writer::DifyGitops };

/// What `dify-gitops init` will write: the templates of gitops/ with the placeholders filled.
fn init_ops_repo(
    work: &Path,
    layout: Layout,
    remote: &Path,
    chart_url: &str,
    identity: PathBuf,
    recipient: String,
) -> OpsRepo {
    let values = [
        ("DIFY_ENV", ENV),
        ("DIFY_NAMESPACE", NAMESPACE),
        ("OVERLAY_DIR", layout.overlay_dir),
        ("CHART_GIT_URL", chart_url),
        ("CHART_GIT_BRANCH", "main"),
    ];
    let copy = |template: &str, target: &str| {
        let text = std::fs::read_to_string(gitops().join(template)).unwrap();
        let path = work.join(target);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fill(&text, &values)).unwrap();
    };
    copy("clusters/ENV/dify.yaml", &format!("clusters/{ENV}/dify.yaml"));
    let overlay_dir = layout.overlay_dir;
    for file in ["kustomization.yaml", "namespace.yaml", "chart-source.yaml"] {
        copy(&format!("apps/ENV/dify/{file}"), &format!("{overlay_dir}/{file}"));
    }
    // `init` writes the variant the cluster serves as helmrelease.yaml.
    let helmrelease = match layout.helmrelease_api {
        "v2" => "apps/ENV/dify/helmrelease.yaml",
        "v2beta2" => "variants/helmrelease.v2beta2.yaml",
        other => panic!("no HelmRelease template for {other}"),
    };
    copy(helmrelease, &format!("{overlay_dir}/helmrelease.yaml"));
    // The only test-only change: no readiness wait and no hooks, because no pod ever runs here.
    let patch =
        std::fs::read_to_string(flux::repo_root().join("tests/fixtures/flux/helmrelease-no-wait.yaml")).unwrap();
    let patch =
        patch.replace("helm.toolkit.fluxcd.io/v2\n", &format!("helm.toolkit.fluxcd.io/{}\n", layout.helmrelease_api));
    std::fs::write(work.join(overlay_dir).join("helmrelease-no-wait.yaml"), patch).unwrap();
    let kustomization = work.join(overlay_dir).join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    std::fs::write(&kustomization, format!("{text}patches:\n  - path: helmrelease-no-wait.yaml\n")).unwrap();

    // The dify-gitops config of the environment (what `init` writes; `sync` reads it).
    let config = format!(
        "environments:\n  {ENV}:\n    namespace: {NAMESPACE}\n    traefik: {{service: {}, namespace: {}}}\n\
         \x20   ingressClass: kommander-traefik\n    path: /dify\n    scheme: https\n    storageClass: nutanix-volume\n\
         \x20   imageRepository: langgenius/dify\n    imageTag: 1.13.3\n    recipients: [\"{recipient}\"]\n\
         \x20   directory: {overlay_dir}\n",
        TRAEFIK.1, TRAEFIK.0
    );
    std::fs::write(work.join("dify-gitops.yaml"), config).unwrap();

    git(work, &["init", "-q", "-b", "main"]);
    git(work, &["remote", "add", "origin", remote.to_str().unwrap()]);
    std::fs::create_dir_all(remote).unwrap();
    git(remote, &["init", "-q", "--bare", "-b", "main"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "dify-gitops init"]);
    git(work, &["push", "-q", "origin", "main"]);
    OpsRepo {
        work: work.to_path_buf(),
        overlay_dir: overlay_dir.to_string(),
        writer: layout.writer,
        remote: remote.to_path_buf(),
        identity,
        recipient,
    }
}

/// THE OVERLAY STEP: discover the Traefik LB IP on the cluster, render the values ConfigMap and the Secret (secrets
/// generated once, carried over from the existing overlay with the operator's identity), encrypt for the age
/// recipient, commit, push to the ops remote; the operator's work tree then follows the remote.
fn sync(testbed: &Testbed, ops: &OpsRepo) {
    match ops.writer {
        Writer::DifyGitops => {
            let remote = ops.remote.to_str().unwrap();
            let identity = ops.identity.to_str().unwrap();
            let output = testbed.dify_gitops(&["sync", "--repo", remote, "--env", ENV, "--identity", identity]);
            // 0: nothing changed, 6: committed and pushed.
            assert!(output.code == 0 || output.code == 6, "dify-gitops sync: {output:?}");
            git(&ops.work, &["pull", "-q", "--ff-only", "origin", "main"]);
        }
        Writer::SopsCli => sync_with_sops_cli(testbed, ops),
    }
}

/// The overlay contract by hand: the real `sops -e` encrypts the Secret (plaintext only through a pipe).
fn sync_with_sops_cli(testbed: &Testbed, ops: &OpsRepo) {
    let ip = testbed.kubectl(&[
        "-n",
        TRAEFIK.0,
        "get",
        "service",
        TRAEFIK.1,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]);
    assert!(!ip.is_empty(), "Traefik has no LB address");
    let existing = ops.overlay().join("dify-secrets.sops.yaml");
    let secrets: BTreeMap<String, String> = if existing.exists() {
        ops.decrypted_secrets()
    } else {
        let mut secrets: BTreeMap<String, String> =
            SECRET_KEYS.iter().map(|k| (k.to_string(), random_hex(32))).collect();
        // The optional key too, so that its (optional) valuesFrom entry is exercised with a value.
        secrets.insert("openai-api-key".into(), format!("sk-test-{}", random_hex(16)));
        secrets
    };

    let labels = "  labels:\n    reconcile.fluxcd.io/watch: Enabled\n    app.kubernetes.io/managed-by: dify-gitops\n";
    let values = format!(
        "expose:\n  ingressClassName: kommander-traefik\n  path: /dify\nexternal:\n  scheme: https\n  host: {ip}\n\
         images:\n  dify:\n    repository: langgenius/dify\n    tag: 1.13.3\n\
         storage:\n  storageClassName: nutanix-volume\nsecrets:\n  existingSecret: dify-secrets\n"
    );
    let indented: String = values.lines().map(|l| format!("    {l}\n")).collect();
    let config_map = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dify-values\n  namespace: {NAMESPACE}\n{labels}\
         data:\n  values.yaml: |\n{indented}"
    );
    std::fs::create_dir_all(ops.overlay()).unwrap();
    std::fs::write(ops.overlay().join("dify-values.yaml"), config_map).unwrap();

    let string_data: String = secrets.iter().map(|(k, v)| format!("  {k}: \"{v}\"\n")).collect();
    let plain = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dify-secrets\n  namespace: {NAMESPACE}\n{labels}\
         type: Opaque\nstringData:\n{string_data}"
    );
    let mut child = Command::new("sops")
        .args(["-e", "--encrypted-regex", "^(data|stringData)$", "--age", &ops.recipient])
        .args(["--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"])
        .current_dir(ops.overlay())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sops");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(plain.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "sops -e failed: {}", String::from_utf8_lossy(&output.stderr));
    // Plaintext never reaches disk: sops read it from the pipe; only ciphertext is written.
    std::fs::write(existing, output.stdout).unwrap();

    if !git(&ops.work, &["status", "--porcelain"]).is_empty() {
        ops.commit_and_push(&format!("dify/{ENV}: external.host {ip}"));
    }
}

/// `dify-gitops secret set NAME` with the value on stdin, as an operator adds a key of their own; the operator's
/// work tree then follows the remote.
fn secret_set(testbed: &Testbed, ops: &OpsRepo, name: &str, value: &str) {
    use std::io::Write;
    let mut child = support::cli::command()
        .args(["secret", "set", name, "--env", ENV, "--repo"])
        .arg(&ops.remote)
        .arg("--identity")
        .arg(&ops.identity)
        .env("XDG_CACHE_HOME", testbed.dir.join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running dify-gitops");
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(6), "dify-gitops secret set {name}: {printed}");
    assert!(!printed.contains(value), "secret set printed the value");
    git(&ops.work, &["pull", "-q", "--ff-only", "origin", "main"]);
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh age identity (file outside the ops repo, never committed) and its recipient.
fn age_keygen(dir: &Path) -> (PathBuf, String) {
    let identity = dir.join("age.agekey");
    let output = Command::new("age-keygen").arg("-o").arg(&identity).output().expect("running age-keygen");
    assert!(output.status.success(), "age-keygen: {}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&identity).unwrap();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("public key line").to_string();
    (identity, recipient)
}

/// This repository's chart, as committed, in a bare git repo of its own (what github.com/…/dify-gitops serves).
fn chart_repo(work: &Path, remote: &Path) {
    std::fs::create_dir_all(work).unwrap();
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(flux::repo_root())
        .args(["archive", "--format=tar", "HEAD", "chart/"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar").arg("-x").arg("-C").arg(work).stdin(archive.stdout.take().unwrap()).status();
    assert!(archive.wait().unwrap().success() && tar.unwrap().success(), "extracting chart/ from git archive");
    git(work, &["init", "-q", "-b", "main"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "chart"]);
    std::fs::create_dir_all(remote).unwrap();
    git(remote, &["init", "-q", "--bare", "-b", "main"]);
    git(work, &["push", "-q", remote.to_str().unwrap(), "main"]);
}

// ---- cluster observations ----------------------------------------------------------------------------------------

fn ready(testbed: &Testbed, kind: &str, namespace: &str, name: &str) -> Option<()> {
    let status = kubectl_try(
        testbed,
        &["-n", namespace, "get", kind, name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
    )?;
    (status == "True").then_some(())
}

/// Flux objects' status and the controllers' logs, for a failure message (no Secret is printed).
fn diagnostics(testbed: &Testbed, flux: &Flux) -> String {
    let objects = kubectl_try(
        testbed,
        &[
            "get",
            "gitrepositories,helmcharts,kustomizations,helmreleases",
            "-A",
            "-o",
            "custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name,\
             READY:.status.conditions[?(@.type==\"Ready\")].status,\
             MESSAGE:.status.conditions[?(@.type==\"Ready\")].message",
        ],
    )
    .unwrap_or_default();
    format!("{objects}\n{}", flux.logs(40))
}

/// The env of a Deployment's first container: name → (value or "secretKeyRef:<secret>/<key>").
fn deployment_env(testbed: &Testbed, name: &str) -> BTreeMap<String, String> {
    let json = testbed.kubectl(&["-n", NAMESPACE, "get", "deployment", name, "-o", "json"]);
    let deployment: serde_json::Value = serde_json::from_str(&json).unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default();
    env.iter()
        .map(|e| {
            let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (serde_json::Value::String(v), _) => v.clone(),
                (_, serde_json::Value::Object(r)) => {
                    format!("secretKeyRef:{}/{}", r["name"].as_str().unwrap(), r["key"].as_str().unwrap())
                }
                _ => String::new(),
            };
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn secret_value(testbed: &Testbed, name: &str, key: &str) -> String {
    let json = testbed.kubectl(&["-n", NAMESPACE, "get", "secret", name, "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_str(&json).unwrap();
    let encoded = secret["data"][key].as_str().unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

fn request_reconcile(testbed: &Testbed, kind: &str, namespace: &str, name: &str) {
    let now = format!("{:?}", std::time::SystemTime::now());
    testbed.kubectl(&[
        "-n",
        namespace,
        "annotate",
        "--overwrite",
        kind,
        name,
        &format!("reconcile.fluxcd.io/requestedAt={}", now.replace(' ', "")),
    ]);
}

/// Every plaintext secret searched for in the ops repo's whole history and in the controllers' logs.
fn assert_no_plaintext(ops: &OpsRepo, flux: &Flux, secrets: &BTreeMap<String, String>) {
    let history = git(&ops.remote, &["log", "-p", "--all", "--format=%H %s"]);
    let logs = flux.logs(usize::MAX);
    for (key, value) in secrets {
        assert!(!history.contains(value.as_str()), "{key} in plain text in the ops repo history");
        assert!(!logs.contains(value.as_str()), "{key} in plain text in a controller log");
    }
}

// ---- tests -------------------------------------------------------------------------------------------------------

/// A cluster as `flux bootstrap` leaves it, Flux running, and an ops repo with a first overlay pushed.
struct FluxCluster {
    testbed: Testbed,
    flux: Flux,
    ops: OpsRepo,
    client: kube::Client,
    setup: Duration,
    _server: GitHttpServer,
    _work: tempfile::TempDir,
}

async fn flux_cluster(layout: Layout<'_>) -> FluxCluster {
    let started = Instant::now();
    flux::controller_binaries(); // fails here, with the install command, when they are not built
    let testbed = Testbed::start(&[nkp_fixture()]);
    let client = testbed.client().await;
    let work = tempfile::Builder::new().prefix("dify-gitops-flux-e2e.").tempdir().unwrap();

    for dir in flux::crd_dirs() {
        testbed.kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()]);
    }
    testbed.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);

    let served = work.path().join("served");
    let server = GitHttpServer::start(&served);
    chart_repo(&work.path().join("chart"), &served.join("dify-gitops.git"));
    let (identity, recipient) = age_keygen(work.path());
    let ops = init_ops_repo(
        &work.path().join("ops"),
        layout,
        &served.join("ops.git"),
        &format!("{}/dify-gitops.git", server.url),
        identity,
        recipient,
    );

    support::set_load_balancer_ip(&client, TRAEFIK.0, TRAEFIK.1, "192.0.2.10").await;
    sync(&testbed, &ops);

    // The cluster side of the bootstrap: the age identity as the sops-age Secret, then what `flux bootstrap` applies.
    testbed.kubectl(&["create", "namespace", "flux-system"]);
    testbed.kubectl(&[
        "-n",
        "flux-system",
        "create",
        "secret",
        "generic",
        "sops-age",
        &format!("--from-file=age.agekey={}", ops.identity.display()),
    ]);
    let flux = Flux::start(&testbed.kubeconfig);
    let bootstrap = std::fs::read_to_string(flux::repo_root().join("tests/fixtures/flux/bootstrap.yaml")).unwrap();
    let bootstrap = fill(&bootstrap, &[("OPS_GIT_URL", &format!("{}/ops.git", server.url)), ("DIFY_ENV", ENV)]);
    kubectl_stdin(&testbed, &["apply", "-f", "-"], &bootstrap);
    FluxCluster { testbed, flux, ops, client, setup: started.elapsed(), _server: server, _work: work }
}

#[tokio::test]
async fn flux_decrypts_the_overlay_installs_dify_and_follows_a_new_lb_ip() {
    let started = Instant::now();
    // `_server` and `_work` are bound (not `..`) so that the git server's repositories live until the end.
    let FluxCluster { testbed, mut flux, ops, client, setup, _server, _work } = flux_cluster(DEFAULT_LAYOUT).await;
    let secrets = ops.decrypted_secrets();

    let install = Instant::now();
    let timeout = Duration::from_secs(180);
    for (kind, namespace, name) in [
        ("kustomization", "flux-system", "flux-system"),
        ("kustomization", "flux-system", "dify"),
        ("helmrelease", NAMESPACE, "dify"),
    ] {
        flux.assert_running();
        wait_for(
            &format!("{kind} {namespace}/{name} Ready"),
            timeout,
            || ready(&testbed, kind, namespace, name),
            || diagnostics(&testbed, &flux),
        );
    }
    let installed = install.elapsed();

    // The bootstrap Kustomization applied clusters/test/ only: the Kustomization `dify`, not the encrypted Secret.
    let inventory = testbed.kubectl(&["-n", "flux-system", "get", "kustomization", "flux-system", "-o", "json"]);
    assert!(!inventory.contains("dify-secrets"), "flux-system must not apply the overlay: {inventory}");

    // kustomize-controller decrypted the Secret: the cluster holds the plaintext the operator encrypted.
    for key in SECRET_KEYS {
        assert_eq!(secret_value(&testbed, "dify-secrets", key), secrets[*key], "dify-secrets/{key} decrypted");
    }

    let assert_release = |ip: &str, openai: Option<&str>| {
        let url = format!("https://{ip}/dify");
        let web = deployment_env(&testbed, "dify-web");
        assert_eq!(web.get("CONSOLE_API_URL"), Some(&url), "dify-web env: {web:?}");
        let api = deployment_env(&testbed, "dify-api");
        for var in ["CONSOLE_API_URL", "CONSOLE_WEB_URL", "APP_WEB_URL", "FILES_URL"] {
            assert_eq!(api.get(var), Some(&url), "dify-api {var}");
        }
        // SECRET_KEY comes from a Secret whose value is the overlay's dify-secret-key.
        let reference = api["SECRET_KEY"].strip_prefix("secretKeyRef:").expect("SECRET_KEY from a Secret").to_string();
        let (name, key) = reference.split_once('/').unwrap();
        assert_eq!(secret_value(&testbed, name, key), secrets["dify-secret-key"], "SECRET_KEY is the overlay's");
        match openai {
            // Without openai-api-key in the overlay (optional: true) the release has none.
            None => assert!(
                !testbed.kubectl(&["-n", NAMESPACE, "get", "secret", name, "-o", "json"]).contains("openai-api-key")
            ),
            // With it, secrets.openaiApiKey reached the chart's Secret.
            Some(value) => assert_eq!(secret_value(&testbed, name, "openai-api-key"), value, "openai-api-key"),
        }
        // The internal keys come straight from the overlay Secret (secrets.existingSecret).
        assert!(api.values().any(|v| v == "secretKeyRef:dify-secrets/postgres-password"), "api env: {api:?}");
    };
    assert_release("192.0.2.10", None);

    // The operator adds the OpenAI key with `secret set` (the documented path, no sops needed) …
    let upgrade = Instant::now();
    let commits = || git(&ops.remote, &["rev-list", "--count", "main"]).trim().parse::<u32>().unwrap();
    let openai = format!("sk-test-{}", random_hex(16));
    let before = commits();
    secret_set(&testbed, &ops, "openai-api-key", &openai);
    assert_eq!(commits(), before + 1, "one commit for the key");
    let mut with_key = secrets.clone();
    with_key.insert("openai-api-key".into(), openai.clone());
    assert_eq!(ops.decrypted_secrets(), with_key, "secret set kept every generated secret");
    // … then the LB IP changes → sync commits a new overlay, the key kept → Flux upgrades → the new IP is in the
    // env and the key in the release's values.
    support::set_load_balancer_ip(&client, TRAEFIK.0, TRAEFIK.1, "192.0.2.20").await;
    let before = commits();
    sync(&testbed, &ops);
    assert_eq!(commits(), before + 1, "one commit for the new address");
    assert_eq!(ops.decrypted_secrets(), with_key, "sync carried the secrets over, the key added by hand too");
    // Nothing drifted since: a scheduled sync commits nothing (what reconcile.yml relies on).
    sync(&testbed, &ops);
    assert_eq!(commits(), before + 1, "no commit without drift");
    request_reconcile(&testbed, "gitrepository", "flux-system", "flux-system"); // `flux reconcile source git`
    wait_for(
        "the new LB IP in dify-web's CONSOLE_API_URL",
        timeout,
        || {
            let env = kubectl_try(&testbed, &["-n", NAMESPACE, "get", "deployment", "dify-web", "-o", "json"])?;
            env.contains("https://192.0.2.20/dify").then_some(())
        },
        || diagnostics(&testbed, &flux),
    );
    wait_for(
        "HelmRelease Ready after the upgrade",
        timeout,
        || ready(&testbed, "helmrelease", NAMESPACE, "dify"),
        || diagnostics(&testbed, &flux),
    );
    wait_for(
        "openai-api-key in the release's values",
        timeout,
        || {
            let api = deployment_env(&testbed, "dify-api");
            let (name, _) = api.get("SECRET_KEY")?.strip_prefix("secretKeyRef:")?.split_once('/')?;
            let json = kubectl_try(&testbed, &["-n", NAMESPACE, "get", "secret", name, "-o", "json"])?;
            json.contains("\"openai-api-key\"").then_some(())
        },
        || diagnostics(&testbed, &flux),
    );
    assert_release("192.0.2.20", Some(&openai));
    let history = testbed.kubectl(&["-n", NAMESPACE, "get", "helmrelease", "dify", "-o", "jsonpath={.status.history}"]);
    let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    // The key's commit and the address's are pushed a moment apart: Flux may see them in one fetch or in two.
    assert!(matches!(history.len(), 2 | 3), "one install and one or two upgrades: {history:?}");
    let upgraded = upgrade.elapsed();

    assert_no_plaintext(&ops, &flux, &with_key);
    eprintln!(
        "flux e2e: setup {:.1}s (testbed, CRDs, repos, controllers), install {:.1}s, upgrade {:.1}s, total {:.1}s",
        setup.as_secs_f64(),
        installed.as_secs_f64(),
        upgraded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Helm's own record of the release, as `helm history` shows it: (revision, status, description). Helm 3 reads
/// the storage helm-controller's Helm 3 wrote.
fn helm_history(testbed: &Testbed) -> Vec<(u64, String, String)> {
    let output = Command::new("helm3")
        .arg("--kubeconfig")
        .arg(&testbed.kubeconfig)
        .args(["history", "dify", "-n", NAMESPACE, "-o", "json"])
        .output()
        .expect("running helm3 (`scripts/test-tools install helm3`, on PATH through `scripts/test-tools path`)");
    assert!(output.status.success(), "helm3 history: {}", String::from_utf8_lossy(&output.stderr));
    let revisions: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    revisions
        .iter()
        .map(|r| {
            let text = |key: &str| r[key].as_str().unwrap_or_default().to_string();
            (r["revision"].as_u64().unwrap(), text("status"), text("description"))
        })
        .collect()
}

/// What a failed migration looks like to Helm: the Job's Failed condition (the Job controller would set it, with
/// FailureTarget first, once the pod's `flask db upgrade` exited non-zero `backoffLimit + 1` times).
fn fail_job(testbed: &Testbed, name: &str) {
    let now = rfc3339_now();
    let condition = |kind: &str| {
        format!(
            r#"{{"type":"{kind}","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit","lastTransitionTime":"{now}"}}"#
        )
    };
    let status = format!(
        r#"{{"status":{{"startTime":"{now}","failed":1,"conditions":[{},{}]}}}}"#,
        condition("FailureTarget"),
        condition("Failed")
    );
    testbed.kubectl(&["-n", NAMESPACE, "patch", "job", name, "--subresource=status", "--type=merge", "-p", &status]);
}

/// What a successful Job looks like to Helm: the Job controller's Complete condition (after SuccessCriteriaMet).
fn complete_job(testbed: &Testbed, name: &str) {
    let now = rfc3339_now();
    let condition = |kind: &str| format!(r#"{{"type":"{kind}","status":"True","lastTransitionTime":"{now}"}}"#);
    let status = format!(
        r#"{{"status":{{"startTime":"{now}","completionTime":"{now}","succeeded":1,"conditions":[{},{}]}}}}"#,
        condition("SuccessCriteriaMet"),
        condition("Complete")
    );
    testbed.kubectl(&["-n", NAMESPACE, "patch", "job", name, "--subresource=status", "--type=merge", "-p", &status]);
}

/// The current time in RFC 3339, whole seconds, UTC: how Kubernetes writes timestamps.
fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    now.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// Issue 18, "rollback vs migrations": an upgrade to a new Dify version whose post-upgrade migration Job fails
/// leaves the release failed on the new version. Flux does not roll back to the older code (which would then run on
/// a schema the migration may have moved forward) and does not retry (which would run the migration again): helm's
/// history and the HelmRelease's both end at the failed upgrade, and stay there after another reconcile.
#[tokio::test]
async fn a_failed_migration_leaves_the_release_failed_and_not_rolled_back() {
    let FluxCluster { testbed, flux, ops, _server, _work, .. } = flux_cluster(DEFAULT_LAYOUT).await;
    let timeout = Duration::from_secs(180);
    wait_for(
        "HelmRelease Ready after the install",
        timeout,
        || ready(&testbed, "helmrelease", NAMESPACE, "dify"),
        || diagnostics(&testbed, &flux),
    );
    let jsonpath = |kind: &str, name: &str, path: &str| {
        kubectl_try(&testbed, &["-n", NAMESPACE, "get", kind, name, "-o", &format!("jsonpath={path}")])
    };
    let api_image = || jsonpath("deployment", "dify-api", "{.spec.template.spec.containers[0].image}").unwrap();
    let helmrelease = |path: &str| jsonpath("helmrelease", "dify", path).unwrap();
    assert!(api_image().ends_with(":1.13.3"), "dify-api runs {}", api_image());

    // Hooks back on for upgrades, so that the migration Job runs as on a real cluster. In a commit of its own,
    // applied before the version changes: kustomize-controller applies the values ConfigMap before the HelmRelease,
    // and helm-controller, which watches the ConfigMap, would upgrade with the HelmRelease it had (hooks off). This
    // commit alone upgrades nothing: helm-controller upgrades on a new chart or new values.
    let patch_file = ops.overlay().join("helmrelease-no-wait.yaml");
    let patch = std::fs::read_to_string(&patch_file).unwrap();
    let with_hooks = patch
        .replace("  upgrade:\n    disableWait: true\n    disableHooks: true\n", "  upgrade:\n    disableWait: true\n");
    assert_ne!(patch, with_hooks, "the test patch disables the upgrade's hooks");
    std::fs::write(&patch_file, with_hooks).unwrap();
    ops.commit_and_push("dify: the migration hook runs on upgrades");
    request_reconcile(&testbed, "gitrepository", "flux-system", "flux-system");
    wait_for(
        "the HelmRelease with the upgrade's hooks on",
        timeout,
        || (helmrelease("{.spec.upgrade.disableWait}/{.spec.upgrade.disableHooks}") == "true/").then_some(()),
        || diagnostics(&testbed, &flux),
    );
    // The operator moves to the next Dify version.
    let config_file = ops.work.join("dify-gitops.yaml");
    let config = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(&config_file, config.replace("imageTag: 1.13.3\n", "imageTag: 1.14.2\n")).unwrap();
    ops.commit_and_push("dify: Dify 1.14.2");
    sync(&testbed, &ops);
    request_reconcile(&testbed, "gitrepository", "flux-system", "flux-system");

    // Before anything changes, the version change runs the chart's backup Job (pre-upgrade hook); it succeeds.
    wait_for(
        "the backup Job before the upgrade to 1.14.2",
        timeout,
        || {
            jsonpath("job", "dify-backup", "{.spec.template.spec.containers[0].env[?(@.name==\"BACKUP_LABEL\")].value}")
                .filter(|label| label == "1.13.3-to-1.14.2")
                .map(|_| ())
        },
        || diagnostics(&testbed, &flux),
    );
    assert!(api_image().ends_with(":1.13.3"), "the upgrade went on before the backup: dify-api runs {}", api_image());
    complete_job(&testbed, "dify-backup");
    // Helm runs the new version's migration Job and waits for it; the migration fails.
    wait_for(
        "the 1.14.2 migration Job",
        timeout,
        || {
            let image = jsonpath("job", "dify-migration", "{.spec.template.spec.containers[0].image}")?;
            image.ends_with(":1.14.2").then_some(())
        },
        || diagnostics(&testbed, &flux),
    );
    fail_job(&testbed, "dify-migration");
    // What helm-controller does next: stall (no remediation), or remediate (with Flux's default, a rollback: a third
    // revision in helm's history).
    wait_for(
        "HelmRelease stalled, or a third release revision, after the failed upgrade",
        timeout,
        || {
            let stalled = !helmrelease("{.status.conditions[?(@.type==\"Stalled\")].reason}").is_empty();
            (stalled || helm_history(&testbed).len() > 2).then_some(())
        },
        || diagnostics(&testbed, &flux),
    );

    let assert_failed_not_rolled_back = || {
        let helm = helm_history(&testbed);
        let revisions: Vec<(u64, &str)> = helm.iter().map(|(r, s, _)| (*r, s.as_str())).collect();
        // A rollback would add revision 3, "Rollback to 1", and so would a retry of the upgrade.
        assert_eq!(revisions, [(1, "deployed"), (2, "failed")], "helm history: {helm:?}");
        assert!(helm[1].2.contains("post-upgrade hooks failed"), "helm history: {helm:?}");
        assert_eq!(helmrelease("{.status.lastAttemptedReleaseAction}"), "upgrade");
        assert_eq!(helmrelease("{.status.upgradeFailures}"), "1");
        assert_eq!(helmrelease("{.status.conditions[?(@.type==\"Ready\")].status}"), "False");
        assert_eq!(helmrelease("{.status.conditions[?(@.type==\"Stalled\")].reason}"), "RetriesExceeded");
        assert_eq!(helmrelease("{.status.conditions[?(@.type==\"Remediated\")].status}"), "", "no remediation ran");
        let history: Vec<serde_json::Value> = serde_json::from_str(&helmrelease("{.status.history}")).unwrap();
        let snapshots: Vec<(u64, &str)> =
            history.iter().map(|s| (s["version"].as_u64().unwrap(), s["status"].as_str().unwrap())).collect();
        assert_eq!(snapshots, [(2, "failed"), (1, "deployed")], "HelmRelease history: {history:?}");
        // The workloads stay on the code of the schema the migration went for, not on the older code.
        assert!(api_image().ends_with(":1.14.2"), "dify-api runs {}", api_image());
    };
    assert_failed_not_rolled_back();

    // Another reconcile (the interval, or a push) changes nothing: still no rollback, no second migration.
    request_reconcile(&testbed, "helmrelease", NAMESPACE, "dify");
    let requested =
        jsonpath("helmrelease", "dify", "{.metadata.annotations.reconcile\\.fluxcd\\.io/requestedAt}").unwrap();
    wait_for(
        "helm-controller to handle the reconcile request",
        timeout,
        || (helmrelease("{.status.lastHandledReconcileAt}") == requested).then_some(()),
        || diagnostics(&testbed, &flux),
    );
    assert_failed_not_rolled_back();
}

/// The v2beta2 variant (Flux 2.2 / NKP 2.12) is the v2 HelmRelease with another apiVersion line, nothing else
/// (comments included), so that both stay within the fields every supported Flux has and `sync` can move an ops
/// repo from one to the other by that line alone.
#[test]
fn the_v2beta2_helmrelease_differs_from_v2_in_api_version_only() {
    let read = |path: &str| std::fs::read_to_string(gitops().join(path)).unwrap();
    let (v2, v2beta2) = (read("apps/ENV/dify/helmrelease.yaml"), read("variants/helmrelease.v2beta2.yaml"));
    assert_eq!(v2.matches("\napiVersion: helm.toolkit.fluxcd.io/v2\n").count(), 1);
    assert_eq!(
        v2.replace("\napiVersion: helm.toolkit.fluxcd.io/v2\n", "\napiVersion: helm.toolkit.fluxcd.io/v2beta2\n"),
        v2beta2
    );
}

/// The ops-repo workflow templates live outside .github/workflows (they must not run here): lint them too.
#[test]
fn ops_repo_workflow_templates_pass_actionlint() {
    let templates: Vec<PathBuf> = std::fs::read_dir(gitops().join("workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    assert_eq!(templates.len(), 2, "reconcile.yml and review.yml: {templates:?}");
    let output = Command::new("actionlint")
        .args(&templates)
        .current_dir(flux::repo_root())
        .output()
        .expect("running actionlint (on PATH through `scripts/test-tools path`)");
    assert!(
        output.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The filled templates are valid for the pinned Flux CRDs and the API server, checked strictly (unknown fields are
/// errors): `kubectl kustomize` of the overlay (without the two files sync writes) and clusters/<env>/, then a
/// server-side dry-run apply — with the v2 HelmRelease and with the v2beta2 variant for Flux 2.2 (the pinned
/// helm-controller serves both). The variant's fields were also checked by hand against Flux 2.2's own v2beta2
/// schema (helm-controller v0.37.4), which the module proxy here does not serve.
#[test]
fn the_filled_templates_pass_strict_server_side_validation() {
    let testbed = Testbed::start(&[nkp_fixture()]);
    for dir in flux::crd_dirs() {
        testbed.kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()]);
    }
    testbed.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    let served = testbed.kubectl(&[
        "get",
        "crd",
        "helmreleases.helm.toolkit.fluxcd.io",
        "-o",
        "jsonpath={.spec.versions[?(@.served==true)].name}",
    ]);
    assert!(
        served.split_whitespace().any(|v| v == "v2beta2"),
        "the pinned helm-controller serves only {served}: the v2beta2 variant (Flux 2.2 / NKP 2.12) is not validated; \
         pin a helm-controller that still serves v2beta2 (1.4.x does) or validate it against another CRD"
    );
    // A dry run creates nothing, so the namespaces the objects go into must exist already.
    testbed.kubectl(&["create", "namespace", "flux-system"]);
    testbed.kubectl(&["create", "namespace", NAMESPACE]);
    let dry_run = |manifests: &str| -> std::process::Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&testbed.kubeconfig)
            .args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(manifests.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    for api in ["v2", "v2beta2"] {
        let work = tempfile::tempdir().unwrap();
        let ops = init_ops_repo(
            &work.path().join("ops"),
            Layout { helmrelease_api: api, ..DEFAULT_LAYOUT },
            &work.path().join("ops.git"),
            "https://github.com/dify-gitops/dify-gitops",
            work.path().join("unused.agekey"),
            String::new(),
        );
        let kustomization = ops.overlay().join("kustomization.yaml");
        let text = std::fs::read_to_string(&kustomization).unwrap();
        let without_sync_files = text.replace("  - dify-values.yaml\n", "").replace("  - dify-secrets.sops.yaml\n", "");
        assert_ne!(text, without_sync_files, "the overlay kustomization lists the files sync writes");
        std::fs::write(&kustomization, without_sync_files).unwrap();
        let built = testbed.kubectl(&["kustomize", ops.overlay().to_str().unwrap()]);
        assert!(built.contains(&format!("apiVersion: helm.toolkit.fluxcd.io/{api}\n")), "{built}");
        let output = dry_run(&built);
        assert!(output.status.success(), "{api}: {}", String::from_utf8_lossy(&output.stderr));
        // clusters/<env>/ has no kustomization.yaml: Flux generates one over its files, as `kubectl apply -f` reads.
        let clusters = ops.work.join(format!("clusters/{ENV}"));
        testbed.kubectl(&["apply", "--dry-run=server", "--validate=strict", "-f", clusters.to_str().unwrap()]);

        // Strictness check: a field the schema does not have is rejected.
        let bad = built.replace("  releaseName: dify\n", "  releaseName: dify\n  noSuchField: true\n");
        assert_ne!(bad, built);
        let rejected = dry_run(&bad);
        assert!(!rejected.status.success());
        assert!(String::from_utf8_lossy(&rejected.stderr).contains("noSuchField"));
    }
}

/// The local git server answers git's smart-HTTP protocol (the same one source-controller's go-git speaks).
#[test]
fn the_local_git_server_serves_a_clone() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    chart_repo(&work.path().join("chart"), &served.join("dify-gitops.git"));
    let server = GitHttpServer::start(&served);
    let clone = work.path().join("clone");
    let output = Command::new("git")
        .args(["clone", "-q", &format!("{}/dify-gitops.git", server.url)])
        .arg(&clone)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(output.status.success(), "git clone: {}", String::from_utf8_lossy(&output.stderr));
    assert!(clone.join("chart/dify/Chart.yaml").is_file());
}

/// Why the overlay is not under clusters/<env>/: there the bootstrap Kustomization, which has no decryption, picks up
/// the overlay too and applies the Secret as it is in git. Both Kustomizations then own dify-secrets with the same
/// field manager, and whichever reconciles last decides its content: after flux-system, SECRET_KEY is ciphertext.
#[tokio::test]
async fn an_overlay_under_the_bootstrap_path_gets_applied_encrypted() {
    let FluxCluster { testbed, flux, ops, _server, _work, .. } =
        flux_cluster(Layout { overlay_dir: "clusters/test/dify", ..DEFAULT_LAYOUT }).await;
    let timeout = Duration::from_secs(120);
    for name in ["flux-system", "dify"] {
        wait_for(
            &format!("Kustomization {name} Ready"),
            timeout,
            || ready(&testbed, "kustomization", "flux-system", name),
            || diagnostics(&testbed, &flux),
        );
    }
    let inventory = testbed.kubectl(&["-n", "flux-system", "get", "kustomization", "flux-system", "-o", "json"]);
    assert!(inventory.contains("dify_dify-secrets__Secret"), "flux-system took in the overlay: {inventory}");

    // flux-system reconciles last (its interval, or any push): the cluster gets the ciphertext.
    request_reconcile(&testbed, "kustomization", "flux-system", "flux-system");
    let value = wait_for(
        "flux-system to apply the Secret as committed",
        timeout,
        || {
            let value = secret_value(&testbed, "dify-secrets", "dify-secret-key");
            value.starts_with("ENC[AES256_GCM,").then_some(value)
        },
        || diagnostics(&testbed, &flux),
    );
    assert_ne!(value, ops.decrypted_secrets()["dify-secret-key"]);
}

/// The Flux 2.2 (NKP 2.12) variant: the v2beta2 HelmRelease installs the same release from the same overlay
/// contract, here written with the `sops` CLI instead of dify-gitops.
#[tokio::test]
async fn flux_installs_dify_with_the_v2beta2_helmrelease() {
    let FluxCluster { testbed, flux, ops, _server, _work, .. } =
        flux_cluster(Layout { helmrelease_api: "v2beta2", writer: Writer::SopsCli, ..DEFAULT_LAYOUT }).await;
    wait_for(
        "HelmRelease (v2beta2) Ready",
        Duration::from_secs(180),
        || ready(&testbed, "helmreleases.v2beta2.helm.toolkit.fluxcd.io", NAMESPACE, "dify"),
        || diagnostics(&testbed, &flux),
    );
    let web = deployment_env(&testbed, "dify-web");
    assert_eq!(web.get("CONSOLE_API_URL").map(String::as_str), Some("https://192.0.2.10/dify"));
    let api = deployment_env(&testbed, "dify-api");
    let (name, key) = api["SECRET_KEY"].strip_prefix("secretKeyRef:").unwrap().split_once('/').unwrap();
    let secrets = ops.decrypted_secrets();
    assert_eq!(secret_value(&testbed, name, key), secrets["dify-secret-key"]);
    // openai-api-key (optional in the HelmRelease) reached the chart's Secret through secrets.openaiApiKey.
    assert_eq!(secret_value(&testbed, name, "openai-api-key"), secrets["openai-api-key"]);
}
