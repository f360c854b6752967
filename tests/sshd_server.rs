//! The loopback OpenSSH server of `support::sshd`, checked with the real `git` and `ssh` CLIs before any test leans
//! on it for `dify-gitops sync --repo ssh://…`: a clone, commit and push go through, an unknown or changed host
//! key and an unauthorised client key are refused by ssh itself, and no sshd outlives its server.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use support::process_alive;
use support::sshd::Sshd;

/// Runs `git args…` in `cwd` as a test should: no system or user config (HOME is the test's temp dir), no prompt,
/// and ssh from `ssh_command`; returns the output whatever the exit status.
fn git(cwd: &Path, home: &Path, ssh_command: &str, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_SSH_COMMAND", ssh_command)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("GIT_SSH")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("running git")
}

fn ok(output: Output, what: &str, server: &Sshd) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\nsshd log {}:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log.display(),
        server.log_text()
    );
    String::from_utf8(output.stdout).expect("git output is UTF-8")
}

fn failed(output: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} succeeded but must fail: {stderr}");
    stderr
}

/// A temp dir with a bare `ops.git` (branch main) for the server to serve.
fn repos() -> tempfile::TempDir {
    let repos = tempfile::tempdir().unwrap();
    let out = Command::new("git").args(["init", "-q", "--bare", "-b", "main", "ops.git"]).current_dir(&repos).output();
    assert!(out.expect("running git init").status.success(), "git init --bare");
    repos
}

/// Stops the server and proves its sshd is gone (reaped, so a live pid would be another process's or ours).
fn stop_and_check(server: Sshd) {
    let pid = server.pid;
    assert!(process_alive(pid), "sshd {pid} died before the test ended; log:\n{}", server.log_text());
    drop(server);
    assert!(!process_alive(pid), "sshd {pid} still runs after its Sshd was dropped");
}

#[test]
fn git_clones_commits_and_pushes_over_ssh_and_the_bare_repo_moves() {
    let started = Instant::now();
    let (repos, home) = (repos(), tempfile::tempdir().unwrap());
    let server = Sshd::start(repos.path());
    let startup = started.elapsed();
    let ssh = server.git_ssh_command(&server.client_key, &server.known_hosts);
    let (url, home) = (server.url("ops.git"), home.path());
    assert_eq!(url, format!("ssh://{}@127.0.0.1:{}{}/ops.git", server.user, server.port, repos.path().display()));
    let mode = std::fs::metadata(&server.client_key).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "client key mode");
    let known = std::fs::read_to_string(&server.known_hosts).unwrap();
    assert_eq!(known.trim(), server.host_key_line());
    assert!(known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", server.port)), "{known}");

    let bare = repos.path().join("ops.git");
    let main_before = git(&bare, home, &ssh, &["rev-parse", "--verify", "-q", "refs/heads/main"]);
    assert!(!main_before.status.success(), "the bare repo starts without a main branch");
    ok(git(home, home, &ssh, &["clone", "-q", &url, "work"]), "clone of the empty repo", &server);
    let work = home.join("work");
    std::fs::write(work.join("dify-gitops.yaml"), "environments: {}\n").unwrap();
    ok(git(&work, home, &ssh, &["add", "."]), "git add", &server);
    ok(git(&work, home, &ssh, &["commit", "-q", "-m", "over ssh"]), "git commit", &server);
    // HEAD:main: a clone of an empty repo starts on init.defaultBranch, which no config sets here.
    ok(git(&work, home, &ssh, &["push", "-q", "origin", "HEAD:main"]), "push (git-receive-pack over ssh)", &server);

    let pushed = ok(git(&work, home, &ssh, &["rev-parse", "HEAD"]), "rev-parse", &server);
    let moved = ok(git(&bare, home, &ssh, &["rev-parse", "refs/heads/main"]), "rev-parse in the bare repo", &server);
    assert_eq!(moved.trim(), pushed.trim(), "the bare repo's main is the pushed commit");

    // A second clone reads the content back through git-upload-pack (the first one had nothing to fetch).
    ok(git(home, home, &ssh, &["clone", "-q", &url, "again"]), "clone with content", &server);
    assert_eq!(std::fs::read_to_string(home.join("again/dify-gitops.yaml")).unwrap(), "environments: {}\n");

    let log = server.log_text();
    assert!(log.contains(&format!("Accepted publickey for {} from 127.0.0.1", server.user)), "sshd log:\n{log}");
    stop_and_check(server);
    eprintln!("sshd start {startup:?}; start, two clones, push and stop {:?}", started.elapsed());
}

#[test]
fn an_unknown_or_changed_host_key_is_refused_before_login() {
    let (repos, home) = (repos(), tempfile::tempdir().unwrap());
    let server = Sshd::start(repos.path());
    let (url, home) = (server.url("ops.git"), home.path());

    let empty = home.join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let ssh = server.git_ssh_command(&server.client_key, &empty);
    let stderr = failed(git(home, home, &ssh, &["clone", "-q", &url, "unknown"]), "clone with no known host key");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert!(!home.join("unknown").exists(), "a refused clone leaves no directory");

    // Another ed25519 key recorded for the same [127.0.0.1]:port, as after a server swap.
    let other = home.join("other_host_key");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status();
    assert!(keygen.unwrap().success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key = other_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let changed = home.join("known_hosts_changed");
    std::fs::write(&changed, format!("[127.0.0.1]:{} {other_key}\n", server.port)).unwrap();
    let ssh = server.git_ssh_command(&server.client_key, &changed);
    let stderr = failed(git(home, home, &ssh, &["ls-remote", &url]), "ls-remote with a changed host key");
    assert!(stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");

    // Neither attempt reached authentication; the same client key with the right known_hosts does.
    assert!(!server.log_text().contains("Accepted publickey"), "{}", server.log_text());
    let ssh = server.git_ssh_command(&server.client_key, &server.known_hosts);
    ok(git(home, home, &ssh, &["ls-remote", &url]), "ls-remote with the server's host key", &server);
    stop_and_check(server);
}

#[test]
fn an_unauthorised_client_key_is_refused() {
    let (repos, home) = (repos(), tempfile::tempdir().unwrap());
    let server = Sshd::start(repos.path());
    let (url, home) = (server.url("ops.git"), home.path());

    let stranger = home.join("stranger_key");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger).status();
    assert!(keygen.unwrap().success());
    let ssh = server.git_ssh_command(&stranger, &server.known_hosts);
    let stderr = failed(git(home, home, &ssh, &["clone", "-q", &url, "denied"]), "clone with an unknown client key");
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");
    assert!(!home.join("denied").exists(), "a refused clone leaves no directory");
    assert!(!server.log_text().contains("Accepted publickey"), "{}", server.log_text());

    // The authorised key still gets in: the refusal was about the key, not a broken server.
    let ssh = server.git_ssh_command(&server.client_key, &server.known_hosts);
    ok(git(home, home, &ssh, &["ls-remote", &url]), "ls-remote with the authorised key", &server);
    stop_and_check(server);
}
