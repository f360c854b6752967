//! A private PyPI mirror, as NKP sites run a Nexus or Artifactory proxy of PyPI: pypiserver's simple index under
//! gunicorn, over TLS with a CA of the test's own (made here with openssl, so only what is given that CA trusts the
//! mirror), on a pod-like address of the test's network namespace. It serves `prepare`'s `pypi-mirror/packages/`
//! and nothing else (no fallback to PyPI). Its access log says which files a plugin install took from it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pods::wait_listening;
use crate::support::tls::serving_certificate;
use crate::support::traefik::StubNet;

pub struct PypiMirror {
    /// The simple index, `https://<ip>:<port>/simple/`: what `pluginDaemon.pipIndexUrl` names.
    pub url: String,
    pub ip: Ipv4Addr,
    /// The test CA's certificate (PEM), for `pluginDaemon.caBundle`.
    pub ca: PathBuf,
    pub access_log: PathBuf,
    child: Child,
}

/// One file the mirror served whole.
pub struct Download {
    pub file: String,
    pub bytes: u64,
}

impl PypiMirror {
    /// Serves `packages` on `https://ip:port` inside `net`; its certificates live in `dir/pypi-mirror/`, its logs
    /// in `logs` (`pypi-mirror-access.log`, `pypi-mirror-error.log`).
    pub fn start(net: &StubNet, ip: Ipv4Addr, port: u16, packages: &Path, dir: &Path, logs: &Path) -> PypiMirror {
        let dir = dir.join("pypi-mirror");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(logs).unwrap();
        let (ca, cert, key) = make_certificates(&dir, ip);
        let access_log = logs.join("pypi-mirror-access.log");
        let error_log = logs.join("pypi-mirror-error.log");
        let gunicorn = tool("pypi-mirror-gunicorn", "scripts/test-tools install pypi-mirror");
        let app = format!("pypiserver:app(roots=[{:?}], disable_fallback=True)", packages.display().to_string());
        let mut command = Command::new(gunicorn);
        command
            // Sync workers: each answers a request and closes it. With threads (gthread) uv's many kept-alive
            // connections made the same install take 35 s instead of 5.
            .args(["--no-control-socket", "--workers", "2", "-b", &format!("{ip}:{port}")])
            .args(["--certfile", &cert.display().to_string(), "--keyfile", &key.display().to_string()])
            .args(["--access-logfile", &access_log.display().to_string()])
            .args(["--error-logfile", &error_log.display().to_string(), &app])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: gunicorn's workers are stopped with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = net.spawn(command).expect("starting the PyPI mirror (gunicorn)");
        wait_listening("the PyPI mirror", ip, port, Duration::from_secs(60), &error_log);
        PypiMirror { url: format!("https://{ip}:{port}/simple/"), ip, ca, access_log, child }
    }

    /// The access log's request lines (`GET /simple/openai/ HTTP/1.1` and so on), with their status and bytes.
    fn requests(&self) -> Vec<(String, u16, u64)> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                // gunicorn's default: host - - [time] "request" status bytes "referer" "agent"
                let mut quoted = line.split('"');
                let request = quoted.nth(1)?.to_string();
                let mut after = quoted.next()?.split_whitespace();
                let status = after.next()?.parse().ok()?;
                let bytes = after.next()?.parse().unwrap_or(0);
                Some((request, status, bytes))
            })
            .collect()
    }

    /// How many requests reached the mirror.
    pub fn request_count(&self) -> usize {
        self.requests().len()
    }

    /// The wheels served whole (GET, 200). uv reads the metadata of the wheels it resolves with a HEAD and range
    /// requests (206) first; those are not downloads.
    pub fn downloads(&self) -> Vec<Download> {
        self.requests()
            .into_iter()
            .filter(|(request, status, _)| *status == 200 && request.starts_with("GET "))
            .filter_map(|(request, _, bytes)| {
                let path = request.split_whitespace().nth(1)?;
                let file = path.strip_prefix("/packages/")?.split(['?', '#']).next()?;
                file.ends_with(".whl").then(|| Download { file: file.to_string(), bytes })
            })
            .collect()
    }
}

impl Drop for PypiMirror {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the mirror's own process group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A CA of the test's own (the workspace's rcgen test CA) and a serving certificate it signs for `ip`. Returns (CA
/// certificate, server certificate, server key), PEM files in `dir`.
fn make_certificates(dir: &Path, ip: Ipv4Addr) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"));
    let ip = ip.to_string();
    let serving = serving_certificate(&ca, "dify-gitops test PyPI mirror CA", &ip, &[&ip]);
    std::fs::write(&cert, &serving.cert_pem).unwrap();
    std::fs::write(&key, &serving.key_pem).unwrap();
    (ca, cert, key)
}

/// `name` on PATH, or a failure that names how to install it.
fn tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: {install}"))
}
