//! Self-test of the HTTPS git server in `tests/support/git_server.rs` with the real `git` CLI (curl's TLS and auth,
//! not libgit2's), so a failing `dify-gitops sync --repo https://…` test points at the client, not at the server:
//! a push with the token moves the bare repository's `main`, a wrong token gets 401 and changes nothing, and a
//! client that does not trust the server's CA fails on the certificate before any HTTP request.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::git_server::{GitHttpServer, GitHttpsServer};

const TOKEN: &str = "t0ken-for-the-ops-repo";

/// A bare `ops.git` under a fresh root, the HTTPS server for it, and an empty HOME for git.
fn setup() -> (tempfile::TempDir, GitHttpsServer) {
    let work = tempfile::Builder::new().prefix("dify-gitops-git-https-test.").tempdir().unwrap();
    for dir in ["home", "root"] {
        std::fs::create_dir(work.path().join(dir)).unwrap();
    }
    succeeded(git(work.path(), &work.path().join("root"), &["init", "--bare", "-b", "main", "ops.git"]));
    let server = GitHttpServer::start_https(&work.path().join("root"), TOKEN);
    (work, server)
}

/// `git args…` in `dir` with HOME under `work`, no system config, no prompts and no inherited CA settings; a
/// stalled transfer fails after a few seconds instead of hanging the test.
fn git(work: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=dify-gitops test", "-c", "user.email=test@dify-gitops.invalid"])
        .args(["-c", "commit.gpgsign=false", "-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=10"])
        .args(args)
        .env("HOME", work.join("home"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_CONFIG_GLOBAL")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_NO_VERIFY")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("running git")
}

fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "git failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The commit `main` points at in the served bare repository, if any.
fn served_main(work: &Path) -> Option<String> {
    let output = git(work, &work.join("root/ops.git"), &["rev-parse", "--verify", "--quiet", "refs/heads/main"]);
    output.status.success().then(|| String::from_utf8(output.stdout).unwrap().trim().to_string())
}

/// `https://<user>:<password>@127.0.0.1:<port>/ops.git`.
fn ops_url(server: &GitHttpsServer, password: &str) -> String {
    format!("https://x-access-token:{password}@{}/ops.git", server.url.trim_start_matches("https://"))
}

/// Clones `ops.git` into `work/clone` and commits one file there; returns the clone's HEAD.
fn clone_and_commit(work: &Path, server: &GitHttpsServer) -> String {
    let trust = format!("http.sslCAInfo={}", server.ca_file.display());
    succeeded(git(work, work, &["-c", &trust, "clone", &ops_url(server, TOKEN), "clone"]));
    let clone = work.join("clone");
    std::fs::write(clone.join("README.md"), "ops\n").unwrap();
    succeeded(git(work, &clone, &["add", "README.md"]));
    succeeded(git(work, &clone, &["commit", "-m", "first"]));
    succeeded(git(work, &clone, &["rev-parse", "HEAD"])).trim().to_string()
}

#[test]
fn clone_and_push_with_the_token_move_main() {
    let (work, server) = setup();
    let head = clone_and_commit(work.path(), &server);
    assert_eq!(served_main(work.path()), None, "the bare repository starts empty");

    let trust = format!("http.sslCAInfo={}", server.ca_file.display());
    succeeded(git(work.path(), &work.path().join("clone"), &["-c", &trust, "push", "origin", "HEAD:main"]));

    assert_eq!(served_main(work.path()), Some(head), "requests:\n{}", server.log());
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.method == "POST" && r.target == "/ops.git/git-receive-pack" && r.status == 200),
        "the push went through git-receive-pack:\n{}",
        server.log()
    );
    assert!(requests.iter().all(|r| r.authorized || r.status == 401), "{}", server.log());
    assert_eq!(server.authorized_users(), ["x-access-token"]);
}

#[test]
fn a_wrong_token_gets_401_and_changes_nothing() {
    let (work, server) = setup();
    clone_and_commit(work.path(), &server);
    let before = server.requests().len();

    let trust = format!("http.sslCAInfo={}", server.ca_file.display());
    let wrong = ops_url(&server, "not-the-token");
    let output = git(work.path(), &work.path().join("clone"), &["-c", &trust, "push", &wrong, "HEAD:main"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a push with a wrong token succeeded: {stderr}");
    assert!(stderr.contains("Authentication failed") || stderr.contains("401"), "git said: {stderr}");
    assert_eq!(served_main(work.path()), None, "the refused push changed the bare repository");
    let refused = &server.requests()[before..];
    assert!(!refused.is_empty(), "the push reached the server: {stderr}");
    assert!(
        refused.iter().all(|r| !r.authorized && r.status == 401),
        "every request with the wrong token was refused:\n{}",
        server.log()
    );
    assert!(refused.iter().any(|r| r.user.as_deref() == Some("x-access-token")), "{}", server.log());
}

#[test]
fn a_client_without_the_ca_fails_on_the_certificate() {
    let (work, server) = setup();

    let output = git(work.path(), work.path(), &["clone", &ops_url(&server, TOKEN), "untrusting"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a clone without the CA succeeded: {stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "git said: {stderr}");
    assert!(server.requests().is_empty(), "a request got past TLS:\n{}", server.log());
    // The same clone trusting the CA works, so the failure above was the certificate and nothing else.
    let trust = format!("http.sslCAInfo={}", server.ca_file.display());
    succeeded(git(work.path(), work.path(), &["-c", &trust, "clone", &ops_url(&server, TOKEN), "trusting"]));
}
