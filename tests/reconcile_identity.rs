//! The least-privilege reconcile identity (`gitops/rbac/reconcile-identity.yaml`) on the real kube-apiserver:
//! `preflight`, `discover` and `sync` work as that ServiceAccount (by impersonation, and with a real token made by
//! the README's kubeconfig recipe), and every write it tries is Forbidden.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::ops::run;
use support::{Testbed, apply_yaml, nkp_fixture, set_load_balancer_ip};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:dify-gitops:dify-gitops-reconcile";
const LB_IP: &str = "192.0.2.10";

fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gitops/rbac")
}

/// An NKP cluster whose Traefik has an address and a node with room, with the reconcile identity applied.
async fn cluster_with_identity() -> Testbed {
    let testbed = Testbed::start(&[nkp_fixture()]);
    let client = testbed.client().await;
    set_load_balancer_ip(&client, "kon-workspace-test", "kommander-traefik", LB_IP).await;
    apply_yaml(
        &client,
        "apiVersion: v1\nkind: Node\nmetadata: {name: worker-1}\n\
         status: {allocatable: {cpu: '8', memory: 32Gi, pods: '110'}, capacity: {cpu: '8', memory: 32Gi, pods: '110'}}\n",
    )
    .await;
    let manifest = std::fs::read_to_string(rbac_dir().join("reconcile-identity.yaml")).unwrap();
    apply_yaml(&client, &manifest).await;
    testbed
}

/// `kubectl` with a given kubeconfig: (success, stdout + stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// (status of each check by name, exit code) of `preflight --output json` with this kubeconfig.
fn preflight(testbed: &Testbed, kubeconfig: &Path, extra: &[&str]) -> (i32, Vec<(String, String)>) {
    let mut args = vec!["preflight", "--output", "json"];
    args.extend_from_slice(extra);
    let out = testbed.dify_gitops_with(kubeconfig, &args);
    let report = out.json();
    let checks = report["checks"].as_array().unwrap();
    (
        out.code,
        checks
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["status"].as_str().unwrap().to_string()))
            .collect(),
    )
}

fn failing(checks: &[(String, String)]) -> Vec<&str> {
    checks.iter().filter(|(_, status)| status == "fail").map(|(name, _)| name.as_str()).collect()
}

/// Every write the reconcile identity might be tempted into is refused by the API server.
fn assert_writes_forbidden(kubeconfig: &Path) {
    let writes: [&[&str]; 5] = [
        &["-n", "dify", "create", "configmap", "x", "--from-literal=a=b"],
        &[
            "-n",
            "kon-workspace-test",
            "patch",
            "service",
            "kommander-traefik",
            "-p",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        ],
        &["-n", "dify", "create", "deployment", "x", "--image=busybox"],
        &["create", "namespace", "x"],
        &["delete", "storageclass", "nutanix-volume"],
    ];
    for args in writes {
        let (ok, output) = kubectl(kubeconfig, args);
        assert!(!ok && output.to_lowercase().contains("forbidden"), "kubectl {args:?} must be Forbidden: {output}");
    }
    let (ok, output) = kubectl(kubeconfig, &["-n", "dify", "get", "secrets"]);
    assert!(!ok && output.to_lowercase().contains("forbidden"), "reading Secrets must be Forbidden: {output}");
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        let (_, answer) = kubectl(kubeconfig, &["auth", "can-i", verb, "*", "--all-namespaces"]);
        assert_eq!(answer.trim(), "no", "can-i {verb} *: {answer}");
    }
}

#[tokio::test]
async fn preflight_discover_and_sync_work_as_the_reconcile_identity_and_writes_are_forbidden() {
    let testbed = cluster_with_identity().await;
    let as_sa = testbed.impersonating_kubeconfig(SERVICE_ACCOUNT);

    // The release namespace does not exist yet and the identity may not create it; nor may it install the chart.
    let (code, checks) = preflight(&testbed, &as_sa, &[]);
    assert_eq!(code, 3, "{checks:?}");
    assert_eq!(failing(&checks), vec!["namespace", "rbac"], "{checks:?}");
    testbed.kubectl(&["create", "namespace", "dify"]);
    let (code, checks) = preflight(&testbed, &as_sa, &[]);
    assert_eq!(code, 3);
    assert_eq!(failing(&checks), vec!["rbac"], "only the install permissions are missing: {checks:?}");
    for (name, status) in &checks {
        let expected = match name.as_str() {
            "rbac" => "fail",
            "rwx-storage-class" => "skip",
            _ => "pass",
        };
        assert_eq!(status, expected, "{name}: {checks:?}");
    }
    let (_, checks) = preflight(&testbed, &as_sa, &["--rwx-storage-class", "nutanix-volume"]);
    assert!(checks.contains(&("rwx-storage-class".into(), "warn".into())), "reads the named class: {checks:?}");

    let discover = testbed.dify_gitops_with(&as_sa, &["discover", "--timeout", "10s", "--output", "json"]);
    assert_eq!(discover.code, 0, "{discover:?}");
    assert_eq!(discover.json()["address"], LB_IP);
    assert_eq!(discover.json()["namespace"], "kon-workspace-test");

    // sync as the identity: discovery is all it asks of the cluster.
    let ops = tempfile::tempdir().unwrap();
    let remote = ops.path().join("ops.git");
    let key = ops.path().join("age.key");
    run("age-keygen", &["-o", key.to_str().unwrap()], None);
    let recipient = run("age-keygen", &["-y", key.to_str().unwrap()], None).trim().to_string();
    run("git", &["init", "-q", "--bare", "--initial-branch=main", remote.to_str().unwrap()], None);
    let seed = ops.path().join("seed");
    run("git", &["clone", "-q", remote.to_str().unwrap(), seed.to_str().unwrap()], None);
    let config = format!("environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{recipient}]\n");
    std::fs::write(seed.join("dify-gitops.yaml"), config).unwrap();
    run("git", &["add", "."], Some(&seed));
    run("git", &["commit", "-q", "-m", "config"], Some(&seed));
    run("git", &["push", "-q", "origin", "HEAD:main"], Some(&seed));
    let sync = testbed.dify_gitops_with(&as_sa, &["sync", "--repo", remote.to_str().unwrap(), "--timeout", "10s"]);
    assert_eq!(sync.code, 6, "{sync:?}");
    let values = run("git", &["show", "main:apps/prod/dify/dify-values.yaml"], Some(&remote));
    assert!(values.contains(&format!("host: \"{LB_IP}\"")), "{values}");

    assert_writes_forbidden(&as_sa);
}

#[tokio::test]
async fn the_readme_kubeconfig_recipe_gives_a_working_token_that_cannot_write() {
    let testbed = cluster_with_identity().await;
    testbed.kubectl(&["create", "namespace", "dify"]);
    let readme = std::fs::read_to_string(rbac_dir().join("README.md")).unwrap();
    let start = readme.find("# reconcile-kubeconfig").expect("the recipe block in gitops/rbac/README.md");
    let script = &readme[start..start + readme[start..].find("\n```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("reconcile.kubeconfig");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("KUBECONFIG", &testbed.kubeconfig)
        .env("OUT", &kubeconfig)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "the recipe failed: {}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600, "umask 077");

    let (ok, whoami) = kubectl(&kubeconfig, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(ok, "{whoami}");
    assert_eq!(whoami, SERVICE_ACCOUNT, "a real token of the ServiceAccount");
    let discover = testbed.dify_gitops_with(&kubeconfig, &["discover", "--timeout", "10s"]);
    assert_eq!((discover.code, discover.stdout.trim()), (0, LB_IP), "{discover:?}");
    let (code, checks) = preflight(&testbed, &kubeconfig, &[]);
    assert_eq!((code, failing(&checks)), (3, vec!["rbac"]), "{checks:?}");
    assert_writes_forbidden(&kubeconfig);
}

#[tokio::test]
async fn services_scoped_to_the_traefik_namespace_need_traefik_namespace() {
    let testbed = cluster_with_identity().await;
    // The README's namespace-scoped variant.
    testbed.kubectl(&["delete", "clusterrolebinding", "dify-gitops-reconcile-services"]);
    testbed.kubectl(&[
        "-n",
        "kon-workspace-test",
        "create",
        "rolebinding",
        "dify-gitops-reconcile-services",
        "--clusterrole=dify-gitops-reconcile-services",
        "--serviceaccount=dify-gitops:dify-gitops-reconcile",
    ]);
    let as_sa = testbed.impersonating_kubeconfig(SERVICE_ACCOUNT);

    let across = testbed.dify_gitops_with(&as_sa, &["discover", "--timeout", "5s"]);
    assert_eq!(across.code, 1, "{across:?}");
    assert!(across.stderr.contains("pass --traefik-namespace"), "the error names the fix: {}", across.stderr);

    let scoped = testbed.dify_gitops_with(&as_sa, &["discover", "--traefik-namespace", "kon-workspace-test"]);
    assert_eq!((scoped.code, scoped.stdout.trim()), (0, LB_IP), "{scoped:?}");
    testbed.kubectl(&["create", "namespace", "dify"]);
    let (_, checks) = preflight(&testbed, &as_sa, &["--traefik-namespace", "kon-workspace-test"]);
    assert_eq!(failing(&checks), vec!["rbac"], "{checks:?}");
    let (ok, output) = kubectl(&as_sa, &["-n", "default", "get", "services"]);
    assert!(!ok && output.to_lowercase().contains("forbidden"), "Services elsewhere stay hidden: {output}");
}
