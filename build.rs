//! Build-time version information: `dify-gitops --version` prints the crate version and the git revision it was
//! built from, e.g. `dify-gitops 0.1.0 (git 1a2b3c4d5e6f)`.
//!
//! The revision is `$DIFY_GITOPS_REVISION` when set (a build outside a checkout: a source tarball, a container
//! build), else `git rev-parse --short=12 HEAD` of this package's own checkout, else `unknown`. The build script
//! reruns when HEAD moves (checkout, commit, fetch) or the variable changes, and at no other time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DIFY_GITOPS_REVISION");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let revision = std::env::var("DIFY_GITOPS_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| git_revision(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_string());
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    println!("cargo:rustc-env=DIFY_GITOPS_REVISION={revision}");
    println!("cargo:rustc-env=DIFY_GITOPS_VERSION={version} (git {revision})");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The short revision of HEAD, only when this package is the top of its own checkout (not a crate unpacked inside
/// some other repository), with rerun-if-changed on the files that move when HEAD does.
fn git_revision(manifest_dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(manifest_dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    let git_dir = PathBuf::from(git(manifest_dir, &["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(manifest_dir, &["rev-parse", "--git-common-dir"]).map_or(git_dir.clone(), |dir| {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() { dir } else { manifest_dir.join(dir) }
    });
    let head = git_dir.join("HEAD");
    let mut watched = vec![head.clone(), common_dir.join("packed-refs")];
    if let Some(reference) =
        std::fs::read_to_string(&head).ok().and_then(|h| h.strip_prefix("ref: ").map(str::to_string))
    {
        watched.push(common_dir.join(reference.trim()));
    }
    // A path that does not exist would make cargo rerun this script on every build: watch only existing ones.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(manifest_dir, &["rev-parse", "--short=12", "HEAD"])
}
