//! An NKP upgrade from 2.12 to 2.13 takes Flux from 2.2 (HelmRelease `v2beta2` only) to 2.3+ (`v2`): `sync` moves
//! the HelmRelease that `init` wrote to the API the real kube-apiserver now serves, in one commit, and leaves it
//! alone otherwise.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::ops::{git, run};
use support::{Testbed, apply_yaml, helmrelease_crd, nkp_fixture, set_load_balancer_ip};

const RELEASE: &str = "apps/prod/dify/helmrelease.yaml";

fn dify_gitops(testbed: &Testbed, args: &[&str], dir: &Path) -> (i32, String, String) {
    support::cli::run(
        support::cli::command()
            .arg("--kubeconfig")
            .arg(&testbed.kubeconfig)
            .args(args)
            .env("SOPS_AGE_KEY_FILE", dir.join("age.key")),
    )
    .parts()
}

/// Waits until the API server's discovery lists `group_version` (it follows a CRD change asynchronously).
fn wait_for_api(testbed: &Testbed, group_version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !testbed.kubectl(&["api-versions"]).lines().any(|l| l == group_version) {
        assert!(Instant::now() < deadline, "the API server never served {group_version}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn sync_moves_the_helmrelease_to_the_api_flux_serves_after_an_upgrade() {
    let testbed = Testbed::start(&[nkp_fixture()]);
    let client = testbed.client().await;
    set_load_balancer_ip(&client, "kon-workspace-test", "kommander-traefik", "192.0.2.10").await;
    apply_yaml(&client, &helmrelease_crd(&["v2beta2"])).await; // Flux 2.2, NKP 2.12
    wait_for_api(&testbed, "helm.toolkit.fluxcd.io/v2beta2");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    run("age-keygen", &["-o", root.join("age.key").to_str().unwrap()], None);
    let recipient = run("age-keygen", &["-y", root.join("age.key").to_str().unwrap()], None);
    let ops = root.join("ops");
    run("git", &["init", "-q", "-b", "main", ops.to_str().unwrap()], None);
    let init = |target: &Path, extra: &[&str]| {
        let args = [&["init", "--env", "prod", "--image-tag", "1.13.3", "--recipient", recipient.trim()][..], extra];
        let mut args = args.concat();
        args.extend(["--repo-dir", target.to_str().unwrap()]);
        let (code, stdout, stderr) = dify_gitops(&testbed, &args, root);
        assert_eq!(code, 0, "init: {stdout}{stderr}");
    };
    init(&ops, &[]);
    let written = std::fs::read_to_string(ops.join(RELEASE)).unwrap();
    assert!(written.contains("apiVersion: helm.toolkit.fluxcd.io/v2beta2\n"), "init asked the cluster");
    git(&ops, &["add", "."]);
    git(&ops, &["commit", "-qm", "init"]);

    let sync = ["sync", "--repo", ops.to_str().unwrap()];
    let (code, stdout, stderr) = dify_gitops(&testbed, &sync, root);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(ops.join(RELEASE)).unwrap(), written, "still the API the cluster serves");

    // The upgrade: Flux 2.3+ serves v2 beside v2beta2.
    apply_yaml(&client, &helmrelease_crd(&["v2", "v2beta2"])).await;
    wait_for_api(&testbed, "helm.toolkit.fluxcd.io/v2");
    let (code, stdout, stderr) = dify_gitops(&testbed, &sync, root);
    assert_eq!(code, 6, "{stdout}{stderr}");
    let change = "HelmRelease apiVersion helm.toolkit.fluxcd.io/v2beta2 -> helm.toolkit.fluxcd.io/v2";
    assert!(stdout.contains(change), "{stdout}");
    assert!(git(&ops, &["log", "-1", "--format=%B"]).contains(change), "the commit says so");
    let changed = git(&ops, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(changed.trim(), RELEASE, "only the HelmRelease changed");

    // Byte for byte what init writes for v2.
    let fresh = root.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    init(&fresh, &["--helmrelease-api", "v2"]);
    assert_eq!(
        std::fs::read_to_string(ops.join(RELEASE)).unwrap(),
        std::fs::read_to_string(fresh.join(RELEASE)).unwrap()
    );

    let (code, stdout, stderr) = dify_gitops(&testbed, &sync, root);
    assert_eq!(code, 0, "nothing left to do: {stdout}{stderr}");
}
