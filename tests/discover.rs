//! `dify-gitops discover` against a real kube-apiserver: it finds the Traefik Service and reports the
//! load-balancer address the moment it is assigned; ambiguity, absence and timeouts are clear errors.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Testbed, apply_yaml, set_load_balancer_ip, unique_namespace};

/// A LoadBalancer Service named `name` in a fresh namespace of the shared cluster; returns the namespace.
async fn load_balancer(client: &kube::Client, name: &str) -> String {
    support::load_balancer(client, "discover", name).await
}

#[tokio::test]
async fn an_address_assigned_after_a_delay_is_reported_with_the_wait() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let name = unique_namespace("traefik-late");
    let namespace = load_balancer(&client, &name).await;
    let patcher = {
        let (client, namespace, name) = (client.clone(), namespace.clone(), name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            set_load_balancer_ip(&client, &namespace, &name, "192.0.2.44").await;
        })
    };
    let run = tokio::task::spawn_blocking(move || {
        testbed.dify_gitops(&["discover", "--traefik-service", &name, "--timeout", "30s", "--output", "json"])
    });
    let output = run.await.unwrap();
    patcher.await.unwrap();
    assert_eq!(output.code, 0, "{output:?}");
    let result = output.json();
    assert_eq!(result["address"], "192.0.2.44");
    assert_eq!(result["kind"], "ip");
    assert_eq!(result["namespace"], json!(namespace));
    let waited = result["waited_seconds"].as_f64().unwrap();
    assert!((1.9..10.0).contains(&waited), "waited {waited} s for an address patched after 2 s");
}

#[tokio::test]
async fn an_address_already_there_is_printed_as_plain_text() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let name = unique_namespace("traefik-ready");
    let namespace = load_balancer(&client, &name).await;
    set_load_balancer_ip(&client, &namespace, &name, "198.51.100.7").await;
    let output = testbed.dify_gitops(&["discover", "--traefik-service", &name, "--traefik-namespace", &namespace]);
    assert_eq!((output.code, output.stdout.as_str()), (0, "198.51.100.7\n"), "{output:?}");
}

#[tokio::test]
async fn a_hostname_is_used_when_the_load_balancer_gives_no_ip() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let name = unique_namespace("traefik-host");
    let namespace = load_balancer(&client, &name).await;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client, &namespace);
    let status = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.test"}]}}});
    services.patch_status(&name, &Default::default(), &kube::api::Patch::Merge(&status)).await.unwrap();
    let output = testbed.dify_gitops(&["discover", "--traefik-service", &name, "--output", "json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(
        (output.json()["address"].as_str(), output.json()["kind"].as_str()),
        (Some("lb.example.test"), Some("hostname"))
    );
}

#[tokio::test]
async fn no_address_within_the_timeout_exits_4_naming_the_kubectl_command() {
    let testbed = Testbed::shared();
    let name = unique_namespace("traefik-never");
    let namespace = load_balancer(&testbed.client().await, &name).await;
    let output = testbed.dify_gitops(&["discover", "--traefik-service", &name, "--timeout", "2s"]);
    assert_eq!(output.code, 4, "{output:?}");
    assert!(output.stderr.contains(&format!("`kubectl -n {namespace} describe service {name}`")), "{}", output.stderr);
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn two_services_of_that_name_are_an_error_listing_both() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let name = unique_namespace("traefik-twice");
    let first = load_balancer(&client, &name).await;
    let second = load_balancer(&client, &name).await;
    let output = testbed.dify_gitops(&["discover", "--traefik-service", &name, "--timeout", "2s"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains(&format!("{first}/{name}")) && output.stderr.contains(&format!("{second}/{name}")));
    assert!(output.stderr.contains("--traefik-namespace"), "{}", output.stderr);
}

#[tokio::test]
async fn a_missing_service_in_the_given_namespace_names_both() {
    let testbed = Testbed::shared();
    let output = testbed.dify_gitops(&["discover", "--traefik-namespace", "kommander", "--timeout", "2s"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("Service kommander/kommander-traefik not found"), "{}", output.stderr);
}

#[tokio::test]
async fn without_a_service_of_that_name_the_one_labelled_traefik_is_used() {
    let testbed = Testbed::start(&[]);
    let client = testbed.client().await;
    apply_yaml(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kommander}\n---\napiVersion: v1\nkind: Service\n\
         metadata: {name: traefik-main, namespace: kommander, labels: {app.kubernetes.io/name: traefik}}\n\
         spec: {type: LoadBalancer, ports: [{port: 443}]}\n",
    )
    .await;
    set_load_balancer_ip(&client, "kommander", "traefik-main", "192.0.2.50").await;
    let output = testbed.dify_gitops(&["discover", "--output", "json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.json()["service"], "traefik-main");

    let empty = Testbed::start(&[]);
    let output = empty.dify_gitops(&["discover", "--timeout", "1s"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("no Traefik Service found"), "{}", output.stderr);
}
