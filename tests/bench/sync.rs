//! Benchmark: `dify-gitops sync` (a change, and a no-op) beside the shell pipeline doing the same work
//! (`git pull`, `kubectl get -o jsonpath`, `sops -d`/`sops -e`, `git commit`, `git push`), and SOPS encryption of
//! the same Secret in-process beside `sops -e`. One run, one testbed, one bare ops repo; medians of N runs.
//! Both sides run warm (sync's cached clone, the pipeline's kept working copy) and cold (a fresh clone each run).
//!
//!     cargo bench --bench sync

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use support::{Testbed, set_load_balancer_ip, unique_namespace};

const RUNS: usize = 15;

#[tokio::main]
async fn main() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let service = unique_namespace("traefik-bench");
    let namespace = support::load_balancer(&client, "bench-ws", &service).await;
    set_load_balancer_ip(&client, &namespace, &service, "192.0.2.1").await;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("age.key");
    sh(root, &format!("age-keygen -o {} 2>/dev/null && chmod 600 {0}", key.display()));
    let recipient = sh(root, &format!("age-keygen -y {}", key.display())).trim().to_string();
    sh(root, "git init -q --bare --initial-branch=main ops.git && git clone -q ops.git seed 2>/dev/null");
    std::fs::write(
        root.join("seed/dify-gitops.yaml"),
        format!("environments:\n  prod:\n    imageTag: 1.13.3\n    traefik: {{service: {service}}}\n    recipients: [{recipient}]\n"),
    )
    .unwrap();
    sh(&root.join("seed"), "git add . && git commit -qm config && git push -q origin HEAD:main");
    let kubeconfig = testbed.kubeconfig.display().to_string();
    let sync = |cached: bool| {
        let start = Instant::now();
        let status = support::cli::command()
            .args(["--kubeconfig", &kubeconfig, "sync", "-q", "--repo", root.join("ops.git").to_str().unwrap()])
            .args(if cached { &[][..] } else { &["--no-cache"][..] })
            .env("SOPS_AGE_KEY_FILE", &key)
            .env("XDG_CACHE_HOME", root.join("cache"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        (start.elapsed().as_secs_f64() * 1000.0, status.code())
    };
    assert_eq!(sync(true).1, Some(6), "the first sync creates the overlay");

    // The same work in shell: bring a working copy up to date (warm: the one kept in $root/work; cold: a fresh
    // clone), read the address, decrypt and re-encrypt the Secret, write, commit, push.
    sh(root, &format!("git clone -q {} work", root.join("ops.git").display()));
    let pipeline = |warm: bool| {
        let checkout = if warm {
            "cd work && git fetch -q origin && git reset -q --hard origin/main && git clean -qfdx && cd apps/prod/dify"
        } else {
            r#"git clone -q ops.git "$d/ops" && cd "$d/ops/apps/prod/dify""#
        };
        format!(
            r#"set -e
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
{checkout}
ip=$(kubectl --kubeconfig {kubeconfig} -n {namespace} get service {service} -o jsonpath='{{.status.loadBalancer.ingress[0].ip}}')
sed -i "s/host: \".*\"/host: \"$ip\"/" dify-values.yaml
if git diff --quiet; then exit 0; fi
SOPS_AGE_KEY_FILE={key} sops -d dify-secrets.sops.yaml > "$d/plain.yaml"
sops -e --encrypted-regex '^(data|stringData)$' --age {recipient} "$d/plain.yaml" > dify-secrets.sops.yaml
git commit -qam "dify/prod: external.host -> $ip" && git push -q origin HEAD:main"#,
            key = key.display(),
        )
    };
    let run_pipeline = |warm: bool| {
        let start = Instant::now();
        sh(root, &pipeline(warm));
        start.elapsed().as_secs_f64() * 1000.0
    };

    // [warm, cold] x [change, no-op], for each side.
    let (mut ours, mut shell) = ([[vec![], vec![]], [vec![], vec![]]], [[vec![], vec![]], [vec![], vec![]]]);
    let mut address = 0;
    for _ in 0..RUNS {
        for (temperature, warm) in [(0, true), (1, false)] {
            address += 1;
            set_load_balancer_ip(&client, &namespace, &service, &format!("192.0.2.{address}")).await;
            ours[temperature][0].push(sync(warm).0);
            ours[temperature][1].push(sync(warm).0);
            address += 1;
            set_load_balancer_ip(&client, &namespace, &service, &format!("192.0.2.{address}")).await;
            shell[temperature][0].push(run_pipeline(warm));
            shell[temperature][1].push(run_pipeline(warm));
        }
    }

    // SOPS encryption of the same document: in-process beside the sops CLI.
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dify-secrets", "namespace": "dify"},
        "type": "Opaque",
        "stringData": (0..7).map(|i| (format!("key-{i}"), serde_json::Value::String("x".repeat(64)))).collect::<serde_json::Map<_, _>>()
    });
    let recipients = dify_gitops::sops::Recipients::parse([recipient.as_str()]).unwrap();
    let plain = root.join("plain.yaml");
    std::fs::write(&plain, serde_json::to_string(&manifest).unwrap()).unwrap();
    let (mut in_process, mut cli) = (vec![], vec![]);
    for _ in 0..20 {
        let start = Instant::now();
        dify_gitops::sops::encrypt(&manifest, &recipients, SystemTime::now()).unwrap();
        in_process.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        sh(
            root,
            &format!(
                "sops -e --input-type json --output-type yaml --encrypted-regex '^(data|stringData)$' --age {recipient} {} >/dev/null",
                plain.display()
            ),
        );
        cli.push(start.elapsed().as_secs_f64() * 1000.0);
    }

    println!("median wall time over {RUNS} runs (ms); one bare ops repo, one local kube-apiserver");
    println!("{:<44} {:>10} {:>10} {:>8}", "", "dify-gitops", "shell", "ratio");
    let [[warm_change, warm_noop], [cold_change, cold_noop]] = &mut ours;
    let [[shell_warm_change, shell_warm_noop], [shell_cold_change, shell_cold_noop]] = &mut shell;
    row("warm: sync, address changed (commit + push)", warm_change, shell_warm_change);
    row("warm: sync, nothing changed", warm_noop, shell_warm_noop);
    row("cold: sync --no-cache / fresh clone, changed", cold_change, shell_cold_change);
    row("cold: sync --no-cache / fresh clone, no-op", cold_noop, shell_cold_noop);
    row("SOPS-encrypt the Secret (in-process vs sops -e)", &mut in_process, &mut cli);
    println!("goals: sync <= 300 ms warm, no-op <= 150 ms, >= 5x faster than the pipeline");
}

fn row(label: &str, ours: &mut [f64], theirs: &mut [f64]) {
    let (a, b) = (median(ours), median(theirs));
    println!("{label:<44} {a:>10.1} {b:>10.1} {:>7.1}x", b / a);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@localhost")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
