//! `dify-gitops preflight` against a real kube-apiserver: every check passes on a good NKP cluster, and each
//! broken piece of the fixture fails its own check with its own message (exit code 3).

mod support;

use support::{Testbed, apply_yaml, nkp_fixture, set_load_balancer_ip};

/// A fresh NKP cluster where everything is right: Traefik has an address and a node has room for Dify.
async fn good_cluster() -> Testbed {
    cluster_with_a_node("'8'", "32Gi").await
}

/// A fresh NKP cluster whose Traefik has an address, with one node of that allocatable CPU and memory.
async fn cluster_with_a_node(cpu: &str, memory: &str) -> Testbed {
    let testbed = Testbed::start(&[nkp_fixture()]);
    let client = testbed.client().await;
    set_load_balancer_ip(&client, "kon-workspace-test", "kommander-traefik", "192.0.2.10").await;
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: worker-1}}\n\
         status: {{allocatable: {{cpu: {cpu}, memory: {memory}, pods: '110'}}, capacity: {{cpu: {cpu}, memory: {memory}}}}}\n"
    );
    apply_yaml(&client, &node).await;
    testbed
}

/// Runs preflight as JSON; returns the exit code and (name → (status, reason, fix)) of each check.
fn preflight(testbed: &Testbed, extra: &[&str]) -> (i32, serde_json::Map<String, serde_json::Value>) {
    preflight_with(testbed, &testbed.kubeconfig, extra)
}

fn preflight_with(
    testbed: &Testbed,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> (i32, serde_json::Map<String, serde_json::Value>) {
    let mut args = vec!["preflight", "--output", "json"];
    args.extend_from_slice(extra);
    let output = testbed.dify_gitops_with(kubeconfig, &args);
    let report = output.json();
    assert_eq!(report["passed"], output.code == 0, "exit code and report agree: {output:?}");
    let checks = report["checks"].as_array().unwrap().iter();
    (output.code, checks.map(|c| (c["name"].as_str().unwrap().to_string(), c.clone())).collect())
}

fn status(checks: &serde_json::Map<String, serde_json::Value>, name: &str) -> String {
    checks[name]["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_check_passes_on_a_good_nkp_cluster() {
    let testbed = good_cluster().await;
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!(code, 0);
    for (name, check) in &checks {
        let expected = if name == "rwx-storage-class" { "skip" } else { "pass" };
        assert_eq!(check["status"], expected, "{name}: {check}");
    }
    assert!(checks["traefik-address"]["reason"].as_str().unwrap().contains("192.0.2.10"));
    assert!(checks["storage-class"]["reason"].as_str().unwrap().contains("csi.nutanix.com"));

    let text = testbed.dify_gitops(&["preflight"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.lines().all(|l| l.starts_with("PASS") || l.starts_with("SKIP")), "{}", text.stdout);
}

#[tokio::test]
async fn a_path_without_a_web_image_built_for_it_fails_before_the_install() {
    let testbed = good_cluster().await;
    let (code, checks) = preflight(&testbed, &["--path", "/ai"]);
    assert_eq!((code, status(&checks, "web-image")), (3, "fail".into()));
    assert!(checks["web-image"]["fix"].as_str().unwrap().contains("NEXT_PUBLIC_BASE_PATH=/ai"), "{checks:?}");
    let (code, checks) = preflight(&testbed, &["--path", "/ai", "--web-image", "registry.example.com/web-ai:1.13.3"]);
    assert_eq!((code, status(&checks, "web-image")), (0, "warn".into()));
}

#[tokio::test]
async fn a_missing_ingress_class_fails_its_check() {
    let testbed = good_cluster().await;
    testbed.kubectl(&["delete", "ingressclass", "kommander-traefik"]);
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "ingress-class")), (3, "fail".into()));
    assert_eq!(checks["ingress-class"]["reason"], "IngressClass 'kommander-traefik' not found");
    assert_eq!(status(&checks, "storage-class"), "pass", "only the broken check fails");
}

#[tokio::test]
async fn an_ingress_class_of_another_controller_fails() {
    let testbed = good_cluster().await;
    apply_yaml(
        &testbed.client().await,
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n",
    )
    .await;
    let (code, checks) = preflight(&testbed, &["--ingress-class", "nginx"]);
    assert_eq!((code, status(&checks, "ingress-class")), (3, "fail".into()));
    assert!(checks["ingress-class"]["reason"].as_str().unwrap().contains("not Traefik"));
}

#[tokio::test]
async fn no_default_storage_class_fails_and_a_named_one_passes() {
    let testbed = good_cluster().await;
    testbed.kubectl(&["annotate", "storageclass", "nutanix-volume", "storageclass.kubernetes.io/is-default-class-"]);
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "storage-class")), (3, "fail".into()));
    assert_eq!(checks["storage-class"]["reason"], "no default StorageClass");
    assert!(checks["storage-class"]["fix"].as_str().unwrap().contains("nutanix-volume"));

    let (code, checks) = preflight(&testbed, &["--storage-class", "nutanix-volume"]);
    assert_eq!((code, status(&checks, "storage-class")), (0, "pass".into()));
}

#[tokio::test]
async fn a_traefik_service_without_an_address_fails() {
    let testbed = Testbed::start(&[nkp_fixture()]);
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "traefik-address")), (3, "fail".into()));
    assert!(
        checks["traefik-address"]["fix"].as_str().unwrap().contains("kubectl -n kon-workspace-test describe service")
    );
}

#[tokio::test]
async fn a_missing_middleware_crd_fails_and_the_old_group_only_warns() {
    let testbed = good_cluster().await;
    testbed.kubectl(&["delete", "crd", "middlewares.traefik.io"]);
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "middleware-crd")), (3, "fail".into()));
    assert_eq!(checks["middleware-crd"]["reason"], "Middleware CRD traefik.io/v1alpha1 not found");

    let old = std::fs::read_to_string(nkp_fixture().join("00-crd-middleware.yaml"))
        .unwrap()
        .replace("middlewares.traefik.io", "middlewares.traefik.containo.us")
        .replace("group: traefik.io", "group: traefik.containo.us");
    apply_yaml(&testbed.client().await, &old).await;
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "middleware-crd")), (0, "warn".into()));
}

#[tokio::test]
async fn two_candidate_traefik_services_fail_listing_both() {
    let testbed = good_cluster().await;
    apply_yaml(
        &testbed.client().await,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kommander}\n---\napiVersion: v1\nkind: Service\n\
         metadata: {name: kommander-traefik, namespace: kommander}\nspec: {type: LoadBalancer, ports: [{port: 443}]}\n",
    )
    .await;
    let (code, checks) = preflight(&testbed, &[]);
    assert_eq!((code, status(&checks, "traefik-address")), (3, "fail".into()));
    let reason = checks["traefik-address"]["reason"].as_str().unwrap();
    assert!(reason.contains("kommander/kommander-traefik") && reason.contains("kon-workspace-test/kommander-traefik"));
}

#[tokio::test]
async fn a_user_whose_rbac_is_too_small_fails_the_rbac_check_only() {
    let testbed = good_cluster().await;
    // `limited` may read what preflight reads, and in namespace dify only manage ConfigMaps.
    apply_yaml(
        &testbed.client().await,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: dify}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: preflight-reader}\nrules:\n\
         - apiGroups: ['']\n  resources: [services, nodes, namespaces]\n  verbs: [get, list, watch]\n\
         - apiGroups: [storage.k8s.io]\n  resources: [storageclasses]\n  verbs: [get, list]\n\
         - apiGroups: [networking.k8s.io]\n  resources: [ingressclasses]\n  verbs: [get, list]\n\
         - apiGroups: [apiextensions.k8s.io]\n  resources: [customresourcedefinitions]\n  verbs: [get]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: limited-reads}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: preflight-reader}\n\
         subjects: [{kind: User, name: limited, apiGroup: rbac.authorization.k8s.io}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: configmaps, namespace: dify}\nrules:\n\
         - apiGroups: ['']\n  resources: [configmaps]\n  verbs: ['*']\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: limited-configmaps, namespace: dify}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmaps}\n\
         subjects: [{kind: User, name: limited, apiGroup: rbac.authorization.k8s.io}]\n",
    )
    .await;
    let limited = testbed.impersonating_kubeconfig("limited");
    let (code, checks) = preflight_with(&testbed, &limited, &[]);
    assert_eq!(code, 3);
    let failed: Vec<&String> = checks.keys().filter(|name| status(&checks, name) == "fail").collect();
    assert_eq!(failed, ["rbac"], "{checks:?}");
    let reason = checks["rbac"]["reason"].as_str().unwrap();
    assert!(reason.contains("create deployments.apps") && reason.contains("create middlewares.traefik.io"), "{reason}");
    assert!(!reason.contains("configmaps"), "ConfigMaps are allowed: {reason}");
}

#[tokio::test]
async fn a_requested_rwx_class_is_checked() {
    let testbed = good_cluster().await;
    let (code, checks) = preflight(&testbed, &["--rwx-storage-class", "nutanix-files"]);
    assert_eq!((code, status(&checks, "rwx-storage-class")), (3, "fail".into()));
    apply_yaml(
        &testbed.client().await,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: nutanix-files}\n\
         provisioner: csi.nutanix.com\nparameters: {storageType: NutanixFiles}\n",
    )
    .await;
    let (code, checks) = preflight(&testbed, &["--rwx-storage-class", "nutanix-files"]);
    assert_eq!((code, status(&checks, "rwx-storage-class")), (0, "pass".into()));
    let (_, checks) = preflight(&testbed, &["--rwx-storage-class", "nutanix-volume"]);
    assert_eq!(status(&checks, "rwx-storage-class"), "warn", "a block class is not RWX");
}

#[tokio::test]
async fn an_unreachable_api_server_fails_the_first_check_only() {
    let testbed = Testbed::start(&[]);
    let dead = testbed.dir.join("kubeconfig-dead");
    let config = std::fs::read_to_string(&testbed.kubeconfig).unwrap();
    std::fs::write(&dead, config.replace(&testbed.server, "https://127.0.0.1:1")).unwrap();
    let (code, checks) = preflight_with(&testbed, &dead, &[]);
    assert_eq!((code, checks.len(), status(&checks, "api-server")), (3, 1, "fail".into()));
}

#[tokio::test]
async fn capacity_counts_the_components_of_the_dify_version_to_be_installed() {
    // Room for Dify 1.13's default install (1.65 CPU / 4.44 GiB), not for 1.14's api-websocket on top (1.75 / 4.94).
    let testbed = cluster_with_a_node("1700m", "4700Mi").await;
    let (code, checks) = preflight(&testbed, &["--dify-version", "1.13.3"]);
    assert_eq!((code, status(&checks, "capacity")), (0, "pass".into()), "{checks:?}");
    assert!(checks["capacity"]["reason"].as_str().unwrap().contains("Dify 1.13 requests 1.65 CPU"), "{checks:?}");
    let (code, checks) = preflight(&testbed, &["--dify-version", "1.14.2"]);
    assert_eq!((code, status(&checks, "capacity")), (0, "warn".into()), "{checks:?}");
    assert!(checks["capacity"]["reason"].as_str().unwrap().contains("Dify 1.14 requests 1.75 CPU"), "{checks:?}");
    let (_, checks) = preflight(&testbed, &[]);
    assert_eq!(status(&checks, "capacity"), "warn", "without a version the newest is counted: {checks:?}");

    let bad = testbed.dify_gitops(&["preflight", "--dify-version", "latest"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("'latest' is not a Dify version"), "{bad:?}");
}
