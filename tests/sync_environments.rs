//! `dify-gitops sync` over every environment of the config: each environment's Traefik Service on the testbed's
//! real kube-apiserver, the ops repo behind the real git smart-HTTPS server of tests/support (which records every
//! request, so a push is counted as the POST to git-receive-pack it is), and the real `git` CLI moving the remote.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::git_server::{GitHttpServer, GitHttpsServer};
use support::ops::{OpsRemote as Ops, git, run};
use support::{Testbed, load_balancer, set_load_balancer_ip, unique_namespace};

const TOKEN: &str = "ghp_MultiEnvironmentTestToken0123456789";
const ENVIRONMENTS: [&str; 3] = ["edge", "lab", "prod"];

/// Three environments on the shared testbed, each with a Traefik Service of its own, and their ops repo.
struct Fleet {
    ops: Ops,
    server: GitHttpsServer,
    client: kube::Client,
    /// (namespace, service) of each of [`ENVIRONMENTS`].
    services: Vec<(String, String)>,
    kubeconfig: PathBuf,
}

impl Fleet {
    /// `context` gives an environment a kubeconfig context of its own (by name), else the current one is used.
    async fn new(context: impl Fn(&str) -> Option<&'static str>) -> Fleet {
        let testbed = Testbed::shared();
        let client = testbed.client().await;
        let mut services = Vec::new();
        for (i, env) in ENVIRONMENTS.iter().enumerate() {
            let service = unique_namespace(&format!("traefik-{env}"));
            let namespace = load_balancer(&client, &format!("ws-{env}"), &service).await;
            set_load_balancer_ip(&client, &namespace, &service, &format!("198.51.100.{}", i + 1)).await;
            services.push((namespace, service));
        }
        let config = |recipient: &str| {
            let mut text = String::from("environments:\n");
            for (env, (_, service)) in ENVIRONMENTS.iter().zip(&services) {
                text.push_str(&format!(
                    "  {env}:\n    imageTag: 1.13.3\n    traefik: {{service: {service}}}\n    recipients: [{recipient}]\n"
                ));
                if let Some(context) = context(env) {
                    text.push_str(&format!("    context: {context}\n"));
                }
            }
            text
        };
        let ops = Ops::with_config(|recipient, _| config(recipient));
        let server = GitHttpServer::start_https(ops.dir.path(), TOKEN);
        let kubeconfig = with_unreachable_context(&testbed.kubeconfig, ops.dir.path());
        Fleet { ops, server, client, services, kubeconfig }
    }

    fn url(&self) -> String {
        format!("{}/ops.git", self.server.url)
    }

    /// `dify-gitops <args> --repo <https url>` with the operator's identity, the token and the server's CA.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = support::cli::command();
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .args(["--repo", &self.url()])
            .env("XDG_CACHE_HOME", self.ops.cache_home())
            .env("SOPS_AGE_KEY_FILE", self.ops.key())
            .env("DIFY_GITOPS_GIT_TOKEN", TOKEN)
            .env("GIT_SSL_CAINFO", &self.server.ca_file);
        command
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        support::cli::run(&mut self.command(args)).parts()
    }

    /// Pushes begun: each asks for the remote's refs first (libgit2 refuses a push that is not a fast-forward
    /// there, before sending anything).
    fn push_attempts(&self) -> usize {
        self.requests_to("GET", "/info/refs?service=git-receive-pack")
    }

    /// Pushes that sent commits: each is one POST to git-receive-pack.
    fn pushes(&self) -> usize {
        self.requests_to("POST", "/git-receive-pack")
    }

    fn requests_to(&self, method: &str, path: &str) -> usize {
        self.server.requests().iter().filter(|r| r.method == method && r.target.ends_with(path)).count()
    }

    /// Subjects of the remote's main branch, oldest first.
    fn subjects(&self) -> Vec<String> {
        let log = git(&self.ops.remote(), &["log", "--reverse", "--format=%s", "main"]);
        log.lines().map(str::to_string).collect()
    }

    /// The files each commit of the remote's main branch touched, oldest first, without the first (the config).
    fn files_per_commit(&self) -> Vec<Vec<String>> {
        let log = git(&self.ops.remote(), &["log", "--reverse", "--format=tformat:@commit", "--name-only", "main"]);
        let commits: Vec<Vec<String>> = log
            .split("@commit\n")
            .filter(|c| !c.trim().is_empty())
            .map(|c| c.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
            .collect();
        commits[1..].to_vec()
    }
}

/// A copy of the testbed's kubeconfig with one more context, `unreachable`: the testbed's user at a port where
/// no API server listens (as a cluster that is down would be).
fn with_unreachable_context(kubeconfig: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("kubeconfig");
    std::fs::copy(kubeconfig, &copy).unwrap();
    let kubectl = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", copy.to_str().unwrap()];
        all.extend_from_slice(args);
        run("kubectl", &all, None)
    };
    let user = kubectl(&["config", "view", "-o", "jsonpath={.contexts[0].context.user}"]);
    kubectl(&["config", "set-cluster", "unreachable", "--server=https://127.0.0.1:1", "--insecure-skip-tls-verify"]);
    kubectl(&["config", "set-context", "unreachable", "--cluster=unreachable", &format!("--user={user}")]);
    copy
}

#[tokio::test]
async fn every_environment_is_one_push_with_a_commit_each_naming_its_change() {
    let fleet = Fleet::new(|_| None).await;
    let (code, stdout, stderr) = fleet.run(&["sync"]);
    assert_eq!(code, 6, "{stdout}{stderr}\n{}", fleet.server.log());
    assert_eq!((fleet.push_attempts(), fleet.pushes()), (1, 1), "one push for three:\n{}", fleet.server.log());
    let subjects = fleet.subjects();
    assert_eq!(subjects.len(), 4, "config + a commit per environment: {subjects:?}");
    for (i, env) in ENVIRONMENTS.iter().enumerate() {
        let expected = format!(
            "dify/{env}: create overlay (external.host = 198.51.100.{}, images.dify.tag = 1.13.3, {} secrets generated)",
            i + 1,
            dify_gitops::overlay::SECRET_NAMES.len()
        );
        assert_eq!(subjects[i + 1], expected);
        assert!(stdout.contains(&format!("dify/{env}: ")), "{stdout}");
    }
    for (env, files) in ENVIRONMENTS.iter().zip(fleet.files_per_commit()) {
        assert!(files.iter().all(|f| f.starts_with(&format!("apps/{env}/dify/"))), "{env}'s commit: {files:?}");
    }

    // Nothing changed anywhere: no commit, and no push at all.
    let (code, stdout, stderr) = fleet.run(&["sync"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(fleet.push_attempts(), 1, "a no-op sync pushes nothing:\n{}", fleet.server.log());
    assert!(stdout.contains("dify/lab: unchanged (external.host = 198.51.100.2)"), "{stdout}");

    // One environment's address moves: one commit for it alone, named, in one more push.
    let (namespace, service) = &fleet.services[1];
    set_load_balancer_ip(&fleet.client, namespace, service, "198.51.100.22").await;
    let (code, stdout, stderr) = fleet.run(&["diff", "--output", "json"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["changed"], true);
    let changed: Vec<&str> = report["environments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["changed"] == true)
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["lab"], "{stdout}");
    let (code, stdout, stderr) = fleet.run(&["sync"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!((fleet.push_attempts(), fleet.pushes()), (2, 2));
    assert_eq!(fleet.subjects().last().unwrap(), "dify/lab: external.host 198.51.100.2 -> 198.51.100.22");
    assert_eq!(fleet.subjects().len(), 5);
    assert!(stdout.contains("dify/edge: unchanged") && stdout.contains("dify/prod: unchanged"), "{stdout}");
}

#[tokio::test]
async fn a_push_rejected_because_the_remote_moved_is_retried_with_every_environment() {
    let fleet = Fleet::new(|_| None).await;
    // prod's Service has no address yet: sync has fetched the remote and waits for it.
    let (_, service) = &fleet.services[2];
    let fresh = unique_namespace("traefik-prod-late");
    let late_namespace = load_balancer(&fleet.client, "ws-prod-late", &fresh).await;
    let config = git(&fleet.ops.remote(), &["show", "main:dify-gitops.yaml"]).replace(service.as_str(), &fresh);
    let seed = fleet.ops.dir.path().join("other-operator");
    run("git", &["clone", "-q", fleet.ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
    std::fs::write(seed.join("dify-gitops.yaml"), config).unwrap();
    git(&seed, &["commit", "-qam", "prod: the Traefik Service moved"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);

    let mut child = fleet.command(&["sync", "-v"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("waiting for a load-balancer address") {
        assert!(stderr.read_line(&mut log).unwrap() > 0, "sync ended before waiting for prod's address: {log}");
    }
    // Another operator pushes while sync waits: sync's first push is rejected.
    std::fs::write(seed.join("README.md"), "ops\n").unwrap();
    git(&seed, &["add", "README.md"]);
    git(&seed, &["commit", "-qm", "docs: another operator's change"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    set_load_balancer_ip(&fleet.client, &late_namespace, &fresh, "198.51.100.33").await;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(6), "{stdout}{log}\n{}", fleet.server.log());

    assert!(log.contains("push rejected"), "the first push was rejected and retried: {log}");
    assert_eq!((fleet.push_attempts(), fleet.pushes()), (2, 1), "{}", fleet.server.log());
    let subjects = fleet.subjects();
    assert_eq!(subjects.len(), 6, "{subjects:?}");
    assert_eq!(subjects[2], "docs: another operator's change", "kept, under sync's commits: {subjects:?}");
    for (env, subject) in ENVIRONMENTS.iter().zip(&subjects[3..]) {
        assert!(subject.starts_with(&format!("dify/{env}: create overlay")), "{subjects:?}");
    }
    assert!(subjects[5].contains("external.host = 198.51.100.33"), "{subjects:?}");
    assert_eq!(fleet.ops.show("README.md"), "ops\n");
}

#[tokio::test]
async fn one_environment_that_fails_leaves_the_remote_untouched_and_is_named() {
    // lab's cluster is down.
    let fleet = Fleet::new(|env| (env == "lab").then_some("unreachable")).await;
    let (code, stdout, stderr) = fleet.run(&["sync"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("1 of 3 environments failed, so none was written or pushed"), "{stderr}");
    assert!(stderr.contains("environment lab (context unreachable): "), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("environment edge") && !stderr.contains("environment prod"), "{stderr}");
    assert_eq!((fleet.push_attempts(), fleet.subjects().len()), (0, 1), "nothing pushed:\n{}", fleet.server.log());
    assert!(stdout.is_empty(), "{stdout}");

    // The two that work sync alone with --env; then lab comes back and joins.
    for env in ["edge", "prod"] {
        assert_eq!(fleet.run(&["sync", "--env", env]).0, 6);
    }
    let (code, _, stderr) = fleet.run(&["sync", "--env", "lab"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("environments failed"), "one environment's error is its own: {stderr}");

    // lab is back, and prod's Secret no longer decrypts: planning fails there, and edge's new address waits with it.
    let seed = fleet.ops.dir.path().join("tamper");
    run("git", &["clone", "-q", fleet.ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
    let file = seed.join("apps/prod/dify/dify-secrets.sops.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.find("redis-password: ENC[AES256_GCM,data:").unwrap() + "redis-password: ENC[AES256_GCM,data:".len();
    let flipped = if &text[at..at + 1] == "A" { "B" } else { "A" };
    std::fs::write(&file, format!("{}{flipped}{}", &text[..at], &text[at + 1..])).unwrap();
    let config = std::fs::read_to_string(seed.join("dify-gitops.yaml")).unwrap();
    std::fs::write(seed.join("dify-gitops.yaml"), config.replace("    context: unreachable\n", "")).unwrap();
    git(&seed, &["commit", "-qam", "lab is back; prod's Secret corrupted"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    let (namespace, service) = &fleet.services[0];
    set_load_balancer_ip(&fleet.client, namespace, service, "198.51.100.44").await;
    let before = (fleet.push_attempts(), fleet.subjects());
    let (code, _, stderr) = fleet.run(&["sync"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("1 of 3 environments failed"), "{stderr}");
    assert!(stderr.contains("environment prod: cannot decrypt the existing dify-secrets.sops.yaml"), "{stderr}");
    assert_eq!((fleet.push_attempts(), fleet.subjects()), before, "edge's new address was not pushed either");
}

#[tokio::test]
async fn failures_of_one_kind_keep_their_exit_code_and_mixed_ones_are_1() {
    let fleet = Fleet::new(|env| (env == "lab").then_some("unreachable")).await;
    // prod's Service loses its address: discovery times out there (exit 4 when it is the only failure).
    let prod = unique_namespace("traefik-prod-none");
    load_balancer(&fleet.client, "ws-prod-none", &prod).await;
    let (_, service) = &fleet.services[2];
    let seed = fleet.ops.dir.path().join("edit");
    run("git", &["clone", "-q", fleet.ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
    let config = std::fs::read_to_string(seed.join("dify-gitops.yaml")).unwrap().replace(service.as_str(), &prod);
    std::fs::write(seed.join("dify-gitops.yaml"), config.replace("    context: unreachable\n", "")).unwrap();
    git(&seed, &["commit", "-qam", "prod has no address; lab is reachable"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    let (code, _, stderr) = fleet.run(&["sync", "--timeout", "1s"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("1 of 3 environments failed") && stderr.contains("has no load-balancer address"),
        "{stderr}"
    );

    std::fs::write(seed.join("dify-gitops.yaml"), config).unwrap();
    git(&seed, &["commit", "-qam", "lab is down again"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    let (code, _, stderr) = fleet.run(&["sync", "--timeout", "1s"]);
    assert_eq!(code, 1, "a timeout and an unreachable cluster: {stderr}");
    assert!(stderr.contains("2 of 3 environments failed"), "{stderr}");
    assert!(stderr.contains("environment lab (context unreachable): "), "{stderr}");
    assert!(stderr.contains("environment prod: "), "{stderr}");
    assert_eq!(fleet.push_attempts(), 0);
}

#[tokio::test]
async fn flags_that_describe_one_environment_need_env_when_there_are_several() {
    let fleet = Fleet::new(|_| None).await;
    for flags in [&["--host", "192.0.2.10"][..], &["--image-tag", "1.14.2"], &["--context", "x", "--host", "192.0.2.1"]]
    {
        let (code, stdout, stderr) = fleet.run(&[&["sync"][..], flags].concat());
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains("applies to one environment") && stderr.contains("(edge, lab, prod)"), "{stderr}");
        assert!(stderr.contains(flags[0]) && stderr.contains("--env NAME"), "{stderr}");
    }
    assert_eq!(fleet.subjects().len(), 1);
    let (code, stdout, stderr) = fleet.run(&["sync", "--env", "lab", "--host", "192.0.2.10"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(fleet.subjects().last().unwrap().split(" (").next(), Some("dify/lab: create overlay"));
    assert_eq!(fleet.subjects().len(), 2);
}

#[tokio::test]
async fn render_writes_every_environment_into_the_working_copy() {
    let fleet = Fleet::new(|_| None).await;
    let checkout = fleet.ops.dir.path().join("checkout");
    run("git", &["clone", "-q", fleet.ops.remote().to_str().unwrap(), checkout.to_str().unwrap()], None);
    let mut command = support::cli::command();
    command.arg("--kubeconfig").arg(&fleet.kubeconfig).args(["render", "--repo-dir"]).arg(&checkout);
    let (code, stdout, stderr) = support::cli::run(command.env("SOPS_AGE_KEY_FILE", fleet.ops.key())).parts();
    assert_eq!(code, 6, "{stdout}{stderr}");
    for (i, env) in ENVIRONMENTS.iter().enumerate() {
        let values = std::fs::read_to_string(checkout.join(format!("apps/{env}/dify/dify-values.yaml"))).unwrap();
        assert!(values.contains(&format!("host: \"198.51.100.{}\"", i + 1)), "{env}: {values}");
        assert!(checkout.join(format!("apps/{env}/dify/dify-secrets.sops.yaml")).exists(), "{env}");
    }
    assert_eq!(git(&checkout, &["rev-list", "--count", "HEAD"]).trim(), "1", "render commits nothing");
}
