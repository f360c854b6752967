//! `dify-gitops init` lays out an ops repo that the real tools accept: the config loads, `render` fills the
//! overlay, `kubectl kustomize` builds it, and the HelmRelease API follows what the real API server serves.

mod support;

use std::path::Path;

use support::ops::run;
use support::{Testbed, apply_yaml, helmrelease_crd};

fn init(dir: &Path, kubeconfig: Option<&Path>, extra: &[&str]) -> (i32, String, String) {
    let recipient = run("age-keygen", &["-y", dir.join("age.key").to_str().unwrap()], None);
    let mut command = support::cli::command();
    command.args(["init", "--env", "prod", "--image-tag", "1.13.3", "--recipient", recipient.trim(), "--repo-dir"]);
    command.arg(dir.join("ops")).args(extra);
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    support::cli::run(&mut command).parts()
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run("age-keygen", &["-o", dir.path().join("age.key").to_str().unwrap()], None);
    std::fs::create_dir(dir.path().join("ops")).unwrap();
    dir
}

#[test]
fn the_layout_renders_and_builds_with_kustomize() {
    let dir = scratch();
    let (code, stdout, stderr) = init(dir.path(), None, &["--helmrelease-api", "v2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let ops = dir.path().join("ops");
    for file in [
        "dify-gitops.yaml",
        "clusters/prod/dify.yaml",
        "apps/prod/dify/helmrelease.yaml",
        ".github/workflows/reconcile.yml",
    ] {
        assert!(ops.join(file).is_file(), "{file} missing: {stdout}");
    }
    // The overlay's two remaining files come from render, into the directory init configured.
    let render = support::cli::command()
        .args(["render", "--host", "192.0.2.10", "--repo-dir"])
        .arg(&ops)
        .env("SOPS_AGE_KEY_FILE", dir.path().join("age.key"))
        .output()
        .unwrap();
    assert_eq!(render.status.code(), Some(6), "{}", String::from_utf8_lossy(&render.stderr));
    let built = run("kubectl", &["kustomize", ops.join("apps/prod/dify").to_str().unwrap()], None);
    for kind in ["kind: Namespace", "kind: GitRepository", "kind: HelmRelease", "kind: ConfigMap", "kind: Secret"] {
        assert!(built.contains(kind), "kustomize output lacks {kind}");
    }
    assert!(built.contains("pod-security.kubernetes.io/enforce: baseline"), "the sandbox needs baseline");
}

#[test]
fn existing_files_are_refused_and_nothing_is_written() {
    let dir = scratch();
    std::fs::write(dir.path().join("ops/dify-gitops.yaml"), "environments: {}\n").unwrap();
    let (code, _, stderr) = init(dir.path(), None, &["--helmrelease-api", "v2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("dify-gitops.yaml already exist(s)") && stderr.contains("--force"), "{stderr}");
    assert!(!dir.path().join("ops/clusters").exists(), "nothing else was written");
}

#[tokio::test]
async fn the_helmrelease_api_is_the_one_the_cluster_serves() {
    let testbed = Testbed::start(&[]);
    let dir = scratch();
    let (code, _, stderr) = init(dir.path(), Some(&testbed.kubeconfig), &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("serves no HelmRelease API") && stderr.contains("--helmrelease-api"), "{stderr}");

    // Flux 2.2 (NKP 2.12): v2beta2 only.
    let client = testbed.client().await;
    apply_yaml(&client, &helmrelease_crd(&["v2beta2"])).await;
    let (code, stdout, stderr) = init(dir.path(), Some(&testbed.kubeconfig), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let release = std::fs::read_to_string(dir.path().join("ops/apps/prod/dify/helmrelease.yaml")).unwrap();
    assert!(release.contains("apiVersion: helm.toolkit.fluxcd.io/v2beta2\n"));

    // Flux 2.3+: v2 served (beside v2beta2), v2 written.
    apply_yaml(&client, &helmrelease_crd(&["v2", "v2beta2"])).await;
    let (code, _, stderr) = init(dir.path(), Some(&testbed.kubeconfig), &["--force"]);
    assert_eq!(code, 0, "{stderr}");
    let release = std::fs::read_to_string(dir.path().join("ops/apps/prod/dify/helmrelease.yaml")).unwrap();
    assert!(release.contains("apiVersion: helm.toolkit.fluxcd.io/v2\n"));
}
