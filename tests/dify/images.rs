//! What each image does beyond running a binary, done here for the process that stands in for it.
//!
//! - **Dify api** (`…-api:<tag>`; api, worker, beat, the migration Job): the tree of `/app/api` is the source at
//!   the tag with the cached virtualenv as `.venv`. The environment starts from the `ENV` lines of Dify's own
//!   `api/Dockerfile` at the tag (read, not copied), with `/app/api` mapped to that tree. With no `command`, the
//!   image's entrypoint runs: Dify's `api/docker/entrypoint.sh`.
//! - **Dify web** (`…-web:<tag>`): the output of `scripts/dify-web-build`, laid out as the image's `/app`. The
//!   environment starts from the `ENV` lines of `.github/docker/dify-web.Dockerfile` (the image the project
//!   publishes) with its build argument `NEXT_PUBLIC_BASE_PATH` from the build; the entrypoint is Dify's
//!   `entrypoint.sh` from the build output, with `/app/` mapped to the build directory.
//! - **Dify plugin daemon** (`…/dify-plugin-daemon:<tag>-local`): the daemon the chart pins, built by
//!   `tests/dify/prepare` from its source archive (`plugin-daemon/bin`). The image's `/app` (its working directory)
//!   holds those binaries, and its storage volume where the chart mounts it (`/app/storage`). The environment
//!   starts from the `ENV` lines of the daemon's `docker/local.dockerfile` (read at run time: `PLATFORM=local`,
//!   `UV_PATH`, …), and the command is that Dockerfile's `ENTRYPOINT`/`CMD` unless the container sets its own:
//!   0.5 runs its `entrypoint.sh`, 0.6 its `commandline migrate` and then `main`, with `/app/` pointed here. What the
//!   image installs for plugins (uv at `UV_PATH`, Python 3.12 as `python3`) is the harness's uv and the Python
//!   the api's virtualenv was made with, on the image's PATH. 0.6's `tini` is left out: no pod here is PID 1.
//! - **postgres** (the official image): `tests/dify/postgres-entrypoint.sh` does what the image's entrypoint
//!   does on first start (initdb with `POSTGRES_USER`/`POSTGRES_PASSWORD`, create `POSTGRES_DB`), with Debian's
//!   PostgreSQL, as the chart's uid (70, the image's `postgres`). `LANG` is a UTF-8 locale as in the image, so the
//!   databases are UTF8.
//! - **redis** (the official image): the rendered `args` with Debian's `redis-server`.
//!
//! Volume mounts of postgres, redis and the plugin daemon become directories of the run; a rendered value that
//! names a mount path (`--dir /data`, `PGDATA`, `PLUGIN_STORAGE_LOCAL_ROOT=/app/storage`, `HOME=/tmp`) is mapped
//! to that directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::credentials::{Ids, Privileges};
use crate::pods::Launch;
use crate::release::{Container, VolumeKind};

/// The image the chart defaults to for `expose.path: /dify`, published by the web-image workflow.
pub const PATH_WEB_IMAGE: &str = "ghcr.io/dify-gitops/dify-web";

/// The base image's PATH (Debian's, as python:3.12-slim and node:22 have it).
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Images {
    /// The unpacked Dify source at the tag.
    pub src: PathBuf,
    pub api_venv: PathBuf,
    /// `scripts/dify-web-build`'s output for `/dify`: what the project's web image holds.
    pub web_build: PathBuf,
    /// The same recipe's output for `/`: what Dify's stock web image holds (built by `prepare VERSION web-root`).
    pub web_root: PathBuf,
    /// The plugin daemon the chart pins: `src/` (its tree) and `bin/` (`main`, and `commandline` where its image
    /// ships it), as `tests/dify/prepare` builds them.
    pub plugin_daemon: PathBuf,
    /// The sandbox the chart pins: `src/`, `bin/` (`main`) and `python/`, as `tests/dify/prepare` builds them.
    pub sandbox: PathBuf,
    /// Weaviate as `prepare` builds it: `bin/weaviate` and the module's `Dockerfile`.
    pub weaviate: PathBuf,
    /// The OpenAI-API-compatible model plugin (not an image: what a user uploads), signed by `prepare` with a key of
    /// the test's (`model-plugin-signed`), and that key's public half, for `pluginDaemon.trustedKeys`.
    pub signed_package: PathBuf,
    pub trusted_key: PathBuf,
    /// The same with its wheels inside (`dify-gitops plugin bundle`), for an air-gapped install.
    pub offline_package: PathBuf,
    /// The package as `dify plugin package` made it (its `pyproject.toml` and `uv.lock`, no wheels), and the
    /// plugin's sources it was made from.
    pub package: PathBuf,
    pub package_src: PathBuf,
    /// What the private PyPI mirror serves (`packages/`): the wheels the plugin's uv.lock names.
    pub pypi_mirror: PathBuf,
    /// Where this run keeps the image trees and volumes.
    pub run_dir: PathBuf,
    pub node_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Api,
    Web,
    PluginDaemon,
    Postgres,
    Redis,
    Sandbox,
    SsrfProxy,
    Weaviate,
}

/// The kind of `image`, or None when the harness does not run it.
pub fn kind_of(image: &str) -> Option<Kind> {
    let name = image.rsplit('/').next().unwrap_or(image);
    let repo = name.split(':').next().unwrap_or(name);
    Some(match repo {
        r if r.ends_with("dify-plugin-daemon") => Kind::PluginDaemon,
        "dify-sandbox" => Kind::Sandbox,
        "squid" => Kind::SsrfProxy,
        "weaviate" => Kind::Weaviate,
        r if r.ends_with("-api") => Kind::Api,
        r if r.ends_with("-web") => Kind::Web,
        "postgres" => Kind::Postgres,
        "redis" => Kind::Redis,
        _ => return None,
    })
}

pub fn kind(image: &str) -> Kind {
    kind_of(image).unwrap_or_else(|| panic!("the harness does not run image {image} yet"))
}

/// An image's own user, as its `/etc/passwd` has it: what a container of the image runs as when its
/// `securityContext` sets no `runAsUser`, and where `HOME` points for that uid.
struct ImageUser {
    name: &'static str,
    uid: u32,
    gid: u32,
    home: &'static str,
}

/// The user of each image the harness knows one for: Dify's api (`useradd -r -u 1001 … dify`, `USER dify` in
/// `api/Dockerfile`) and web (`USER 1001` in the project's `dify-web.Dockerfile`, `USER dify` of uid 1001 in Dify's
/// `web/Dockerfile`); PostgreSQL's and Redis's official Alpine images, whose entrypoints step down to `postgres`
/// (70) and `redis` (999, group 1000). The others (plugin daemon, sandbox, squid, Weaviate) name no user: the chart
/// must.
fn image_user(kind: Kind) -> Option<ImageUser> {
    Some(match kind {
        Kind::Api => ImageUser { name: "dify", uid: 1001, gid: 1001, home: "/home/dify" },
        Kind::Web => ImageUser { name: "dify", uid: 1001, gid: 1001, home: "/home/dify" },
        Kind::Postgres => ImageUser { name: "postgres", uid: 70, gid: 70, home: "/var/lib/postgresql" },
        Kind::Redis => ImageUser { name: "redis", uid: 999, gid: 1000, home: "/dev/null" },
        Kind::PluginDaemon | Kind::Sandbox | Kind::SsrfProxy | Kind::Weaviate => return None,
    })
}

/// Who `c` runs as, as the kubelet and the runtime decide it: `runAsUser` (else the image's user), `runAsGroup`
/// (else the primary group the image's `/etc/passwd` gives that uid, else 0), and as supplementary groups the pod's
/// `fsGroup` and `supplementalGroups`. Panics, naming the container, when neither the rendering nor the image
/// gives a uid (the harness would otherwise run it as root), or when `runAsNonRoot` meets uid 0, which the kubelet
/// refuses to start.
pub fn run_as(c: &Container) -> Ids {
    let image = image_user(kind(&c.image));
    let uid = c.run_as.user.or(image.as_ref().map(|u| u.uid)).unwrap_or_else(|| {
        panic!(
            "container {}/{} ({}): the chart renders no securityContext.runAsUser and the harness knows no user of \
             its image; render a numeric runAsUser (pod or container securityContext)",
            c.workload, c.name, c.image
        )
    });
    let gid = c.run_as.group.or(image.as_ref().filter(|u| u.uid == uid).map(|u| u.gid)).unwrap_or(0);
    assert!(
        !(c.run_as.non_root && uid == 0),
        "container {}/{}: runAsNonRoot with uid 0, which the kubelet refuses to start",
        c.workload,
        c.name
    );
    let mut groups: Vec<u32> =
        c.run_as.fs_group.into_iter().chain(c.run_as.supplemental_groups.iter().copied()).collect();
    groups.sort_unstable();
    groups.dedup();
    Ids { uid, gid, groups }
}

/// The capabilities a container runtime grants a container by default (containerd's and CRI-O's, what NKP's
/// containerd gives), before the rendering's `capabilities.drop` and `.add`.
const RUNTIME_DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The capabilities, no_new_privs and seccomp filter of `c` (of uid `uid`), as the runtime sets them from its
/// rendering: its default capabilities, less `capabilities.drop` (`ALL`: every one), plus `capabilities.add`; the
/// runtime's default filter with `seccompProfile: RuntimeDefault`. Panics on a name no kernel has, and on a
/// profile other than RuntimeDefault or Unconfined.
pub fn privileges(c: &Container, uid: u32) -> Privileges {
    let mask = |name: &str| -> u64 {
        let cap: caps::Capability = format!("CAP_{}", name.trim_start_matches("CAP_").to_uppercase())
            .parse()
            .unwrap_or_else(|_| panic!("container {}/{}: no capability {name:?}", c.workload, c.name));
        cap.bitmask()
    };
    let mut bounding = RUNTIME_DEFAULT_CAPABILITIES.iter().fold(0, |m, n| m | mask(n));
    for name in &c.run_as.capabilities_drop {
        bounding &= if name == "ALL" { 0 } else { !mask(name) };
    }
    for name in &c.run_as.capabilities_add {
        bounding |= mask(name);
    }
    let seccomp = match c.run_as.seccomp.as_deref() {
        Some("RuntimeDefault") => true,
        None | Some("Unconfined") => false,
        Some(other) => panic!("container {}/{}: seccompProfile {other} is not run by the harness", c.workload, c.name),
    };
    Privileges { seccomp, ..Privileges::of(uid, bounding, c.run_as.no_privilege_escalation) }
}

/// What a kubelet does to a volume's directory before the pod starts: an emptyDir is created world-writable, a
/// claim is a fresh filesystem's root (root's, 0755); with an `fsGroup` it becomes that group's, group-writable and
/// setgid (`fsGroupChangePolicy: OnRootMismatch`: only when its group differs). A ConfigMap's files are readable by
/// all and belong to the fsGroup. Only directories of the run are changed.
fn own_volume(dir: &Path, kind: VolumeKind, fs_group: Option<u32>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).unwrap();
    if fs_group.is_some_and(|g| meta.gid() == g) {
        return;
    }
    let base = match kind {
        VolumeKind::EmptyDir => 0o777,
        VolumeKind::Claim | VolumeKind::ConfigMap => 0o755,
    };
    let mode = match (kind, fs_group) {
        (VolumeKind::ConfigMap, _) | (_, None) => base,
        (_, Some(_)) => base | 0o2770,
    };
    if let Some(group) = fs_group {
        std::os::unix::fs::chown(dir, None, Some(group)).unwrap_or_else(|e| panic!("chgrp {}: {e}", dir.display()));
        if kind == VolumeKind::ConfigMap {
            for file in std::fs::read_dir(dir).unwrap().flatten() {
                std::os::unix::fs::lchown(file.path(), None, Some(group)).unwrap();
            }
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The uv on the harness's PATH, which stands in for the one the plugin daemon's image installs (the binary
/// itself: the pods see only the directories `host_dirs` names, not the tools' directory of links).
fn host_uv() -> PathBuf {
    let host_path = std::env::var("PATH").unwrap_or_default();
    let uv = host_path.split(':').map(|d| Path::new(d).join("uv")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("uv is not on PATH (scripts/test-tools install uv): the plugin daemon's image has it")
    });
    std::fs::canonicalize(&uv).unwrap_or_else(|e| panic!("{}: {e}", uv.display()))
}

impl Images {
    /// The host directories the pods read: this version's builds, the Weaviate build they link to, Node, uv, and the
    /// Python the api's virtualenv was made with (its `bin/` and `lib/`).
    pub fn host_dirs(&self) -> Vec<PathBuf> {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        vec![
            self.src.parent().unwrap().to_path_buf(),
            canonical(&self.weaviate),
            self.node_dir.parent().unwrap().to_path_buf(),
            host_uv().parent().unwrap().to_path_buf(),
            canonical(&python_home(&self.api_venv)).parent().unwrap().to_path_buf(),
        ]
    }

    /// `/app/api` of the api image: the source tree's entries linked, `.venv` the cached virtualenv, and (made by
    /// `api` when a container mounts the files volume) `storage`, a real directory shared by every api-image pod, as
    /// the chart's PVC is.
    pub fn api_root(&self) -> PathBuf {
        let root = self.run_dir.join("image-api/app/api");
        if !root.exists() {
            std::fs::create_dir_all(&root).unwrap();
            for entry in std::fs::read_dir(self.src.join("api")).unwrap().flatten() {
                std::os::unix::fs::symlink(entry.path(), root.join(entry.file_name())).unwrap();
            }
            std::os::unix::fs::symlink(&self.api_venv, root.join(".venv")).unwrap();
            // The image gives /app to its user (`chown -R dify:dify /app`): Celery beat writes its schedule file
            // in its working directory, /app/api. The linked source and virtualenv stay read-only.
            let user = image_user(Kind::Api).unwrap();
            for dir in [root.parent().unwrap(), &root] {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        root
    }

    /// What runs for `container` in pod `pod`, as the user its rendering gives it (`run_as`), with `HOME` as the
    /// runtime sets it when the container does not: the home of that uid in the image's `/etc/passwd`, else `/`.
    pub fn launch(&self, container: &Container, pod: &str) -> Launch {
        let kind = kind(&container.image);
        let launch = match kind {
            Kind::Api => self.api(container, pod),
            Kind::Web => self.web(container, pod),
            Kind::PluginDaemon => self.plugin_daemon(container, pod),
            Kind::Postgres => self.postgres(container, pod),
            Kind::Redis => self.redis(container, pod),
            Kind::Sandbox => self.sandbox(container, pod),
            Kind::SsrfProxy => self.ssrf_proxy(container, pod),
            Kind::Weaviate => self.weaviate(container, pod),
        };
        let ids = run_as(container);
        let privileges = privileges(container, ids.uid);
        let user = image_user(kind).filter(|u| u.uid == ids.uid);
        let mut env = launch.env;
        if !env.iter().any(|(k, _)| k == "HOME") {
            let home = user.as_ref().map_or("/", |u| u.home);
            env.insert(0, ("HOME".to_string(), home.to_string()));
        }
        let image_user = user.map(|u| {
            (format!("{}:x:{}:{}::{}:/bin/sh", u.name, u.uid, u.gid, u.home), format!("{}:x:{}:", u.name, u.gid))
        });
        Launch { container: container.name.clone(), ids, privileges, image_user, env, ..launch }
    }

    /// The code sandbox: its image's `/` is a directory of the run, where its working directory is (`main` reads
    /// `conf/config.yaml` and `dependencies/` relative to it, where the chart mounts them). `/var/sandbox`, where it
    /// builds the jail each snippet is chrooted into, is a tmpfs of the pod. The image's Python (`/opt/python`,
    /// with the packages its Dockerfile installs) is the Python `prepare` made; the image's default library paths
    /// (`DEFAULT_PYTHON_LIB_REQUIREMENTS` in the sandbox's source, read here) name its Python 3.14's directories,
    /// so they are mapped to that Python's: `PYTHON_PATH` and `PYTHON_LIB_PATH`, which the sandbox reads before its
    /// defaults. The image's entrypoint unpacks Node.js for the Node runner (not used here) and
    /// runs `/main`.
    fn sandbox(&self, c: &Container, pod: &str) -> Launch {
        let root = self.image_root(c, &self.volumes(c));
        let python = self.sandbox.join("python");
        let defaults = std::fs::read_to_string(self.sandbox.join("src/internal/static/config_default_amd64.go"))
            .expect("reading the sandbox's default library paths");
        let libs = std::fs::read_to_string(self.sandbox.join("python-libs.txt")).expect("reading python-libs.txt");
        // The image's Python library, then the system libraries its extension modules load (the image's
        // /usr/lib/x86_64-linux-gnu holds little else; this host's holds a desktop's worth), then the rest of the
        // defaults (certificates, name resolution, time zones) as they are.
        let mut lib_paths = vec![python.join("lib/python3.12").display().to_string()];
        lib_paths.extend(libs.lines().map(str::to_string));
        lib_paths.extend(
            defaults
                .lines()
                .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix("\",").map(str::to_string))
                .filter(|p| !p.contains("/python3") && p != "/usr/lib/x86_64-linux-gnu"),
        );
        let mut env = vec![
            ("PATH".to_string(), BASE_PATH.to_string()),
            ("PYTHON_PATH".to_string(), python.join("bin/python3").display().to_string()),
            ("PYTHON_LIB_PATH".to_string(), lib_paths.join(",")),
        ];
        env.extend(c.env.iter().cloned());
        assert!(c.command.is_none() && c.args.is_none(), "the sandbox container overrides the image's entrypoint");
        Launch {
            tmpfs: vec![("/var".into(), vec!["/var/sandbox".into()])],
            ..Launch::new(pod, self.sandbox.join("bin/main").display().to_string(), vec![], env, root)
        }
    }

    /// The SSRF proxy: the rendered command with Debian's squid, the ConfigMap's `squid.conf` at the path the
    /// command names (run as the chart's uid 13, `proxy` in Debian as in the image).
    fn ssrf_proxy(&self, c: &Container, pod: &str) -> Launch {
        self.rendered_command(c, pod, "squid")
    }

    /// Weaviate: the server `prepare` built, with its image's `ENTRYPOINT`/`CMD` from the module's Dockerfile and
    /// the data volume a directory of the run.
    fn weaviate(&self, c: &Container, pod: &str) -> Launch {
        let volumes = self.volumes(c);
        let map = |v: &str| map_volumes(v, &volumes);
        let (entrypoint, cmd) = dockerfile_command(&self.weaviate.join("Dockerfile"));
        let argv = container_argv(c, entrypoint, cmd);
        assert_eq!(argv.first().map(String::as_str), Some("/bin/weaviate"), "Weaviate's image runs /bin/weaviate");
        let mut env = vec![("PATH".to_string(), BASE_PATH.to_string())];
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), map(v))));
        Launch::new(pod, self.weaviate.join("bin/weaviate").display().to_string(), argv[1..].to_vec(), env, "/".into())
    }

    fn api(&self, c: &Container, pod: &str) -> Launch {
        let root = self.api_root();
        // The files volume (a claim), as the kubelet hands it to the pod's fsGroup.
        // Without it (files on S3) there is no storage/ at all, as in the image: whatever Dify wrote there would show.
        if c.mounts.iter().any(|m| m.path == "/app/api/storage") {
            std::fs::create_dir_all(root.join("storage")).unwrap();
            own_volume(&root.join("storage"), VolumeKind::Claim, c.run_as.fs_group);
        }
        let map = |v: &str| map_prefix(v, "/app/api", &root);
        // A ConfigMap mounted into the container (the bootstrap Job's script and plugin package) is a directory of
        // the run: an argument or a variable naming a path in it is mapped there. (The files volume is the tree's
        // own storage/, as above.)
        let config_mounts: Vec<(String, PathBuf)> =
            self.volumes(c).into_iter().zip(&c.mounts).filter(|(_, m)| m.config.is_some()).map(|(v, _)| v).collect();
        let map_config = |v: &str| map_volumes(v, &config_mounts);
        let mut env = dockerfile_env(&self.src.join("api/Dockerfile"), &BTreeMap::new(), BASE_PATH);
        env = env.into_iter().map(|(k, v)| (k, map(&v))).collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), map_config(v))));
        let (program, args) = match &c.command {
            Some(command) => {
                let mut args: Vec<String> = command[1..].iter().map(|a| map_config(a)).collect();
                args.extend(c.args.clone().unwrap_or_default());
                (which(&command[0], &env), args)
            }
            None => {
                let entrypoint = self.src.join("api/docker/entrypoint.sh").display().to_string();
                let mut args = vec![entrypoint];
                args.extend(c.args.clone().unwrap_or_default());
                ("/bin/bash".to_string(), args)
            }
        };
        let cwd = c.working_dir.as_deref().map_or(root.clone(), |w| PathBuf::from(map(w)));
        Launch::new(pod, program, args, env, cwd)
    }

    fn web(&self, c: &Container, pod: &str) -> Launch {
        // The project's image for /dify is packaged by its own Dockerfile; Dify's stock image (built for "/") by
        // Dify's web/Dockerfile at the tag.
        let (build_dir, dockerfile) = if c.image.starts_with(&format!("{PATH_WEB_IMAGE}:")) {
            (&self.web_build, Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/docker/dify-web.Dockerfile"))
        } else {
            (&self.web_root, self.src.join("web/Dockerfile"))
        };
        assert!(
            build_dir.join("dify-web-build.json").is_file(),
            "{} is missing for the web image {}: build it with tests/dify/prepare <version> {}",
            build_dir.display(),
            c.image,
            if build_dir == &self.web_root { "web-root" } else { "web" }
        );
        let build: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(build_dir.join("dify-web-build.json")).expect("reading dify-web-build.json"),
        )
        .expect("dify-web-build.json is JSON");
        let base_path = build["basePath"].as_str().unwrap_or_default().to_string();
        let build_args = BTreeMap::from([("NEXT_PUBLIC_BASE_PATH".to_string(), base_path)]);
        let path = format!("{}:{BASE_PATH}", self.node_dir.display());
        let mut env = dockerfile_env(&dockerfile, &build_args, &path);
        env.extend(c.env.iter().cloned());
        assert!(c.command.is_none() && c.args.is_none(), "the web container overrides the image's entrypoint");
        // Dify's entrypoint.sh names /app/... absolutely: the same script, pointed at the build directory.
        let script = std::fs::read_to_string(build_dir.join("entrypoint.sh")).expect("reading entrypoint.sh");
        let dir = self.run_dir.join("image-web");
        std::fs::create_dir_all(&dir).unwrap();
        let entrypoint = dir.join("entrypoint.sh");
        std::fs::write(&entrypoint, script.replace("/app/", &format!("{}/", build_dir.display()))).unwrap();
        Launch::new(pod, "/bin/sh".into(), vec![entrypoint.display().to_string()], env, build_dir.clone())
    }

    fn plugin_daemon(&self, c: &Container, pod: &str) -> Launch {
        let src = self.plugin_daemon.join("src");
        let dockerfile = src.join("docker/local.dockerfile");
        let image = self.run_dir.join("image-plugin-daemon");
        // The image's WORKDIR and home of its binaries, /app.
        let app = image.join("app");
        let volumes = self.volumes(c);
        std::fs::create_dir_all(&app).unwrap();
        for entry in
            std::fs::read_dir(self.plugin_daemon.join("bin")).expect("reading the plugin daemon's bin/").flatten()
        {
            let link = app.join(entry.file_name());
            if !link.exists() {
                std::os::unix::fs::symlink(entry.path(), link).unwrap();
            }
        }
        // Where a volume is mounted inside /app (the storage at /app/storage), /app leads to it too.
        for (mount, dir) in &volumes {
            if let Some(rest) = mount.strip_prefix("/app/") {
                let link = app.join(rest);
                if !link.exists() {
                    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                    std::os::unix::fs::symlink(dir, link).unwrap();
                }
            }
        }
        let map = |v: &str| {
            let mapped = map_volumes(v, &volumes);
            if mapped == v { map_prefix(v, "/app", &app) } else { mapped }
        };
        // What the image installs beside the daemon: uv (`pip install uv`, at /usr/local/bin/uv, named by UV_PATH)
        // and Python 3.12 as python3 (plugins' virtualenvs are made with `uv venv --python 3.12`). Here: the
        // harness's uv, and the Python 3.12 the api's virtualenv was made with.
        let tools = image.join("bin");
        std::fs::create_dir_all(&tools).unwrap();
        let uv = host_uv();
        let python = python_home(&self.api_venv).join("python3.12");
        assert!(python.is_file(), "{} is missing: the plugin daemon's image has Python 3.12", python.display());
        for (name, target) in [("uv", uv), ("python3", python.clone()), ("python3.12", python)] {
            let link = tools.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(target, link).unwrap();
            }
        }
        // Image paths are mapped before host paths join them (the run directory may itself be under /tmp).
        let mut env: Vec<(String, String)> = dockerfile_env(&dockerfile, &BTreeMap::new(), BASE_PATH)
            .into_iter()
            .map(|(k, v)| match (k.as_str(), v.as_str()) {
                ("PATH", _) => (k, format!("{}:{v}", tools.display())),
                (_, "/usr/local/bin/uv") => (k, tools.join("uv").display().to_string()),
                _ => (k, map(&v)),
            })
            .collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), map(v))));
        let (entrypoint, cmd) = dockerfile_command(&dockerfile);
        let mut argv = container_argv(c, entrypoint, cmd);
        // 0.6's image starts under tini (`tini -g --`) so that the daemon is not PID 1, which its Python plugins
        // take for being orphaned. No pod here is PID 1 of a namespace, so the daemon runs without it.
        if argv.first().is_some_and(|a| a.ends_with("/tini"))
            && let Some(at) = argv.iter().position(|a| a == "--")
        {
            argv.drain(..=at);
        }
        assert!(!argv.is_empty(), "the plugin daemon's image has no command: {}", dockerfile.display());
        // The image's scripts name /app/... absolutely (0.5's entrypoint.sh runs /app/main): the same script,
        // pointed at this tree.
        let entrypoint_sh = src.join("entrypoint.sh");
        if argv.iter().any(|a| a.contains("/app/entrypoint.sh")) {
            let script = std::fs::read_to_string(&entrypoint_sh).unwrap();
            let target = app.join("entrypoint.sh");
            std::fs::write(&target, script.replace("/app/", &format!("{}/", app.display()))).unwrap();
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        // Volume paths are mapped word by word, so that a `sh -c` script of the chart (the trust-store init
        // container's) names them too.
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.split(' ').map(|w| map_volumes(w, &volumes)).collect::<Vec<_>>().join(" "))
            .map(|a| a.replace("/app/", &format!("{}/", app.display())))
            .collect();
        let cwd = c.working_dir.as_deref().map_or(app.clone(), |w| PathBuf::from(map(w)));
        // A mount over the image's own files (the CA bundle in /etc/ssl) covers that path in the pod, since the
        // daemon and uv read it by its fixed path, not from a value the harness could map.
        let binds =
            volumes.iter().filter(|(path, _)| path.starts_with("/etc/")).map(|(p, v)| (v.clone(), p.clone())).collect();
        Launch { binds, ..Launch::new(pod, which(&argv[0], &env), argv[1..].to_vec(), env, cwd) }
    }

    /// Each mount of `c` as a path of this run: a volume is the directory `volumes/<workload>/<volume>`, shared by
    /// the pod's containers (its init containers too) as a pod's volume is, holding a ConfigMap's files when it is
    /// one; a mount with a `subPath` is that entry of it. Each is made as the kubelet makes it (`own_volume`).
    fn volumes(&self, c: &Container) -> Vec<(String, PathBuf)> {
        c.mounts
            .iter()
            .map(|m| {
                let dir = self.run_dir.join("volumes").join(&c.workload).join(&m.volume);
                std::fs::create_dir_all(&dir).unwrap();
                for (name, text) in m.config.iter().flatten() {
                    std::fs::write(dir.join(name), text).unwrap();
                }
                own_volume(&dir, m.kind, c.run_as.fs_group);
                let target = m.sub_path.as_ref().map_or(dir.clone(), |sub| dir.join(sub));
                (m.path.clone(), target)
            })
            .collect()
    }

    /// A directory standing for the image's `/` where a binary reads mounted files relative to its working
    /// directory (the sandbox's `conf/config.yaml`): each mount path leads to its volume.
    fn image_root(&self, c: &Container, volumes: &[(String, PathBuf)]) -> PathBuf {
        let root = self.run_dir.join(format!("image-{}", c.workload));
        for (path, target) in volumes {
            let link = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(target, &link).unwrap();
            }
        }
        root
    }

    fn postgres(&self, c: &Container, pod: &str) -> Launch {
        let volumes = self.volumes(c);
        let map = |v: &str| map_volumes(v, &volumes);
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), format!("{POSTGRES_BIN}:{BASE_PATH}")),
            ("PGDATA".into(), "/var/lib/postgresql/data".into()),
            // The image sets LANG=en_US.utf8, so initdb makes UTF8 databases; without a LANG it would make
            // SQL_ASCII ones, where psycopg2 refuses non-ASCII text (an app's emoji icon). This Debian has C.UTF-8.
            ("LANG".into(), "C.UTF-8".into()),
        ];
        env.extend(c.env.iter().cloned());
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k, map(&v))).collect();
        let mut env = env;
        env.push(("POSTGRES_SOCKET_DIR".into(), map("/var/run/postgresql")));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dify/postgres-entrypoint.sh");
        let mut args = vec![script.display().to_string()];
        args.extend(c.args.clone().unwrap_or_default().iter().map(|a| map(a)));
        Launch::new(pod, "/bin/sh".into(), args, env, "/".into())
    }

    fn redis(&self, c: &Container, pod: &str) -> Launch {
        self.rendered_command(c, pod, "redis")
    }

    /// The container's own command and args, run with this host's binary of the same name (Debian's `redis-server`,
    /// `squid`) on the base image's PATH; an argument naming a mount path is mapped to that volume of the run.
    /// `what` names the image when it renders no command.
    fn rendered_command(&self, c: &Container, pod: &str, what: &str) -> Launch {
        let volumes = self.volumes(c);
        let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
        argv.extend(c.args.clone().unwrap_or_default());
        assert!(!argv.is_empty(), "the {what} container runs its image's entrypoint, which the harness does not do");
        let mut env = vec![("PATH".to_string(), BASE_PATH.to_string())];
        env.extend(c.env.iter().cloned());
        let args = argv[1..].iter().map(|a| map_volumes(a, &volumes)).collect();
        Launch::new(pod, which(&argv[0], &env), args, env, "/".into())
    }
}

/// What a container runs, as Kubernetes decides it: `command` replaces the image's ENTRYPOINT (and its CMD), and
/// `args` replaces its CMD.
fn container_argv(c: &Container, entrypoint: Vec<String>, cmd: Vec<String>) -> Vec<String> {
    match (&c.command, &c.args) {
        (Some(command), args) => [command.clone(), args.clone().unwrap_or_default()].concat(),
        (None, Some(args)) => [entrypoint, args.clone()].concat(),
        (None, None) => [entrypoint, cmd].concat(),
    }
}

/// The directory of the Python a virtualenv was made with (`home` in its `pyvenv.cfg`).
fn python_home(venv: &Path) -> PathBuf {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("reading {}: {e}", cfg.display()));
    text.lines()
        .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == "home").map(|(_, v)| PathBuf::from(v.trim())))
        .unwrap_or_else(|| panic!("{} names no home", cfg.display()))
}

/// `value` with a leading `from` (a whole path component) replaced by `to`.
fn map_prefix(value: &str, from: &str, to: &Path) -> String {
    match value.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", to.display()),
        _ => value.to_string(),
    }
}

fn map_volumes(value: &str, volumes: &[(String, PathBuf)]) -> String {
    let mut best: Option<&(String, PathBuf)> = None;
    for v in volumes {
        let matches = value == v.0 || value.starts_with(&format!("{}/", v.0));
        if matches && best.is_none_or(|b| v.0.len() > b.0.len()) {
            best = Some(v);
        }
    }
    best.map_or_else(|| value.to_string(), |(from, to)| map_prefix(value, from, to))
}

/// `program` found on the PATH of `env` (as the container runtime looks it up).
fn which(program: &str, env: &[(String, String)]) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map_or(BASE_PATH, |(_, v)| v.as_str());
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on the image's PATH ({path})"))
        .display()
        .to_string()
}

/// The environment the `ENV` lines of a Dockerfile's last stage (and the stages it is built `FROM`) give, with
/// `${VAR}`/`$VAR` expanded from what came before, the build arguments, and `PATH` starting as `base_path`.
pub fn dockerfile_env(
    dockerfile: &Path,
    build_args: &BTreeMap<String, String>,
    base_path: &str,
) -> Vec<(String, String)> {
    let (stages, chain) = stage_chain(dockerfile);
    let mut env: Vec<(String, String)> = vec![("PATH".into(), base_path.into())];
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    for &i in chain.iter().rev() {
        for (word, rest) in stages[i].2.iter().filter(|(w, _)| w == "ENV" || w == "ARG") {
            let lookup = |env: &Vec<(String, String)>, args: &BTreeMap<String, String>, name: &str| {
                env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| args.get(name).cloned())
            };
            for (key, value) in assignments(rest) {
                if word == "ARG" {
                    let value = build_args.get(&key).cloned().or(value).unwrap_or_default();
                    args.insert(key, value);
                } else {
                    let value = substitute(&value.unwrap_or_default(), |n| lookup(&env, &args, n));
                    env.push((key, value));
                }
            }
        }
    }
    env
}

/// A build stage: its name, the stage or image it is built `FROM`, and its other instructions in order (the
/// instruction's word in upper case, and the rest of it).
type Stage = (String, String, Vec<(String, String)>);

/// The stages of a Dockerfile, and the indexes of its last stage and the stages it is built `FROM`, last first.
/// Continuation lines are joined; the bodies of heredocs (`RUN <<EOF … EOF`) are not instructions and are skipped.
fn stage_chain(dockerfile: &Path) -> (Vec<Stage>, Vec<usize>) {
    let text = std::fs::read_to_string(dockerfile).unwrap_or_else(|e| panic!("reading {}: {e}", dockerfile.display()));
    let mut stages: Vec<Stage> = Vec::new();
    let joined = text.replace("\\\n", " ");
    let mut heredoc: Option<String> = None;
    for line in joined.lines().map(str::trim) {
        if let Some(end) = &heredoc {
            if line == end {
                heredoc = None;
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let word = word.to_ascii_uppercase();
        if let Some(at) = rest.find("<<") {
            let marker = rest[at + 2..].trim_start_matches('-');
            let marker: String = marker.chars().take_while(|c| !c.is_whitespace()).collect();
            let marker = marker.trim_matches(|c| c == '"' || c == '\'');
            if !marker.is_empty() && marker.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                heredoc = Some(marker.to_string());
            }
        }
        if word == "FROM" {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let name = match parts.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push((name, parts.first().unwrap_or(&"").to_string(), Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push((word, rest.trim().to_string()));
        }
    }
    let mut chain = Vec::new();
    let mut current = stages.len().checked_sub(1);
    while let Some(i) = current {
        chain.push(i);
        let parent = &stages[i].1;
        current = stages[..i].iter().rposition(|s| &s.0 == parent);
    }
    (stages, chain)
}

/// The image's `ENTRYPOINT` and `CMD` (each empty when not set), as the last stage or the stages it is built
/// `FROM` last set them. The exec form is a JSON array; the shell form runs under `/bin/sh -c`.
pub fn dockerfile_command(dockerfile: &Path) -> (Vec<String>, Vec<String>) {
    let (stages, chain) = stage_chain(dockerfile);
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    for &i in chain.iter().rev() {
        for (word, rest) in &stages[i].2 {
            let argv = || -> Vec<String> {
                serde_json::from_str(rest).unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), rest.clone()])
            };
            match word.as_str() {
                "ENTRYPOINT" => {
                    entrypoint = argv();
                    // Docker: setting ENTRYPOINT clears a CMD set before it.
                    cmd.clear();
                }
                "CMD" => cmd = argv(),
                _ => {}
            }
        }
    }
    (entrypoint, cmd)
}

/// `K=V K2="V 2"` or the legacy `K V` form.
fn assignments(rest: &str) -> Vec<(String, Option<String>)> {
    if !rest.contains('=') || rest.split_whitespace().next().is_some_and(|w| !w.contains('=')) {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let v = v.trim();
        return vec![(k.to_string(), (!v.is_empty()).then(|| v.trim_matches('"').to_string()))];
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            out.push((key, None));
            continue;
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                _ => value.push(c),
            }
            chars.next();
        }
        out.push((key, Some(value)));
    }
    out
}

fn substitute(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            (&inner[..end], end + 2)
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        out.push_str(&lookup(name).unwrap_or_default());
        rest = &after[len.min(after.len())..];
    }
    out.push_str(rest);
    out
}

#[test]
fn dockerfile_env_follows_stages_and_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(
        &file,
        "FROM x AS base\nARG BP=\"\"\nENV BP=\"$BP\"\nFROM base AS build\nENV NOT=seen\nFROM base AS production\n\
         ENV VIRTUAL_ENV=/app/api/.venv\nENV PATH=\"${VIRTUAL_ENV}/bin:${PATH}\"\nENV A=1 B=\"two words\"\nENV C 3\n",
    )
    .unwrap();
    let env = dockerfile_env(&file, &BTreeMap::from([("BP".into(), "/dify".into())]), "/bin");
    let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("BP"), Some("/dify"));
    assert_eq!(get("NOT"), None);
    assert_eq!(get("PATH"), Some("/app/api/.venv/bin:/bin"));
    assert_eq!((get("A"), get("B"), get("C")), (Some("1"), Some("two words"), Some("3")));
}

#[test]
fn dockerfile_command_follows_stages_and_skips_heredocs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(
        &file,
        "FROM x AS build\nCMD [\"never\"]\nFROM y\nARG P=local\nRUN <<EOF bash\nset -e\nENV NOT=seen\nCMD nope\nEOF\n\
         ENV PLATFORM=$P\nCMD [\"/bin/bash\", \"-c\", \"/app/run\"]\n",
    )
    .unwrap();
    let (entrypoint, cmd) = dockerfile_command(&file);
    assert!(entrypoint.is_empty());
    assert_eq!(cmd, ["/bin/bash", "-c", "/app/run"]);
    let env = dockerfile_env(&file, &BTreeMap::new(), "/bin");
    assert_eq!(env, [("PATH".to_string(), "/bin".to_string()), ("PLATFORM".to_string(), "local".to_string())]);
    std::fs::write(&file, "FROM y\nCMD [\"a\"]\nENTRYPOINT [\"/usr/bin/tini\", \"--\"]\n").unwrap();
    assert_eq!(dockerfile_command(&file), (vec!["/usr/bin/tini".to_string(), "--".to_string()], vec![]));
    std::fs::write(&file, "FROM y\nCMD exec /app/main\n").unwrap();
    assert_eq!(dockerfile_command(&file).1, ["/bin/sh", "-c", "exec /app/main"]);
}

#[cfg(test)]
fn container(image: &str, run_as: crate::release::RunAs) -> Container {
    Container {
        workload: "dify-weaviate".into(),
        name: "weaviate".into(),
        image: image.into(),
        command: None,
        args: None,
        env: vec![],
        working_dir: None,
        ports: Default::default(),
        mounts: vec![],
        readiness: None,
        startup: None,
        liveness: None,
        run_as,
    }
}

#[test]
fn run_as_follows_the_rendering_then_the_image() {
    use crate::release::RunAs;
    let rendered = RunAs { user: Some(1000), group: Some(1000), fs_group: Some(1000), ..Default::default() };
    assert_eq!(
        run_as(&container("semitechnologies/weaviate:1.27.0", rendered)),
        Ids { uid: 1000, gid: 1000, groups: vec![1000] }
    );
    // No runAsUser: the image's user and its primary group (postgres:alpine's 70), the fsGroup beside.
    let fs_group_only = RunAs { fs_group: Some(70), supplemental_groups: vec![5, 70], ..Default::default() };
    assert_eq!(
        run_as(&container("postgres:15.14-alpine", fs_group_only)),
        Ids { uid: 70, gid: 70, groups: vec![5, 70] }
    );
    // A uid the image does not name has group 0 unless the rendering sets one.
    let other = RunAs { user: Some(4242), ..Default::default() };
    assert_eq!(run_as(&container("redis:6.2.20-alpine", other)), Ids { uid: 4242, gid: 0, groups: vec![] });
}

#[test]
fn privileges_follow_the_runtime_defaults_and_the_rendering() {
    use crate::release::RunAs;
    let names = |p: &Privileges| p.to_string();
    // The sandbox's rendering: all dropped, six added; root holds them.
    let sandbox = RunAs {
        user: Some(0),
        capabilities_drop: vec!["ALL".into()],
        capabilities_add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "SYS_CHROOT"]
            .map(String::from)
            .into(),
        no_privilege_escalation: true,
        ..Default::default()
    };
    let p = privileges(&container("langgenius/dify-sandbox:0.2.15", sandbox), 0);
    assert_eq!(names(&p), "nnp  -        CHOWN,DAC_OVERRIDE,FOWNER,SETGID,SETUID,SYS_CHROOT");
    assert_eq!(p.bounding, p.effective);
    // Nothing rendered: the runtime's fourteen, which another uid keeps only in its bounding set.
    let p = privileges(&container("semitechnologies/weaviate:1.27.0", RunAs::default()), 1000);
    assert_eq!((p.bounding.count_ones(), p.effective, p.no_new_privs), (14, 0, false));
    // Dropping one of the defaults by name.
    let drop_kill = RunAs { capabilities_drop: vec!["KILL".into()], ..Default::default() };
    let p = privileges(&container("semitechnologies/weaviate:1.27.0", drop_kill), 0);
    assert!(p.effective.count_ones() == 13 && !names(&p).contains("KILL"));
}

#[test]
#[should_panic(expected = "container dify-weaviate/weaviate (semitechnologies/weaviate:1.27.0): the chart renders no")]
fn run_as_fails_naming_a_container_without_a_uid() {
    run_as(&container("semitechnologies/weaviate:1.27.0", crate::release::RunAs::default()));
}

#[test]
#[should_panic(expected = "runAsNonRoot with uid 0")]
fn run_as_refuses_root_under_run_as_non_root() {
    let root = crate::release::RunAs { user: Some(0), non_root: true, ..Default::default() };
    run_as(&container("langgenius/dify-sandbox:0.2.15", root));
}
