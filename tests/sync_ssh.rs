//! `dify-gitops sync --repo ssh://…` against a real OpenSSH server on loopback (tests/support/sshd.rs): libgit2 and
//! libssh2 push the overlay with the operator's key, check the server against ~/.ssh/known_hosts, and refuse an
//! unknown or changed host key before offering any key.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::ops::OpsRemote as Ops;
use support::sshd::Sshd;

/// A HOME for the CLI: `.ssh/known_hosts` holds `known_hosts`, and `.ssh/id_ed25519` the key when given.
fn home(ops: &Ops, name: &str, known_hosts: &str, default_key: Option<&Path>) -> PathBuf {
    let home = ops.dir.path().join(name);
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/known_hosts"), known_hosts).unwrap();
    if let Some(key) = default_key {
        std::fs::copy(key, home.join(".ssh/id_ed25519")).unwrap();
    }
    home
}

/// `dify-gitops sync --host <host> --repo <ssh url> <extra>` with HOME = `home` and no ssh-agent.
fn sync(ops: &Ops, sshd: &Sshd, home: &Path, host: &str, extra: &[&str]) -> (i32, String, String) {
    support::cli::run(
        support::cli::command()
            .args(["sync", "--host", host, "--repo", &sshd.url("ops.git")])
            .args(extra)
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("SOPS_AGE_KEY_FILE", ops.key()),
    )
    .parts()
}

fn logins(sshd: &Sshd) -> usize {
    sshd.log_text().matches("Accepted publickey").count()
}

#[test]
fn sync_pushes_over_ssh_with_a_known_host_and_the_operators_key() {
    let ops = Ops::new();
    let sshd = Sshd::start(ops.dir.path());
    let home = home(&ops, "home", &format!("{}\n", sshd.host_key_line()), None);
    let key = sshd.client_key.to_str().unwrap();

    let (code, stdout, stderr) = sync(&ops, &sshd, &home, "192.0.2.10", &["--ssh-key", key]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(ops.commits(), 2, "config + the overlay, pushed over ssh");
    assert!(ops.decrypted_secrets()["stringData"]["dify-secret-key"].as_str().unwrap().len() == 64);
    assert!(logins(&sshd) >= 1, "sshd saw the login: {}", sshd.log_text());

    // The next run reuses the cached clone over the same transport: one commit naming the change.
    let (code, stdout, stderr) = sync(&ops, &sshd, &home, "192.0.2.11", &["--ssh-key", key]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(ops.head_message().contains("external.host 192.0.2.10 -> 192.0.2.11"), "{}", ops.head_message());
    assert_eq!(sync(&ops, &sshd, &home, "192.0.2.11", &["--ssh-key", key]).0, 0, "no drift, no commit");
    assert_eq!(ops.commits(), 3);

    // Without --ssh-key, the usual ~/.ssh/id_ed25519 is used.
    let home = self::home(&ops, "home-default-key", &format!("{}\n", sshd.host_key_line()), Some(&sshd.client_key));
    let (code, stdout, stderr) = sync(&ops, &sshd, &home, "192.0.2.12", &[]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(ops.commits(), 4);
}

#[test]
fn an_unknown_or_changed_host_key_is_refused_before_any_key_is_offered() {
    let ops = Ops::new();
    let sshd = Sshd::start(ops.dir.path());
    let key = sshd.client_key.to_str().unwrap();
    // A host key of another server, recorded for this address: what a man in the middle would look like.
    let other = Sshd::start(ops.dir.path());
    let changed = other.host_key_line().replacen(&other.port.to_string(), &sshd.port.to_string(), 1);

    for (name, known_hosts) in [("unknown", String::new()), ("changed", format!("{changed}\n"))] {
        let home = home(&ops, name, &known_hosts, None);
        let (code, stdout, stderr) = sync(&ops, &sshd, &home, "192.0.2.10", &["--ssh-key", key]);
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(stderr.contains("host key") && stderr.contains("known_hosts"), "{name}: says why and where: {stderr}");
        assert!(stderr.contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)), "{name}: the fix: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
    }
    assert_eq!(ops.commits(), 1, "the ops repo is untouched");
    assert_eq!(logins(&sshd), 0, "no login was attempted: {}", sshd.log_text());
}

#[test]
fn a_key_the_server_does_not_accept_or_no_key_at_all_is_a_clear_error() {
    let ops = Ops::new();
    let sshd = Sshd::start(ops.dir.path());
    let known = format!("{}\n", sshd.host_key_line());

    let stranger = ops.dir.path().join("stranger");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger).output();
    assert!(keygen.unwrap().status.success());
    let home_with_known_host = home(&ops, "home", &known, None);
    let (code, stdout, stderr) =
        sync(&ops, &sshd, &home_with_known_host, "192.0.2.10", &["--ssh-key", stranger.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("refused every SSH key offered") && stderr.contains("stranger"), "{stderr}");
    assert!(stderr.contains("deploy key with write access"), "the fix: {stderr}");

    let (code, stdout, stderr) = sync(&ops, &sshd, &home_with_known_host, "192.0.2.10", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("asks for an SSH key and none was found") && stderr.contains("--ssh-key"), "{stderr}");

    let missing = ops.dir.path().join("no-such-key");
    let (code, _, stderr) =
        sync(&ops, &sshd, &home_with_known_host, "192.0.2.10", &["--ssh-key", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no-such-key") && stderr.contains("--ssh-key"), "names the file and the flag: {stderr}");
    assert_eq!(ops.commits(), 1, "the ops repo is untouched");
}

#[test]
fn a_key_held_by_ssh_agent_is_used_when_no_key_file_is_named() {
    let ops = Ops::new();
    let sshd = Sshd::start(ops.dir.path());
    let home = home(&ops, "home", &format!("{}\n", sshd.host_key_line()), None);
    // A real ssh-agent of this test's own, on a socket in its temp dir, stopped by its pid.
    let socket = ops.dir.path().join("agent.sock");
    let mut agent =
        Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "ssh-agent did not create {}", socket.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add").arg(&sshd.client_key).env("SSH_AUTH_SOCK", &socket).output().unwrap();
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));

    let output = support::cli::command()
        .args(["sync", "--host", "192.0.2.10", "--repo", &sshd.url("ops.git")])
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("SOPS_AGE_KEY_FILE", ops.key())
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(ops.commits(), 2, "pushed with the agent's key");
    assert!(sshd.log_text().contains("Accepted publickey"));
}
