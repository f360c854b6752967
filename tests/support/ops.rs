//! Ops-repo fixtures: a bare git remote seeded with a `dify-gitops.yaml`, the operator's age key (mode 0600), and
//! the real `git`, `age-keygen` and `sops` CLIs to build and inspect them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a tool (with a fixed git identity), panicking with its stderr when it fails; returns stdout.
pub fn run(program: &str, args: &[&str], dir: Option<&Path>) -> String {
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

pub fn git(dir: &Path, args: &[&str]) -> String {
    run("git", args, Some(dir))
}

/// The config of one environment `prod` running Dify 1.13.3 for `recipients`.
pub fn prod_config(recipients: &str) -> String {
    format!("environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{recipients}]\n")
}

pub struct OpsRemote {
    pub dir: tempfile::TempDir,
    /// The operator's public age key.
    pub recipient: String,
    /// The operator's private age identity (`AGE-SECRET-KEY-1…`), as the key file holds it.
    pub identity: String,
}

impl OpsRemote {
    /// A remote whose config lists the operator's recipient.
    pub fn new() -> Self {
        Self::with_config(|recipient, _| prod_config(recipient))
    }

    /// A remote whose `dify-gitops.yaml` is `config(recipient, identity)`.
    pub fn with_config(config: impl Fn(&str, &str) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("age.key");
        run("age-keygen", &["-o", key.to_str().unwrap()], None);
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
        let recipient = run("age-keygen", &["-y", key.to_str().unwrap()], None).trim().to_string();
        let text = std::fs::read_to_string(&key).unwrap();
        let identity = text.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap().to_string();
        let ops = Self { dir, recipient, identity };
        run("git", &["init", "-q", "--bare", "--initial-branch=main", ops.remote().to_str().unwrap()], None);
        let seed = ops.dir.path().join("seed");
        run("git", &["clone", "-q", ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
        std::fs::write(seed.join("dify-gitops.yaml"), config(&ops.recipient, &ops.identity)).unwrap();
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "-q", "-m", "config"]);
        git(&seed, &["push", "-q", "origin", "HEAD:main"]);
        std::fs::remove_dir_all(seed).unwrap();
        ops
    }

    pub fn remote(&self) -> PathBuf {
        self.dir.path().join("ops.git")
    }

    /// Where `sync` keeps its cached clone for this remote: one per test, removed with it.
    pub fn cache_home(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("age.key")
    }

    /// `dify-gitops <args> --repo <remote>`, with SOPS_AGE_KEY_FILE set to `identity` or unset.
    pub fn cli(&self, args: &[&str], identity: Option<&Path>) -> (i32, String, String) {
        let mut command = super::cli::command();
        command.args(args).arg("--repo").arg(self.remote());
        command.env("XDG_CACHE_HOME", self.cache_home());
        if let Some(identity) = identity {
            command.env("SOPS_AGE_KEY_FILE", identity);
        }
        super::cli::run(&mut command).parts()
    }

    /// `dify-gitops <args> --repo <remote>` with the operator's identity.
    pub fn sync(&self, args: &[&str]) -> (i32, String, String) {
        self.cli(args, Some(&self.key()))
    }

    pub fn commits(&self) -> usize {
        git(&self.remote(), &["rev-list", "--count", "main"]).trim().parse().unwrap()
    }

    pub fn head_message(&self) -> String {
        git(&self.remote(), &["log", "-1", "--format=%B", "main"])
    }

    /// A file of the remote's main branch.
    pub fn show(&self, path: &str) -> String {
        git(&self.remote(), &["show", &format!("main:{path}")])
    }

    /// The decrypted Secret of the remote's main branch, via the real `sops -d` (which verifies the MAC).
    pub fn decrypted_secrets(&self) -> serde_json::Value {
        let file = self.dir.path().join("secrets-under-test.sops.yaml");
        std::fs::write(&file, self.show("apps/prod/dify/dify-secrets.sops.yaml")).unwrap();
        let out = Command::new("sops")
            .args(["-d", "--output-type", "json", file.to_str().unwrap()])
            .env("SOPS_AGE_KEY_FILE", self.key())
            .output()
            .expect("sops on PATH (scripts/test-tools install)");
        std::fs::remove_file(&file).unwrap();
        assert!(out.status.success(), "sops -d failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The plaintext values of the remote's Secret.
    pub fn secret_values(&self) -> Vec<String> {
        let secret = self.decrypted_secrets();
        secret["stringData"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()).collect()
    }
}
