//! Air-gapped with a private PyPI mirror: the chart's bootstrap Job installs the model plugin's package as it was
//! made (a `pyproject.toml` and `uv.lock` recorded against pypi.org, no wheels) from an artifact server of the
//! cluster's network, and the plugin daemon takes its dependencies from the site's mirror (`pluginDaemon.pipIndexUrl`),
//! trusting the mirror's private CA (`pluginDaemon.caBundle`). No browser: the Job's log, the daemon's, the mirror's
//! and the egress proxy's say what happened.
//!
//! Daemon 0.6.1 installs a plugin with a uv.lock by `uv sync --frozen`, and `--frozen` takes the lock's file URLs
//! (files.pythonhosted.org) whatever `-i` says: the test shows that with the daemon's own uv command, and that the
//! chart's `pluginDaemon.ignoreUvLock` (PLUGIN_IGNORE_UV_LOCK, on with a mirror) makes the install use the mirror.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::install::{Egress, Files, FirstSetUp, Install, bring_up};

#[test]
fn dify_1_14_2_installs_plugins_from_a_private_pypi_mirror() {
    let started = Instant::now();
    // bring_up runs the bootstrap Job to its success: the plugin installed, the models added and checked.
    let mut install = bring_up(
        "1.14.2",
        &["collaboration.enabled=false"],
        "1.14.2-pypi-mirror",
        FirstSetUp::Bootstrap,
        Egress::AirGappedMirror,
        Files::Volume,
    );
    let logs = install.cluster.dir.join("logs");
    install.check_bootstrap_set_up_the_provider();

    // The daemon resolved against the mirror: not frozen, and uv given the mirror's index.
    let mirror_url = install.mirror.as_ref().unwrap().url.clone();
    let daemon_log = std::fs::read_to_string(logs.join("dify-plugin-daemon-0.log")).unwrap_or_default();
    assert!(
        daemon_log.contains("PLUGIN_IGNORE_UV_LOCK is set"),
        "the daemon should install the locked plugin without --frozen (PLUGIN_IGNORE_UV_LOCK from \
         pluginDaemon.ignoreUvLock); its log:\n{}",
        tail(&daemon_log, 40)
    );
    let uv_command = daemon_log.lines().find(|l| l.contains("uv command") && l.contains("sync ")).unwrap_or_default();
    assert!(
        uv_command.contains(&mirror_url) && !uv_command.contains("--frozen"),
        "the daemon's uv sync should name the mirror and not be frozen: {uv_command:?}"
    );

    // The plugin's environment is exactly what the mirror served whole, each once. The lock's other packages (the
    // plugin's dev tools, other platforms' dependencies) were only read for their metadata.
    let mirror = install.mirror.as_ref().unwrap();
    let downloads = mirror.downloads();
    let served: Vec<String> = downloads.iter().map(|d| name_version(&d.file)).collect();
    let served_once: BTreeSet<String> = served.iter().cloned().collect();
    let environment = installed_distributions(&install.cluster.dir);
    assert!(
        !environment.is_empty() && environment == served_once && served.len() == served_once.len(),
        "the plugin's environment should be exactly the wheels the mirror served, each once.\nin the environment, \
         not served: {:?}\nserved, not in the environment: {:?}\nserved: {served:?}",
        environment.difference(&served_once).collect::<Vec<_>>(),
        served_once.difference(&environment).collect::<Vec<_>>()
    );
    let bytes: u64 = downloads.iter().map(|d| d.bytes).sum();
    let (requests, mirror_ip) = (mirror.request_count(), mirror.ip.to_string());
    install.figure(format!(
        "PyPI mirror: {} wheels served whole ({:.1} MiB) of {requests} requests, {} distributions in the plugin's \
         environment",
        downloads.len(),
        bytes as f64 / 1048576.0,
        environment.len()
    ));

    // Nothing left the namespace, and the mirror was reached directly (NO_PROXY), not through the SSRF proxy.
    let left = install.egress.log();
    assert!(left.is_empty(), "the install sent requests out through the egress proxy: {left:?}");
    let ssrf_log = std::fs::read_to_string(logs.join("dify-ssrf-proxy-0.log")).unwrap_or_default();
    let through_ssrf: Vec<&str> = ssrf_log
        .lines()
        .filter(|l| l.contains(&mirror_ip) || l.contains("pythonhosted.org") || l.contains("pypi.org"))
        .collect();
    assert!(through_ssrf.is_empty(), "package downloads went through the SSRF proxy: {through_ssrf:?}");

    // The plugin runs on that environment: Dify's check of the chat model reached the model server through it.
    let chats = install.model.requests_to("/v1/chat/completions");
    assert!(!chats.is_empty(), "the model plugin never called the model server's chat completions");
    install.figure(format!("model server: {} chat completions from the plugin (the models' checks)", chats.len()));

    frozen_sync_ignores_the_mirror(&mut install);
    install.check_no_connection_refused(&[]);
    install.figure(format!("whole run: {:.1} s", started.elapsed().as_secs_f64()));
}

/// The daemon's own uv command for a plugin with a uv.lock when PLUGIN_IGNORE_UV_LOCK is off (`uv sync --no-dev
/// --frozen -i <mirror> -v --native-tls`, prepareSyncArgs of 0.6.1), on the same plugin, in the pods' network,
/// trusting the mirror's CA: it asks the mirror nothing and fails fetching the lock's files.pythonhosted.org URLs.
fn frozen_sync_ignores_the_mirror(install: &mut Install) {
    let mirror = install.mirror.as_ref().unwrap();
    let dir = install.cluster.dir.join("frozen-sync");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["pyproject.toml", "uv.lock"] {
        std::fs::copy(install.images.package_src.join(file), dir.join(file)).unwrap();
    }
    let uv = host_tool("uv");
    let python = install.images.api_venv.join("bin/python");
    let venv = Command::new(&uv).args(["venv", ".venv", "--python"]).arg(&python).current_dir(&dir).output().unwrap();
    assert!(venv.status.success(), "uv venv: {}", String::from_utf8_lossy(&venv.stderr));
    let before = mirror.request_count();
    let output = dir.join("uv-sync.log");
    let mut sync = Command::new(&uv);
    sync.args(["sync", "--no-dev", "--frozen", "-i", &mirror.url, "-v", "--native-tls"])
        .current_dir(&dir)
        .env_clear()
        .env("VIRTUAL_ENV", dir.join(".venv"))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UV_CACHE_DIR", dir.join(".uv-cache"))
        .env("SSL_CERT_FILE", &mirror.ca)
        .stdin(Stdio::null());
    let log = std::fs::File::create(&output).unwrap();
    sync.stdout(log.try_clone().unwrap()).stderr(log);
    let mut child = install.cluster.net.spawn(sync).expect("running uv sync --frozen in the pods' network");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("uv sync --frozen ran past 180 s: {}", output.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let _ = std::fs::write(install.output.join("frozen-uv-sync.log"), &text);
    let asked = mirror.request_count() - before;
    assert!(
        !status.success() && asked == 0 && text.contains("https://files.pythonhosted.org/"),
        "uv sync --frozen -i <mirror> should fail fetching the lock's files.pythonhosted.org URLs without asking the \
         mirror (it exited {status}, the mirror saw {asked} requests):\n{}",
        tail(&text, 30)
    );
    let failed = text.lines().filter(|l| l.starts_with("error:") || l.contains("Failed to fetch:")).take(2);
    let failed: Vec<&str> = failed.collect();
    install.figure(format!(
        "without ignoreUvLock (uv sync --frozen -i <mirror>): exit {}, the mirror asked {asked} times; {}",
        status.code().unwrap_or(-1),
        failed.join(" / ")
    ));
}

/// `name==version` of a wheel's file name, names normalised (PEP 503).
fn name_version(wheel: &str) -> String {
    let mut parts = wheel.split('-');
    let name = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    format!("{}=={version}", normalise(name))
}

fn normalise(name: &str) -> String {
    name.to_lowercase().replace(['_', '.'], "-")
}

/// `name==version` of every distribution in the model plugin's virtualenv (its `.dist-info` directories) on the
/// daemon's volume.
fn installed_distributions(cluster_dir: &Path) -> BTreeSet<String> {
    let mut stack = vec![cluster_dir.join("volumes")];
    let mut found = BTreeSet::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else { continue };
            if !meta.is_dir() || path.file_name().is_some_and(|n| n == ".uv-cache") {
                continue;
            }
            if path.ends_with("site-packages") && path.join("dify_plugin").is_dir() {
                for dist in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let name = dist.file_name().to_string_lossy().to_string();
                    if let Some(stem) = name.strip_suffix(".dist-info") {
                        let (name, version) = stem.rsplit_once('-').unwrap_or((stem, ""));
                        found.insert(format!("{}=={version}", normalise(name)));
                    }
                }
                continue;
            }
            stack.push(path);
        }
    }
    found
}

fn host_tool(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH (scripts/test-tools install {name})"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
