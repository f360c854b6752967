//! An S3-compatible store outside the release, as Nutanix Objects is for an NKP cluster: versitygw (pinned in
//! `scripts/test-tools`; posix backend, SigV4 with root keys made for the run) on an address of its own in the pods'
//! network, with a bucket the test creates before the release is installed. The test's own view of it is boto3
//! (`s3_client.py`, from the test-tools venv); its access log (`--access-log`) says which addresses asked it what.
//!
//! versitygw is not a pod of the chart: it runs as the test's user (root), with its data in a directory of the
//! testbed that no pod's mount namespace shows. The keys travel in environments and on stdin only, never on a
//! command line or in a file of the run; they are never printed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pods::wait_listening;
use crate::support::traefik::StubNet;

/// The region the store signs for (versitygw's default) and the chart is given.
pub const REGION: &str = "us-east-1";
/// The bucket of Dify's files and the plugin daemon's storage.
pub const BUCKET: &str = "dify-harness";

pub struct S3Store {
    /// `http://<address>:<port>`, the chart's `storage.files.s3.endpoint`.
    pub endpoint: String,
    pub access_log: PathBuf,
    access_key: String,
    secret_key: String,
    child: Child,
}

/// One object of the bucket.
#[derive(Clone, Debug)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

impl S3Store {
    /// versitygw on `ip:port` inside `net`, its data and logs under `dir`, and [`BUCKET`] created.
    pub fn start(net: &StubNet, ip: Ipv4Addr, port: u16, dir: &Path) -> S3Store {
        let binary = which("versitygw").unwrap_or_else(|| {
            panic!(
                "versitygw is not on PATH: run `scripts/test-tools install versitygw` and put `scripts/test-tools \
                 path` on PATH"
            )
        });
        // The posix backend's root: <data>/<bucket>/<key>.
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let access_log = dir.join("access.log");
        let access_key = format!("harness{}", random_hex(6));
        let secret_key = random_hex(20);
        let mut command = Command::new(binary);
        command
            .args(["--port", &format!("{ip}:{port}"), "--region", REGION, "--quiet"])
            .args(["--access-log", &access_log.display().to_string(), "posix", &data.display().to_string()])
            .env_clear()
            .env("ROOT_ACCESS_KEY", &access_key)
            .env("ROOT_SECRET_KEY", &secret_key)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("versitygw.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("versitygw.stderr")).unwrap());
        let child = net.spawn(command).unwrap_or_else(|e| panic!("starting versitygw: {e}"));
        let store = S3Store { endpoint: format!("http://{ip}:{port}"), access_log, access_key, secret_key, child };
        wait_listening("versitygw", ip, port, Duration::from_secs(30), &dir.join("versitygw.stderr"));
        store.client(&["create-bucket", BUCKET]);
        store
    }

    /// The Secret `name` with the store's keys under the chart's default key names (`access-key`, `secret-key`),
    /// created in `namespace` through kubectl's stdin.
    pub fn create_secret(&self, kubeconfig: &Path, namespace: &str, name: &str) {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"access-key": self.access_key, "secret-key": self.secret_key},
        });
        let out = run_with_stdin(
            Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(["apply", "-f", "-"]),
            secret.to_string().as_bytes(),
        );
        assert!(out.status.success(), "kubectl apply of Secret {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Every object of the bucket, through the S3 API.
    pub fn objects(&self) -> Vec<Object> {
        let out = self.client(&["list", BUCKET]);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let o: Value = serde_json::from_str(l).unwrap();
                Object { key: o["key"].as_str().unwrap().to_string(), size: o["size"].as_u64().unwrap() }
            })
            .collect()
    }

    /// An object's bytes, through the S3 API.
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.client(&["get", BUCKET, key])
    }

    /// The access log's lines (one per request: the client's address, the operation, the key).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// `s3_client.py args…` with the test-tools venv's Python; the store's address and keys in its environment.
    fn client(&self, args: &[&str]) -> Vec<u8> {
        let python = which("python").unwrap_or_else(|| {
            panic!(
                "python (the test-tools venv, with boto3) is not on PATH: scripts/test-tools install python, and put \
                 `scripts/test-tools path` on PATH"
            )
        });
        let out = Command::new(python)
            .arg(crate::root().join("tests/dify/s3_client.py"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("S3_ENDPOINT", &self.endpoint)
            .env("S3_REGION", REGION)
            .env("S3_ACCESS_KEY", &self.access_key)
            .env("S3_SECRET_KEY", &self.secret_key)
            .output()
            .expect("running s3_client.py");
        assert!(out.status.success(), "s3_client.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the store's own pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn run_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
