//! Age identities stay private, on real components (`age-keygen`, `git`, `sops`, and `strace` when present): an
//! identity given where a recipient belongs is refused without being echoed, a readable identity file is warned
//! about, no identity ever reaches the ops repo, and secrets are never written anywhere in plain text — no temp
//! file, no write(2) that carries one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Ops {
    dir: tempfile::TempDir,
    recipient: String,
    identity: String,
}

impl Ops {
    /// A bare ops remote seeded with a config for `recipients`, and the operator's age key (mode 0600).
    fn new(recipients: impl Fn(&str, &str) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("age.key");
        run("age-keygen", &["-o", key.to_str().unwrap()], None);
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
        let recipient = run("age-keygen", &["-y", key.to_str().unwrap()], None).trim().to_string();
        let text = std::fs::read_to_string(&key).unwrap();
        let identity = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap().to_string();
        let ops = Self { dir, recipient, identity };
        run("git", &["init", "-q", "--bare", "--initial-branch=main", ops.remote().to_str().unwrap()], None);
        let seed = ops.dir.path().join("seed");
        run("git", &["clone", "-q", ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
        let config = format!(
            "environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{}]\n",
            recipients(&ops.recipient, &ops.identity)
        );
        std::fs::write(seed.join("dify-gitops.yaml"), config).unwrap();
        run("git", &["add", "."], Some(&seed));
        run("git", &["commit", "-q", "-m", "config"], Some(&seed));
        run("git", &["push", "-q", "origin", "HEAD:main"], Some(&seed));
        ops
    }

    fn remote(&self) -> PathBuf {
        self.dir.path().join("ops.git")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("age.key")
    }

    fn commits(&self) -> usize {
        run("git", &["rev-list", "--count", "main"], Some(&self.remote())).trim().parse().unwrap()
    }

    /// The content of every object in the remote (commits, trees, blobs), uncompressed.
    fn all_objects(&self) -> String {
        let out = Command::new("git")
            .args(["cat-file", "--batch-all-objects", "--batch"])
            .current_dir(self.remote())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The decrypted Secret of main, via the real `sops -d`.
    fn secret_values(&self) -> Vec<String> {
        let text = run("git", &["show", "main:clusters/prod/dify/dify-secrets.sops.yaml"], Some(&self.remote()));
        let file = self.dir.path().join("under-test.sops.yaml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("sops")
            .args(["-d", "--output-type", "json", file.to_str().unwrap()])
            .env("SOPS_AGE_KEY_FILE", self.key())
            .output()
            .expect("sops on PATH (scripts/test-tools install)");
        std::fs::remove_file(&file).unwrap();
        assert!(out.status.success(), "sops -d: {}", String::from_utf8_lossy(&out.stderr));
        let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        secret["stringData"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()).collect()
    }
}

/// `dify-gitops args…` with SOPS_AGE_KEY_FILE set to `identity` (or unset): (exit code, stdout, stderr).
fn cli(args: &[&str], identity: Option<&Path>, env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-gitops"));
    command.args(args).env_remove("SOPS_AGE_KEY_FILE").env_remove("DIFY_GITOPS_LOG");
    if let Some(identity) = identity {
        command.env("SOPS_AGE_KEY_FILE", identity);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command.args(args).env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@t");
    command.env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@t");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().unwrap_or_else(|e| panic!("{program} not runnable ({e}): scripts/test-tools install"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The identity's key material without its prefix: a leak of any part of it must be caught.
fn body(identity: &str) -> &str {
    &identity["AGE-SECRET-KEY-1".len()..]
}

#[test]
fn an_identity_given_as_a_recipient_is_refused_and_not_echoed() {
    // On the command line.
    let ops = Ops::new(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let (code, stdout, stderr) = cli(
        &["sync", "--host", "192.0.2.10", "--recipient", &ops.identity, "--repo", remote.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("is a private identity (AGE-SECRET-KEY-…), not a recipient"), "{stderr}");
    assert!(stderr.contains("age-keygen -y"), "the message says what to pass instead: {stderr}");
    assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)), "the identity was echoed");
    assert_eq!(ops.commits(), 1, "the ops repo is untouched");

    // In the config file, for render too.
    let ops = Ops::new(|_, identity| identity.to_string());
    let work = ops.dir.path().join("work");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), work.to_str().unwrap()], None);
    for args in [
        vec!["sync", "--host", "192.0.2.10", "--repo", ops.remote().to_str().unwrap()],
        vec!["render", "--host", "192.0.2.10", "--repo-dir", work.to_str().unwrap()],
    ] {
        let (code, stdout, stderr) = cli(&args, Some(&ops.key()), &[]);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("is a private identity"), "{stderr}");
        assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)), "{args:?} echoed the identity");
    }
    assert_eq!(ops.commits(), 1);
    assert!(!work.join("clusters").exists(), "render wrote nothing");
}

#[test]
fn an_identity_file_readable_by_others_is_warned_about() {
    let ops = Ops::new(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let sync = ["sync", "--host", "192.0.2.10", "--repo", remote.to_str().unwrap()];

    let (code, _, stderr) = cli(&sync, Some(&ops.key()), &[]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!stderr.contains("chmod 600"), "0600 is fine: {stderr}");

    std::fs::set_permissions(ops.key(), PermissionsExt::from_mode(0o644)).unwrap();
    let (code, _, stderr) = cli(&[&sync[..], &["--rotate", "redis-password"]].concat(), Some(&ops.key()), &[]);
    assert_eq!(code, 6, "a warning, not an error: {stderr}");
    assert!(stderr.contains("is readable by others (mode 644): `chmod 600` it"), "{stderr}");
    assert!(stderr.contains(ops.key().to_str().unwrap()), "names the file: {stderr}");
    assert!(!stderr.contains(body(&ops.identity)));

    let (code, stdout, stderr) = cli(&["audit", "--repo-dir", remote.to_str().unwrap()], Some(&ops.key()), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("chmod 600"), "audit warns too: {stderr}");
}

#[test]
fn sync_never_writes_the_identity_into_the_ops_repo() {
    let ops = Ops::new(|recipient, _| recipient.to_string());
    // A working copy with the operator's key file lying in it, untracked and not ignored.
    let work = ops.dir.path().join("work");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), work.to_str().unwrap()], None);
    let key_in_work = work.join("keys.txt");
    std::fs::copy(ops.key(), &key_in_work).unwrap();
    std::fs::set_permissions(&key_in_work, PermissionsExt::from_mode(0o600)).unwrap();
    for args in [
        vec!["sync", "--host", "192.0.2.10", "--repo", work.to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.11", "--rotate", "postgres-password", "--repo", work.to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.12", "--repo", ops.remote().to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.12", "--rotate", "redis-password", "--repo", ops.remote().to_str().unwrap()],
    ] {
        let (code, stdout, stderr) = cli(&args, Some(&key_in_work), &[]);
        assert_eq!(code, 6, "{args:?}: {stdout}{stderr}");
        assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)));
    }
    assert_eq!(ops.commits(), 5);
    let objects = ops.all_objects();
    assert!(objects.contains("ENC[AES256_GCM"), "the dump holds the overlay");
    assert!(!objects.contains(body(&ops.identity)), "the identity is in an object of the ops repo");
    assert!(!objects.contains("AGE-SECRET-KEY-"), "an identity is in an object of the ops repo");
    let tracked = run("git", &["ls-tree", "-r", "--name-only", "main"], Some(&ops.remote()));
    assert!(!tracked.contains("keys.txt"), "{tracked}");
    let (code, stdout, _) = cli(&["audit", "--history", "--repo-dir", ops.remote().to_str().unwrap()], None, &[]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn plaintext_secrets_never_reach_a_temp_file_or_any_write() {
    let ops = Ops::new(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let tmp = tempfile::tempdir().unwrap();
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--host", "192.0.2.10", "--repo", remote.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = cli(&args, Some(&ops.key()), &[("TMPDIR", tmp.path())]);
        assert_eq!(code, 6, "{stdout}{stderr}");
    };
    sync(&[]);
    sync(&["--rotate", "redis-password"]);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "sync left files in TMPDIR: {left:?}");

    // Every byte the process (and its children) writes to any file descriptor, traced by strace: none carries a
    // secret, though sync decrypts them all (carry-over) and generates one (rotation).
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("strace is not installed: the write(2) trace is skipped (the TMPDIR check above still ran)");
        return;
    }
    let trace = tmp.path().join("writes.strace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-s", "1000000", "-e", "trace=write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg"])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_dify-gitops"))
        .args(["sync", "--host", "192.0.2.10", "--rotate", "sandbox-api-key", "--repo", remote.to_str().unwrap()])
        .env("SOPS_AGE_KEY_FILE", ops.key())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let traced = std::fs::read_to_string(&trace).unwrap_or_default();
    if !out.status.success() && traced.is_empty() {
        eprintln!("strace cannot trace here (ptrace refused?): {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(traced.contains("ENC[AES256_GCM"), "the trace holds the writes of the encrypted overlay");
    let secrets = ops.secret_values();
    assert_eq!(secrets.len(), dify_gitops::overlay::SECRET_NAMES.len());
    for secret in &secrets {
        assert!(!traced.contains(secret.as_str()), "a secret was written in plain text by some write(2)");
    }
    assert!(!traced.contains(body(&ops.identity)), "the identity was written somewhere");
}
