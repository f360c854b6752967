//! Benchmark: `dify-gitops sync` of 100 environments in one config against one local kube-apiserver (the testbed:
//! 100 Traefik Services across 100 namespaces, their addresses patched as a load-balancer controller would), and
//! one bare ops repo: wall time and the child's peak RSS (wait4's ru_maxrss) of a first sync (100 overlays
//! created), a sync where every address moved, and a no-op sync; beside them, the same no-op as 100 runs of
//! `sync --env NAME`, the way one would script it without multi-environment sync. Then one more run with sync's
//! debug timings, to show which stage dominates. One run, one testbed; medians of RUNS.
//!
//!     cargo bench --bench environments

#[path = "../support/mod.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::ops::run;
use support::{Testbed, apply_yaml, set_load_balancer_ip, unique_namespace};

const ENVIRONMENTS: usize = 100;
const RUNS: usize = 3;

/// How one run of the CLI ended.
struct Measured {
    millis: f64,
    /// Peak resident set of the child, in MiB.
    peak_rss_mib: f64,
    code: i32,
    stderr: String,
}

#[tokio::main]
async fn main() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let prefix = unique_namespace("env");
    let names: Vec<String> = (0..ENVIRONMENTS).map(|i| format!("e{i:03}")).collect();
    let service = |name: &str| format!("traefik-{prefix}-{name}");
    let namespace = |name: &str| format!("{prefix}-{name}");
    let started = Instant::now();
    let manifests: String = names
        .iter()
        .map(|name| {
            let (service, namespace) = (service(name), namespace(name));
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\napiVersion: v1\nkind: Service\n\
                 metadata: {{name: {service}, namespace: {namespace}}}\nspec: {{type: LoadBalancer, ports: [{{port: 443}}]}}\n---\n"
            )
        })
        .collect();
    apply_yaml(&client, &manifests).await;
    let set_addresses = |octet: usize| {
        let (client, names) = (client.clone(), names.clone());
        async move {
            let patches = names.iter().enumerate().map(|(i, name)| {
                let (client, service, namespace) = (client.clone(), service(name), namespace(name));
                async move { set_load_balancer_ip(&client, &namespace, &service, &format!("10.{octet}.{i}.1")).await }
            });
            futures::future::join_all(patches).await;
        }
    };
    set_addresses(1).await;
    println!(
        "testbed: {ENVIRONMENTS} namespaces with a Traefik Service each in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("age.key");
    run("age-keygen", &["-o", key.to_str().unwrap()], None);
    let recipient = run("age-keygen", &["-y", key.to_str().unwrap()], None).trim().to_string();
    let mut config = String::from("environments:\n");
    for name in &names {
        config.push_str(&format!(
            "  {name}:\n    imageTag: 1.13.3\n    traefik: {{service: {}}}\n    recipients: [{recipient}]\n",
            service(name)
        ));
    }
    let kubeconfig = testbed.kubeconfig.clone();
    let sync = |remote: &Path, args: &[&str], log: Option<&str>| {
        let mut command = support::cli::command();
        command
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["sync", "-q", "--repo", remote.to_str().unwrap()])
            .args(args)
            .env("SOPS_AGE_KEY_FILE", &key)
            .env("XDG_CACHE_HOME", root.join("cache"));
        if let Some(filter) = log {
            command.env("DIFY_GITOPS_LOG", filter);
        }
        measure(&mut command)
    };

    let (mut create, mut moved, mut noop, mut rss) = (vec![], vec![], vec![], vec![]);
    let mut octet = 1;
    for run_index in 0..RUNS {
        let remote = seeded_remote(root, &format!("ops-{run_index}"), &config);
        let first = sync(&remote, &[], None);
        assert_eq!(first.code, 6, "the first sync creates 100 overlays: {}", first.stderr);
        let commits = run("git", &["rev-list", "--count", "main"], Some(&remote));
        assert_eq!(commits.trim(), (ENVIRONMENTS + 1).to_string(), "a commit per environment");
        octet += 1;
        set_addresses(octet).await;
        let all_moved = sync(&remote, &[], None);
        assert_eq!(all_moved.code, 6, "{}", all_moved.stderr);
        let nothing = sync(&remote, &[], None);
        assert_eq!(nothing.code, 0, "{}", nothing.stderr);
        for (list, measured) in [(&mut create, &first), (&mut moved, &all_moved), (&mut noop, &nothing)] {
            list.push(measured.millis);
            rss.push(measured.peak_rss_mib);
        }
    }

    // The same no-op, one environment at a time: what a script looping over `--env` would cost.
    let remote = root.join(format!("ops-{}.git", RUNS - 1));
    let started = Instant::now();
    let mut one_at_a_time_rss: f64 = 0.0;
    for name in &names {
        let one = sync(&remote, &["--env", name], None);
        assert_eq!(one.code, 0, "{}", one.stderr);
        one_at_a_time_rss = one_at_a_time_rss.max(one.peak_rss_mib);
    }
    let one_at_a_time = started.elapsed().as_secs_f64() * 1000.0;

    // Where the time goes: sync's own debug timings of each stage, for a change and for a no-op.
    octet += 1;
    set_addresses(octet).await;
    let changed = sync(&remote, &[], Some("dify_gitops=debug"));
    let unchanged = sync(&remote, &[], Some("dify_gitops=debug"));

    let peak = rss.iter().copied().fold(0.0, f64::max);
    println!("\n{ENVIRONMENTS} environments, one kube-apiserver, one bare ops repo; median of {RUNS} runs");
    println!("{:<58} {:>9} {:>9}", "", "wall ms", "goal ms");
    println!(
        "{:<58} {:>9.0} {:>9}",
        "sync: first run, 100 overlays created (100 commits, 1 push)",
        median(&mut create),
        10_000
    );
    println!("{:<58} {:>9.0} {:>9}", "sync: every address moved (100 commits, 1 push)", median(&mut moved), 10_000);
    println!("{:<58} {:>9.0} {:>9}", "sync: nothing changed", median(&mut noop), 2_000);
    println!(
        "{:<58} {:>9.0} {:>9}   ratio {:.1}x",
        "100 x sync --env NAME, nothing changed",
        one_at_a_time,
        "-",
        one_at_a_time / median(&mut noop)
    );
    println!(
        "peak RSS of the dify-gitops child: {peak:.1} MiB over every run above (goal <= 40 MiB); one environment: \
         {one_at_a_time_rss:.1} MiB"
    );
    println!("\nstages (sync's debug timings, ms; per environment in brackets)");
    println!("{:<44} {:>16} {:>16}", "", "every address", "nothing changed");
    for (label, message) in [
        ("open the ops repo (fetch) and its config", "opened the ops repo and its config"),
        ("kube: connect, discover 100 addresses", "discovered every environment's address"),
        ("plan: read, decrypt/encrypt (sops), diff", "planned every environment"),
        ("git: write and commit", "wrote and committed the changed environments"),
        ("git: push", "pushed"),
    ] {
        let cell = |log: &str| match stage_ms(log, message) {
            Some(ms) => format!("{ms:>6} ({:>5.1})", ms as f64 / ENVIRONMENTS as f64),
            None => format!("{:>14}", "-"),
        };
        println!("{label:<44} {:>16} {:>16}", cell(&changed.stderr), cell(&unchanged.stderr));
    }
    println!("{:<44} {:>16.0} {:>16.0}", "whole run (wall)", changed.millis, unchanged.millis);
}

/// A bare ops repo under `root` whose main branch holds `config` as dify-gitops.yaml.
fn seeded_remote(root: &Path, name: &str, config: &str) -> std::path::PathBuf {
    let remote = root.join(format!("{name}.git"));
    let seed = root.join(format!("{name}-seed"));
    run("git", &["init", "-q", "--bare", "--initial-branch=main", remote.to_str().unwrap()], None);
    run("git", &["clone", "-q", remote.to_str().unwrap(), seed.to_str().unwrap()], None);
    std::fs::write(seed.join("dify-gitops.yaml"), config).unwrap();
    run("git", &["add", "."], Some(&seed));
    run("git", &["commit", "-q", "-m", "config"], Some(&seed));
    run("git", &["push", "-q", "origin", "HEAD:main"], Some(&seed));
    remote
}

/// Runs `command` to its end: wall time, and the peak RSS the kernel recorded for that one child (wait4).
// wait4 reaps the child (std's `wait` has no rusage to give), so `Child::wait` is never called.
#[allow(clippy::zombie_processes)]
fn measure(command: &mut Command) -> Measured {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("running dify-gitops");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with pointers to live locals; std's Child is not waited on after.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    assert!(libc::WIFEXITED(status), "dify-gitops ended by a signal: {stderr}");
    Measured { millis, peak_rss_mib: usage.ru_maxrss as f64 / 1024.0, code: libc::WEXITSTATUS(status), stderr }
}

/// The `ms=` of the last debug line with `message` (ANSI styling removed: tracing colours fields even in a pipe).
fn stage_ms(log: &str, message: &str) -> Option<u64> {
    let plain = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap().replace_all(log, "");
    let line = plain.lines().rfind(|l| l.contains(&format!("DEBUG {message} ")))?;
    let ms = line.split("ms=").nth(1)?;
    ms.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
