//! The one way tests run the `dify-gitops` binary: [`command`] starts from an environment with every variable
//! that changes what the CLI does removed (its own settings, the age identity, the kubeconfig, git's and TLS's
//! trust, proxies, ssh-agent), so a developer's shell never leaks into a test; a test sets what it means to test.
//! `HOME`, `PATH` and `TMPDIR` are kept (the pinned tools are on PATH); tests that sync set `XDG_CACHE_HOME`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_dify-gitops");

/// What the CLI, libgit2, rustls or ureq read from the environment.
pub const CLEARED: &[&str] = &[
    "DIFY_GITOPS_LOG",
    "DIFY_GITOPS_ENV",
    "DIFY_GITOPS_HOST",
    "DIFY_GITOPS_IMAGE_TAG",
    "DIFY_GITOPS_REPO",
    "DIFY_GITOPS_GIT_TOKEN",
    "DIFY_GITOPS_GIT_USERNAME",
    "DIFY_GITOPS_SSH_KEY",
    "DIFY_GITOPS_NO_CACHE",
    "DIFY_GITOPS_URL",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_CMD",
    "KUBECONFIG",
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_NO_VERIFY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    // Every variable ureq takes a proxy or its exceptions from (ureq 3.5 `Proxy::try_from_env`: the first valid
    // of these six, then NO_PROXY, else no_proxy), so the runner's own proxy never carries a test's traffic.
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `dify-gitops` with the hermetic environment.
pub fn command() -> Command {
    let mut command = Command::new(BIN);
    hermetic(&mut command);
    command
}

/// Removes [`CLEARED`] from `command`'s environment: for a wrapper (strace) that runs the binary.
pub fn hermetic(command: &mut Command) -> &mut Command {
    for name in CLEARED {
        command.env_remove(name);
    }
    command
}

/// How a run ended: the exit code (never a signal) and the output as text.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn of(output: Output) -> Self {
        CliOutput {
            code: output.status.code().expect("dify-gitops exited by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// (exit code, stdout, stderr), the shape most tests destructure.
    pub fn parts(self) -> (i32, String, String) {
        (self.code, self.stdout, self.stderr)
    }
}

/// Runs `command` to the end.
pub fn run(command: &mut Command) -> CliOutput {
    CliOutput::of(command.output().expect("running dify-gitops"))
}

/// Runs `command` with `stdin` piped in (a child that exits before reading it is fine).
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> CliOutput {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running dify-gitops");
    let _ = child.stdin.take().expect("stdin is piped").write_all(stdin.as_bytes());
    CliOutput::of(child.wait_with_output().expect("waiting for dify-gitops"))
}
