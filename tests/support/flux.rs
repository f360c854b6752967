//! Real Flux for tests: source-, kustomize- and helm-controller (built from their Go modules by
//! `scripts/test-tools install flux`) run as local processes against the testbed's kube-apiserver, their CRDs taken
//! from the same modules, and the git smart-HTTP server (`super::git_server`, re-exported here) for the repositories
//! they clone. Everything dies with the test: the controllers are killed on drop and, through PR_SET_PDEATHSIG, when
//! the thread that started them ends; the git server's threads end with the process.

use std::collections::BTreeMap;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // flux_e2e's path to it; the other test binaries leave it unused
pub use super::git_server::GitHttpServer;

const CONTROLLERS: [&str; 3] = ["source-controller", "kustomize-controller", "helm-controller"];

/// The pinned versions from `scripts/test-tools versions` (one source of truth for builds and CRDs).
pub fn pinned_versions() -> BTreeMap<String, String> {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/test-tools"))
        .arg("versions")
        .output()
        .expect("running scripts/test-tools versions");
    assert!(output.status.success(), "scripts/test-tools versions failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The three controller binaries: on PATH, else in the test-tools bin directory. Panics (the test FAILS, it does
/// not skip) with the command that builds them.
pub fn controller_binaries() -> BTreeMap<&'static str, PathBuf> {
    let tools_bin = Command::new("bash")
        .arg(repo_root().join("scripts/test-tools"))
        .arg("path")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(tools_bin);
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for name in CONTROLLERS {
        match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            Some(p) => {
                found.insert(name, p);
            }
            None => missing.push(name),
        }
    }
    assert!(
        missing.is_empty(),
        "the Flux controllers {missing:?} are not built (looked on PATH and in `scripts/test-tools path`). Build them \
         with:\n\n    scripts/test-tools install flux\n\n(source-controller, kustomize-controller and helm-controller from \
         their Go modules at the versions pinned in scripts/test-tools; several minutes cold, cached afterwards)"
    );
    found
}

/// `config/crd/bases` of each controller's Go module at its pinned version (downloaded into the module cache by
/// `go mod download` when the build has not already put it there).
pub fn crd_dirs() -> Vec<PathBuf> {
    let versions = pinned_versions();
    let pins = [
        ("source-controller", "SOURCE_CONTROLLER_VERSION"),
        ("kustomize-controller", "KUSTOMIZE_CONTROLLER_VERSION"),
        ("helm-controller", "HELM_CONTROLLER_VERSION"),
    ];
    pins.iter()
        .map(|(module, pin)| {
            let version = &versions[*pin];
            let output = Command::new("go")
                .args(["mod", "download", "-json", &format!("github.com/fluxcd/{module}@v{version}")])
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", "-mod=mod")
                .output()
                .expect("running `go mod download` (Go is needed for the Flux CRDs)");
            let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!("go mod download {module}: {e}: {}", String::from_utf8_lossy(&output.stderr))
            });
            let dir = info["Dir"].as_str().unwrap_or_else(|| panic!("go mod download {module}@v{version}: {info}"));
            PathBuf::from(dir).join("config/crd/bases")
        })
        .collect()
}

struct Controller {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The three Flux controllers, running against one kube-apiserver.
pub struct Flux {
    controllers: Vec<Controller>,
    pub storage_addr: String,
    _dir: tempfile::TempDir,
}

impl Flux {
    /// Starts the controllers against `kubeconfig`; each logs to its own file (shown by [`Flux::logs`]).
    pub fn start(kubeconfig: &Path) -> Flux {
        let binaries = controller_binaries();
        let dir = tempfile::Builder::new().prefix("dify-gitops-flux.").tempdir().unwrap();
        let storage_addr = format!("127.0.0.1:{}", super::net::free_port());
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut controllers = Vec::new();
        for name in CONTROLLERS {
            let mut args = vec![
                format!("--metrics-addr=127.0.0.1:{}", super::net::free_port()),
                format!("--health-addr=127.0.0.1:{}", super::net::free_port()),
                "--enable-leader-election=false".to_string(),
                "--log-encoding=console".to_string(),
                "--log-level=debug".to_string(),
            ];
            if name == "source-controller" {
                args.push(format!("--storage-path={}", storage.display()));
                args.push(format!("--storage-addr={storage_addr}"));
                args.push(format!("--storage-adv-addr={storage_addr}"));
            }
            let log = dir.path().join(format!("{name}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let mut command = Command::new(&binaries[name]);
            command
                .args(&args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUNTIME_NAMESPACE", "flux-system")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file);
            // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
            controllers.push(Controller { name, child, log });
        }
        Flux { controllers, storage_addr, _dir: dir }
    }

    /// Panics with the logs when a controller has exited.
    pub fn assert_running(&mut self) {
        for c in &mut self.controllers {
            if let Some(status) = c.child.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", c.name, tail(&c.log, 60));
            }
        }
    }

    /// The last lines of every controller's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.controllers.iter().map(|c| format!("--- {} ---\n{}\n", c.name, tail(&c.log, lines))).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.controllers.iter().map(|c| c.child.id()).collect()
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        for c in &mut self.controllers {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` until it returns Some or `timeout` passes; on timeout panics with `context()`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs git with a fixed identity and no user/system config; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=dify-gitops test", "-c", "user.email=test@dify-gitops.invalid"])
        .args(["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("running git");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Fills `${NAME}` placeholders; panics when the text still holds one afterwards.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_string();
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "unfilled placeholder in:\n{text}");
    text
}
