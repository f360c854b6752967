//! `plugin bundle`, proven with the plugin daemon's own installer commands in a network namespace with no route.
//!
//! The OpenAI-API-compatible plugin that `tests/dify/prepare` packages is bundled (this step reaches PyPI). Then, as
//! the chart runs the daemon (uid 1001, `HOME=/tmp`), each package is installed the way daemon 0.6.1 does it
//! (`internal/core/local_runtime`): `uv venv .venv --python 3.12` with the daemon's environment
//! (setup_python_environment.go:393), then, by the file the package has (:135-150), `uv sync --no-dev [--frozen] -v`
//! or `uv pip install [-i PIP_MIRROR_URL] -r requirements.txt -vvv [PIP_EXTRA_ARGS]` (:75-116) with only
//! `VIRTUAL_ENV`, `PATH` and `UV_CACHE_DIR=<PLUGIN_WORKING_PATH>/.uv-cache` (:194-199), then `python -m compileall`
//! (:459-485). The bundle must install and import `dify_plugin`; the original package must fail (it needs PyPI).
//! strace records every file the installer creates, to show where it writes.
//!
//! Needs root (network and mount namespaces, uid 1001), unshare, setpriv and strace, uv (scripts/test-tools), a
//! Python 3.12 (pyenv's 3.12.1 or python3.12 on PATH) and `tests/dify/prepare 1.14.2 model-plugin`; `scripts/test
//! dify` runs it after preparing. A missing one fails the test naming it.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Dify version whose prepared model plugin is bundled (its daemon pin, 0.6.1, is 1.13.3's too).
const DIFY_VERSION: &str = "1.14.2";
/// The chart's uid and gid for the plugin daemon (plugin-daemon-deployment.yaml, `"uid" 1001`).
const UID: &str = "1001";

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(program: &str) -> PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.is_file(), "{program} is not on PATH: {}", hint(program));
    std::fs::canonicalize(path).unwrap()
}

fn hint(program: &str) -> &'static str {
    match program {
        "uv" => "scripts/test-tools install uv",
        "strace" => "apt-get install strace (scripts/test-tools lists it)",
        _ => "apt-get install util-linux",
    }
}

fn model_package() -> PathBuf {
    let out = Command::new(root_dir().join("tests/dify/prepare")).args(["path", DIFY_VERSION]).output().unwrap();
    assert!(out.status.success(), "tests/dify/prepare path {DIFY_VERSION}: {}", String::from_utf8_lossy(&out.stderr));
    let package =
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("model-plugin/openai_api_compatible.difypkg");
    assert!(package.is_file(), "{} is missing: tests/dify/prepare {DIFY_VERSION} model-plugin", package.display());
    package
}

/// The Python 3.12 installation (its prefix) that stands for the image's `python3.12`.
fn python_prefix() -> PathBuf {
    let pyenv = Command::new("sh").args(["-c", "pyenv root 2>/dev/null"]).output().unwrap();
    let pyenv = PathBuf::from(String::from_utf8(pyenv.stdout).unwrap().trim()).join("versions/3.12.1/bin/python3.12");
    let python = if pyenv.is_file() {
        pyenv
    } else {
        let out = Command::new("sh").args(["-c", "command -v python3.12"]).output().unwrap();
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    assert!(
        python.is_file(),
        "Python 3.12 not found (pyenv's 3.12.1 or python3.12 on PATH): the daemon's venvs use it"
    );
    std::fs::canonicalize(python).unwrap().parent().unwrap().parent().unwrap().to_path_buf()
}

/// A shell-quoted word.
fn q(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// What one offline install did.
struct Install {
    ok: bool,
    seconds: f64,
    log: String,
    /// Where files were created or written, cut to the directories that matter.
    writes: BTreeSet<String>,
}

/// Unpacks `package` as the daemon does into `<run>/storage/cwd/<name>` and installs it there with the daemon's
/// commands, in a new network namespace (no interface but a down loopback) as uid 1001.
fn install_offline(run: &Path, name: &str, package: &Path, mirror: Option<&str>, extra_args: &str) -> Install {
    let python = python_prefix();
    let uv = on_path("uv");
    let storage = run.join("storage");
    let cwd = storage.join("cwd");
    let work = cwd.join(name);
    let home = run.join("tmp"); // the chart's HOME=/tmp, an emptyDir
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let status = Command::new("unzip").arg("-q").arg(package).arg("-d").arg(&work).status().expect("unzip");
    assert!(status.success(), "unzip {}", package.display());
    let chown = Command::new("chown").args(["-R", &format!("{UID}:{UID}")]).arg(&storage).arg(&home).status().unwrap();
    assert!(chown.success());

    // The daemon's choice of command (detectDependencyFileType, prepareSyncArgs, preparePipArgs).
    let mirror_args = mirror.map(|m| format!("-i '{m}' ")).unwrap_or_default();
    let install = if work.join("pyproject.toml").exists() {
        let frozen = if work.join("uv.lock").exists() { "--frozen " } else { "" };
        format!("sync --no-dev {frozen}{mirror_args}-v {extra_args}")
    } else {
        format!("pip install {mirror_args}-r requirements.txt -vvv {extra_args}")
    };
    // Root's home is hidden by an empty tmpfs (as in the image, nothing of root's is there for uid 1001); Python and
    // uv, which may live under it here, are bind-mounted back at their own paths (libpython is found by absolute
    // path), so the tmpfs is 0755 for uid 1001 to reach them.
    let mounts = run.join("mounts");
    let mut script = String::from("set -eu\n");
    let keep: Vec<(PathBuf, PathBuf)> = [python.clone(), uv.parent().unwrap().to_path_buf()]
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, mounts.join(i.to_string())))
        .collect();
    for (path, stash) in &keep {
        std::fs::create_dir_all(stash).unwrap();
        script.push_str(&format!("mount --bind {} {}\n", q(path), q(stash)));
    }
    script.push_str("mount -t tmpfs -o mode=0755 tmpfs /root\n");
    for (path, stash) in &keep {
        script.push_str(&format!("mkdir -p {0}\nmount --bind {1} {0}\n", q(path), q(stash)));
    }
    let path = format!("{}:{}:/usr/bin:/bin", python.join("bin").display(), uv.parent().unwrap().display());
    let trace = |file: &str| {
        format!("strace -f -qq -o {} -e trace=openat,mkdir,mkdirat,rename,renameat2,creat", q(&run.join(file)))
    };
    let user = format!("setpriv --reuid {UID} --regid {UID} --clear-groups");
    let (w, uvq) = (q(&work), q(&uv));
    script.push_str(&format!(
        "cd {w}\n\
         {venv_trace} {user} env -i HOME={home} PATH={path} {uvq} venv .venv --python 3.12\n\
         {install_trace} {user} env -i VIRTUAL_ENV={w}/.venv PATH={path} UV_CACHE_DIR={cache} {uvq} {install}\n\
         {user} env -i HOME={home} PATH={path} .venv/bin/python -m compileall -q -x '\\.venv|\\.uv-cache' . >/dev/null\n\
         {user} env -i HOME={home} PATH={path} .venv/bin/python -c 'import dify_plugin; print(\"imported\", dify_plugin.__name__)'\n",
        venv_trace = trace(&format!("{name}-venv.trace")),
        install_trace = trace(&format!("{name}-install.trace")),
        home = q(&home),
        cache = q(&cwd.join(".uv-cache")),
    ));
    let start = Instant::now();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-c", &script])
        .env_remove("PIP_FIND_LINKS")
        .output()
        .expect("unshare");
    let seconds = start.elapsed().as_secs_f64();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut writes = BTreeSet::new();
    for file in [format!("{name}-venv.trace"), format!("{name}-install.trace")] {
        let Ok(text) = std::fs::read_to_string(run.join(&file)) else { continue };
        for line in text.lines() {
            let writing = line.contains("O_CREAT")
                || line.contains("O_WRONLY")
                || line.contains("O_RDWR")
                || line.contains("mkdir")
                || line.contains("rename");
            if !writing || line.contains("ENOENT") || line.contains("/dev/null") {
                continue;
            }
            let Some(path) = line.split('"').nth(1) else { continue };
            writes.insert(summarise(path, run, &work));
        }
    }
    Install { ok: out.status.success() && log.contains("imported dify_plugin"), seconds, log, writes }
}

/// A written path cut to what tells where the installer writes: the plugin's own directory, the uv cache, HOME's
/// first two levels, or any other path's first two levels.
fn summarise(path: &str, run: &Path, work: &Path) -> String {
    let run = run.display().to_string();
    // A relative path is relative to the installer's working directory, the plugin's.
    let path = if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", work.display()) };
    let path = path.as_str();
    if let Some(rest) = path.strip_prefix(&work.display().to_string()) {
        let top = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        return format!("$PLUGIN_WORKING_PATH/<plugin>/{top}");
    }
    if path.starts_with(&format!("{run}/storage/cwd/.uv-cache")) {
        return "$PLUGIN_WORKING_PATH/.uv-cache".into();
    }
    if let Some(rest) = path.strip_prefix(&format!("{run}/tmp")) {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').take(2).collect();
        return format!("$HOME(/tmp)/{}", parts.join("/"));
    }
    path.split('/').take(3).collect::<Vec<_>>().join("/")
}

#[test]
fn the_bundle_installs_with_the_daemons_commands_offline_and_the_package_does_not() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: network and mount namespaces (unshare) and the chart's uid {UID} (setpriv)"
    );
    for program in ["unshare", "setpriv", "strace", "unzip"] {
        on_path(program);
    }
    let package = model_package();
    let run = tempfile::Builder::new().prefix("dify-gitops-plugin-bundle-test.").tempdir().unwrap();
    std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = run.path().join("openai_api_compatible-offline.difypkg");

    // Bundling needs PyPI; the TLS-inspecting network's CA is in the system store, which uv and pip both use.
    let start = Instant::now();
    let out = support::cli::command()
        .args(["plugin", "bundle"])
        .arg(&package)
        .arg("-o")
        .arg(&bundle)
        .args(["--output", "json"])
        .env_remove("PIP_FIND_LINKS")
        .output()
        .unwrap();
    let bundle_seconds = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "plugin bundle failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pins_from"], "uv.lock", "{report}");
    assert!(report["wheels"].as_u64().unwrap() > 20, "{report}");
    assert!(report["uncompressed_bytes"].as_u64().unwrap() < 52_428_800, "over the daemon's 50 MiB limit: {report}");

    let runs = |name: &str| {
        let dir = run.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    };
    // The original package: the daemon would run `uv sync --frozen`, which needs PyPI, and fails for that reason.
    let original = install_offline(&runs("original"), "original", &package, None, "");
    assert!(!original.ok, "the original package installed without a network: the namespace is not offline");
    let cause = original.log.to_lowercase();
    assert!(
        ["dns", "resolv", "connect", "network"].iter().any(|w| cause.contains(w)),
        "the original package failed for another reason than the missing network:\n{}",
        original.log
    );

    let offline = install_offline(&runs("bundle"), "bundle", &bundle, None, "");
    assert!(offline.ok, "the bundle did not install offline:\n{}", offline.log);
    // With the chart's pipIndexUrl (`-i`, unreachable here) and caBundle (PIP_EXTRA_ARGS=--native-tls) set too.
    let mirrored =
        install_offline(&runs("mirror"), "bundle", &bundle, Some("https://pypi-mirror.invalid/simple"), "--native-tls");
    assert!(
        mirrored.ok,
        "the bundle did not install offline with PIP_MIRROR_URL and PIP_EXTRA_ARGS:\n{}",
        mirrored.log
    );

    // Where the installer wrote: the plugin's directory, the uv cache on the daemon's volume, and (uv venv, which
    // inherits the daemon's environment) HOME's .cache/uv; nothing in /root or elsewhere.
    let allowed = ["$PLUGIN_WORKING_PATH/", "$HOME(/tmp)/.cache"];
    let stray: Vec<&String> = offline.writes.iter().filter(|w| !allowed.iter().any(|a| w.starts_with(a))).collect();
    assert!(stray.is_empty(), "the installer wrote outside its directories: {stray:?} (all: {:?})", offline.writes);
    assert!(
        offline.writes.contains("$HOME(/tmp)/.cache/uv"),
        "uv venv no longer writes HOME's cache: {:?}",
        offline.writes
    );
    assert!(offline.writes.contains("$PLUGIN_WORKING_PATH/.uv-cache"), "{:?}", offline.writes);

    eprintln!(
        "plugin bundle: {} -> {} bytes ({} unpacked), {} wheels, bundled in {bundle_seconds:.1} s; offline install \
         (venv + deps + compileall + import) {:.1} s, with -i and --native-tls {:.1} s; the original failed offline \
         after {:.1} s",
        report["input_bytes"],
        report["output_bytes"],
        report["uncompressed_bytes"],
        report["wheels"],
        offline.seconds,
        mirrored.seconds,
        original.seconds
    );
    eprintln!("installer writes (uid {UID}, HOME=/tmp): {:?}", offline.writes);
}
