//! Benchmark: latency from the Service status patch to `dify-gitops discover` printing the address (a watch),
//! beside a `kubectl get -o jsonpath` loop polling every second, 20 trials each, in one run on one testbed.
//!
//!     cargo bench --bench discover

#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Testbed, apply_yaml, set_load_balancer_ip, unique_namespace};

const TRIALS: usize = 20;

#[tokio::main]
async fn main() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let namespace = unique_namespace("bench");
    apply_yaml(&client, &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")).await;
    let kubeconfig = testbed.kubeconfig.to_str().unwrap().to_string();

    let mut watch = Vec::new();
    let mut poll = Vec::new();
    for trial in 0..TRIALS {
        // dify-gitops discover: patch as soon as it says it is watching.
        let name = service(&client, &namespace, &format!("w{trial}")).await;
        let mut child = support::cli::command()
            .args(["--kubeconfig", &kubeconfig, "discover", "-v", "--timeout", "60s", "--traefik-service", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("waiting for a load-balancer address") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "discover ended before watching");
        }
        let patched = Instant::now();
        set_load_balancer_ip(&client, &namespace, &name, "192.0.2.77").await;
        watch.push(first_line_after(&mut child, patched));

        // kubectl polling at 1 s: patch at a random point of its sleep, as a real address change would come.
        let name = service(&client, &namespace, &format!("p{trial}")).await;
        let script = format!(
            "until ip=$(kubectl --kubeconfig {kubeconfig} -n {namespace} get service {name} \
             -o jsonpath='{{.status.loadBalancer.ingress[0].ip}}') && [ -n \"$ip\" ]; do sleep 1; done; echo \"$ip\""
        );
        let mut child = Command::new("bash").args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(1000 + (trial as u64 * 37) % 1000)).await;
        let patched = Instant::now();
        set_load_balancer_ip(&client, &namespace, &name, "192.0.2.77").await;
        poll.push(first_line_after(&mut child, patched));
    }
    let (w50, p50) = (percentile(&mut watch, 50), percentile(&mut poll, 50));
    println!("latency from status patch to the address printed ({TRIALS} trials each)");
    println!("{:<34} {:>9} {:>9}", "", "p50", "p90");
    println!("{:<34} {:>7.0}ms {:>7.0}ms", "dify-gitops discover (watch)", w50, percentile(&mut watch, 90));
    println!("{:<34} {:>7.0}ms {:>7.0}ms", "kubectl get -o jsonpath, 1 s loop", p50, percentile(&mut poll, 90));
    println!("ratio (poll p50 / watch p50): {:.1}x; goal: watch p50 <= 200 ms", p50 / w50);
}

async fn service(client: &kube::Client, namespace: &str, name: &str) -> String {
    apply_yaml(
        client,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n"
        ),
    )
    .await;
    name.to_string()
}

/// Milliseconds from `since` until the child prints its first stdout line.
fn first_line_after(child: &mut std::process::Child, since: Instant) -> f64 {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let elapsed = since.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(line.trim(), "192.0.2.77");
    child.wait().unwrap();
    elapsed
}

fn percentile(values: &mut [f64], p: usize) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) * p / 100]
}
