//! The persistent clone of a remote ops repo, kept between runs so that a scheduled sync fetches only what is
//! new instead of cloning the whole history every time (the clone was most of a no-op sync's wall time).
//!
//! One directory per remote URL under `$XDG_CACHE_HOME/dify-gitops/ops-repos` (or `~/.cache/...`), mode 0700:
//! it holds what the ops repo holds, encrypted secrets included, and nothing else. An exclusive lock is held
//! for as long as a run uses it. Before each use the clone is reset to the remote's head and every file git does
//! not track is removed, so nothing a crashed or foreign run left behind can reach a commit.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{Repository, StatusOptions};
use sha2::{Digest, Sha256};

/// A cache directory for one remote, locked by this process until dropped.
pub struct CachedClone {
    pub dir: PathBuf,
    _lock: std::fs::File,
}

/// The locked cache directory for `url`, or None when there is no usable cache location (no HOME in a
/// minimal container, a read-only file system): then a run clones into a temp dir as before.
pub fn acquire(url: &str) -> Result<Option<CachedClone>> {
    let Some(root) = cache_root() else { return Ok(None) };
    if let Err(error) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&root) {
        tracing::debug!("no ops repo cache at {}: {error}", root.display());
        return Ok(None);
    }
    // A directory made earlier by hand (or by a umask-bound mkdir) may be open to others: close it.
    let mode = std::fs::metadata(&root).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making the ops repo cache {} private (chmod 700)", root.display()))?;
    }
    let key: String = Sha256::digest(url.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect();
    let lock_path = root.join(format!("{key}.lock"));
    let lock = super::files::try_lock_file(&lock_path)?;
    let lock = match lock {
        Some(lock) => lock,
        None => {
            // Shown at the default log level: a scheduled run that seems to hang should say why.
            tracing::warn!(
                "another dify-gitops run is using the cached clone {}; waiting for it to finish",
                root.join(&key).display()
            );
            super::files::lock_file(&lock_path)?
        }
    };
    Ok(Some(CachedClone { dir: root.join(key), _lock: lock }))
}

fn cache_root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("dify-gitops").join("ops-repos"))
}

/// Deletes every file and directory in the work tree that git does not track, ignored ones included.
pub fn remove_untracked(repo: &Repository) -> Result<()> {
    let workdir = repo.workdir().context("a cached clone has a work tree")?;
    let mut options = StatusOptions::new();
    options.include_untracked(true).include_ignored(true).recurse_untracked_dirs(false).recurse_ignored_dirs(false);
    let statuses = repo.statuses(Some(&mut options)).context("listing untracked files in the cached clone")?;
    for entry in statuses.iter() {
        let status = entry.status();
        if !(status.is_wt_new() || status.is_ignored()) {
            continue;
        }
        let Ok(relative) = entry.path() else { continue };
        remove_path(&workdir.join(relative))?;
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let result = if metadata.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.with_context(|| format!("removing the untracked {}", path.display()))
}
