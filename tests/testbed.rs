//! The local control plane is real: objects are stored and admitted by a real kube-apiserver (Pod Security
//! included), the NKP fixture is what the product expects, and nothing survives a teardown.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use support::{Testbed, process_alive, set_load_balancer_ip, unique_namespace};

async fn create_namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("create namespace");
}

#[tokio::test]
async fn nkp_fixture_has_traefik_service_class_storage_and_middleware_crd() {
    let client = Testbed::shared().client().await;
    let service =
        Api::<Service>::namespaced(client.clone(), "kon-workspace-test").get("kommander-traefik").await.unwrap();
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert!(
        service.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).is_none(),
        "no IP until a test sets one"
    );

    let class = Api::<IngressClass>::all(client.clone()).get("kommander-traefik").await.unwrap();
    assert_eq!(class.spec.unwrap().controller.as_deref(), Some("traefik.io/ingress-controller"));

    let storage = Api::<StorageClass>::all(client.clone()).get("nutanix-volume").await.unwrap();
    let default = storage.metadata.annotations.unwrap_or_default();
    assert_eq!(default.get("storageclass.kubernetes.io/is-default-class").map(String::as_str), Some("true"));

    // The CRD is served: a StripPrefix Middleware can be created and read back.
    let namespace = unique_namespace("middleware");
    create_namespace(&client, &namespace, json!({})).await;
    let gvk = GroupVersionKind::gvk("traefik.io", "v1alpha1", "Middleware");
    let middlewares: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &ApiResource::from_gvk(&gvk));
    let strip: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"name": "strip-dify"},
        "spec": {"stripPrefix": {"prefixes": ["/dify"]}}
    }))
    .unwrap();
    middlewares.create(&PostParams::default(), &strip).await.expect("create Middleware");
    let read = middlewares.get("strip-dify").await.unwrap();
    assert_eq!(read.data["spec"]["stripPrefix"]["prefixes"], json!(["/dify"]));
}

#[tokio::test]
async fn objects_are_stored_and_load_balancer_status_can_be_set() {
    let client = Testbed::shared().client().await;
    let namespace = unique_namespace("store");
    create_namespace(&client, &namespace, json!({})).await;
    let config: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}, "data": {"k": "v"}})).unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    maps.create(&PostParams::default(), &config).await.unwrap();
    assert_eq!(maps.get("probe").await.unwrap().data.unwrap()["k"], "v");

    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &service).await.unwrap();
    set_load_balancer_ip(&client, &namespace, "lb", "192.0.2.7").await;
    let status = Api::<Service>::namespaced(client, &namespace).get_status("lb").await.unwrap().status.unwrap();
    assert_eq!(status.load_balancer.unwrap().ingress.unwrap()[0].ip.as_deref(), Some("192.0.2.7"));
}

#[tokio::test]
async fn pod_security_admission_rejects_a_privileged_pod_in_a_restricted_namespace() {
    let client = Testbed::shared().client().await;
    let namespace = unique_namespace("psa");
    create_namespace(&client, &namespace, json!({"pod-security.kubernetes.io/enforce": "restricted"})).await;
    // No controller-manager runs, so the default ServiceAccount must be created by hand.
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    let error = Api::<Pod>::namespaced(client, &namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect_err("a privileged pod must be refused under enforce=restricted");
    assert!(error.to_string().contains("violates PodSecurity \"restricted:latest\""), "{error}");
}

/// A server's port must not be one an outgoing connection can hold: the kernel gives those their local port from
/// `ip_local_port_range`, and a Flux controller once lost its port to one between the pick and its bind.
#[test]
fn servers_get_distinct_ports_outside_the_range_outgoing_connections_use() {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let range: Vec<u16> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let ephemeral = range[0]..=range[1];
    let ports: Vec<u16> = (0..200).map(|_| dify_gitops_testbed::free_port().unwrap()).collect();
    let inside: Vec<&u16> = ports.iter().filter(|port| ephemeral.contains(port)).collect();
    assert!(inside.is_empty(), "ports inside the ephemeral range {ephemeral:?}: {inside:?}");
    let distinct: std::collections::BTreeSet<&u16> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len(), "one process got a port twice: {ports:?}");
    for port in &ports[..5] {
        std::net::TcpListener::bind(("127.0.0.1", *port)).unwrap_or_else(|e| panic!("port {port} is not free: {e}"));
    }
}

#[test]
fn teardown_leaves_no_process_port_or_directory() {
    let testbed = Testbed::start(&[]);
    eprintln!("local control plane start-up: {:.2} s", testbed.startup_seconds);
    let (dir, pids, server) = (testbed.dir.clone(), testbed.children.clone(), testbed.server.clone());
    let mut all = pids.clone();
    all.push(testbed.pid());
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    assert!(all.iter().all(|pid| process_alive(*pid)));
    assert!(dir.join("kubeconfig").exists());
    testbed.stop();

    let deadline = Instant::now() + Duration::from_secs(5);
    while all.iter().any(|pid| process_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!all.iter().any(|pid| process_alive(*pid)), "a testbed process survived teardown: {all:?}");
    assert!(!dir.exists(), "the testbed directory {} survived teardown", dir.display());
    let port: u16 = server.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers");
}

#[test]
fn a_killed_owner_still_gets_its_testbed_torn_down() {
    // The owner is a shell that starts the testbed watching the shell itself; then it dies by SIGKILL.
    let scratch = tempfile::tempdir().unwrap();
    let ready = scratch.path().join("ready");
    let script = format!("{} --watch-pid $$ > {} & wait", env!("CARGO_BIN_EXE_dify-gitops-testbed"), ready.display());
    let mut owner = std::process::Command::new("bash").args(["-c", &script]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&ready).map_or(true, |t| !t.ends_with('\n')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let line: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let mut pids: Vec<u32> = serde_json::from_value(line["children"].clone()).unwrap();
    pids.push(line["pid"].as_u64().unwrap() as u32);
    let dir = std::path::PathBuf::from(line["dir"].as_str().unwrap());
    assert!(pids.iter().all(|pid| process_alive(*pid)) && dir.exists());

    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|pid| process_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pids.iter().any(|pid| process_alive(*pid)), "a testbed process outlived its killed owner: {pids:?}");
    assert!(!dir.exists(), "the testbed directory {} outlived its killed owner", dir.display());
}
