//! The ops repo, through git2 only: open a working copy in place, or bring a remote (path, file://, https://,
//! ssh://) into a cached clone (or a private temp dir); write files atomically, commit only when the tree
//! changed, push, and on a rejected push start over from the remote's new head.
//!
//! Architecture invariant: this is the only module that runs git. `audit` reads repositories through [`read`],
//! which opens them read-only. The remote is changed by one thing only, a
//! successful push of a complete commit; every error before it leaves the remote as it was.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use git2::{FetchOptions, FetchPrune, PushOptions, Repository, ResetType, Signature};

mod cache;
mod files;
mod https;
pub mod read;
pub mod transport;

use files::lock_file;
pub use files::{read_if_exists, write_atomically};
pub use transport::Access;

const REMOTE: &str = "origin";

/// Where the work tree lives, which decides what a rejected push may do.
enum Checkout {
    /// The operator's working copy: never reset, never cleaned.
    InPlace,
    /// Our own clone in a temp dir, removed on drop.
    Temporary(#[allow(dead_code)] tempfile::TempDir),
    /// Our own clone in the cache, locked while we use it.
    Cached(#[allow(dead_code)] cache::CachedClone),
}

pub struct OpsRepo {
    repo: Repository,
    /// The branch commits go to and are pushed to.
    branch: String,
    /// The branch a new `branch` starts from (the remote's default).
    base: String,
    /// Where pushes go; None for a working copy without a remote.
    remote_url: Option<String>,
    checkout: Checkout,
    access: Access,
}

/// How a push ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Yes,
    /// The remote moved on (another sync pushed first): fetch, re-plan, retry.
    Rejected(String),
    /// A working copy without a remote: the commit stays local.
    NoRemote,
}

impl OpsRepo {
    /// Opens `spec`: a working copy is used in place (pushing to its `origin` when it has one); anything else
    /// (a bare repo path, a `file://`, `https://` or `ssh://` URL) is cloned, into the cache when `reuse_clone`
    /// and a cache directory is available, else into a temp dir. `branch` defaults to the remote's default.
    pub fn open(spec: &str, branch: Option<&str>, access: Access, reuse_clone: bool) -> Result<Self> {
        // libgit2's transports are process-wide: `https://` is ours from the first repo opened on.
        https::register(&access.https)?;
        // Strict creation looks up every entry of each tree written, to prove it exists: a commit that changes one
        // environment re-wrote the root and apps/ trees, 2 x 100 lookups of loose objects for a config of 100
        // environments. Our trees come from the index, whose blobs `add_path` has just written.
        git2::opts::strict_object_creation(false);
        let path = Path::new(spec);
        if path.is_dir()
            && let Ok(repo) = Repository::open(path)
            && !repo.is_bare()
        {
            return Self::in_place(repo, branch, access);
        }
        transport::check_url(spec)?;
        let (dir, checkout) = match reuse_clone.then(|| cache::acquire(spec)).transpose()?.flatten() {
            Some(cached) => (cached.dir.clone(), Checkout::Cached(cached)),
            None => {
                let temp =
                    tempfile::Builder::new().prefix("dify-gitops-ops-").tempdir().context("creating a temp dir")?;
                (temp.path().to_path_buf(), Checkout::Temporary(temp))
            }
        };
        let mut ops = Self::clone_into(&dir, spec, access, checkout)?;
        match ops.start(branch) {
            Ok(()) => Ok(ops),
            // A cached clone that fails for any reason but the remote's is made again from scratch.
            Err(error) if matches!(ops.checkout, Checkout::Cached(_)) && !is_remote_error(&error) => {
                tracing::warn!("the cached clone {} is unusable ({error:#}); cloning afresh", dir.display());
                let Self { repo, access, checkout, .. } = ops;
                drop(repo);
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing the cached clone {}", dir.display()))?;
                let mut ops = Self::clone_into(&dir, spec, access, checkout)?;
                ops.start(branch)?;
                Ok(ops)
            }
            Err(error) => {
                // A cache made just now for a remote that cannot be reached would only be litter.
                if matches!(ops.checkout, Checkout::Cached(_))
                    && ops.repo.references_glob("refs/remotes/*")?.next().is_none()
                {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(error)
            }
        }
    }

    fn in_place(repo: Repository, branch: Option<&str>, access: Access) -> Result<Self> {
        let current = match repo.head() {
            Ok(head) => head.shorthand().map(str::to_string).unwrap_or_else(|_| "main".into()),
            Err(_) => "main".into(), // unborn: a fresh repository
        };
        if let Some(wanted) = branch
            && wanted != current
        {
            bail!("the working copy is on branch {current}, not {wanted}: check it out first, or pass the repo's URL");
        }
        let remote_url = repo.find_remote(REMOTE).ok().and_then(|r| r.url().ok().map(str::to_string));
        Ok(Self { branch: current.clone(), base: current, remote_url, repo, checkout: Checkout::InPlace, access })
    }

    /// The repository in `dir`: reused when it is a clone of `url` with a work tree (a cached clone), else
    /// made empty with `url` as its remote.
    fn clone_into(dir: &Path, url: &str, access: Access, checkout: Checkout) -> Result<Self> {
        let existing = Repository::open(dir).ok().filter(|repo| {
            repo.workdir().is_some() && repo.find_remote(REMOTE).ok().is_some_and(|r| r.url() == Ok(url))
        });
        let repo = match existing {
            Some(repo) => repo,
            None => {
                if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                    std::fs::remove_dir_all(dir)
                        .with_context(|| format!("removing the stale clone {}", dir.display()))?;
                }
                let repo = Repository::init(dir).context("initialising the clone")?;
                repo.remote(REMOTE, url)
                    .with_context(|| format!("'{}' is not a usable git remote", transport::redact(url)))?;
                repo
            }
        };
        let remote_url = Some(url.to_string());
        Ok(Self { repo, branch: String::new(), base: String::new(), remote_url, checkout, access })
    }

    /// Fetches the remote, checks out the branch's (or the base's) head, and removes untracked files.
    fn start(&mut self, branch: Option<&str>) -> Result<()> {
        let url = transport::redact(self.remote_url.as_deref().unwrap_or_default());
        self.fetch().with_context(|| format!("cannot reach the ops repo {url}; nothing was changed"))?;
        self.base = self.remote_default_branch();
        self.branch = branch.unwrap_or(&self.base).to_string();
        self.reset_to_remote()?;
        cache::remove_untracked(&self.repo)
    }

    pub fn workdir(&self) -> &Path {
        self.repo.workdir().expect("ops repos have a work tree")
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Writes files (relative path, content) so that each is either old or new, never half-written.
    pub fn write(&self, files: &[(PathBuf, &str)]) -> Result<()> {
        write_atomically(self.workdir(), files)
    }

    /// Commits everything under `dir` when the tree differs from HEAD; returns the new commit's id (hex).
    pub fn commit_if_changed(&self, dir: &Path, message: &str) -> Result<Option<String>> {
        let mut index = self.repo.index().context("reading the index")?;
        self.stage(&mut index, dir)?;
        index.write().context("writing the index")?;
        let tree_id = index.write_tree().context("writing the tree")?;
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id)?;
        let signature = self.signature()?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let reference = format!("refs/heads/{}", self.branch);
        let id = self
            .repo
            .commit(Some(&reference), &signature, &signature, message, &tree, &parents)
            .context("committing the overlay")?;
        if parent.is_none() {
            self.repo.set_head(&reference).context("pointing HEAD at the new branch")?;
        }
        Ok(Some(id.to_string()))
    }

    /// Stages `dir` as `git add --all dir` does: new and changed files (ignored ones only when already tracked)
    /// and removed ones. It walks `dir` alone: libgit2's `add_all`/`update_all` walk the whole work tree whatever
    /// the pathspec, which made a sync of 100 environments 100 walks of 300 files (most of its wall time).
    fn stage(&self, index: &mut git2::Index, dir: &Path) -> Result<()> {
        let root = self.workdir();
        let mut present = Vec::new();
        files_under(root, dir, &mut present)?;
        for path in &present {
            let tracked = index.get_path(path, 0).is_some();
            if tracked || !self.repo.is_path_ignored(path).context("reading .gitignore")? {
                index.add_path(path).with_context(|| format!("staging {}", path.display()))?;
            }
        }
        let removed: Vec<PathBuf> = index
            .iter()
            .map(|entry| PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path)))
            .filter(|path| path.starts_with(dir) && std::fs::symlink_metadata(root.join(path)).is_err())
            .collect();
        for path in &removed {
            index.remove_path(path).with_context(|| format!("staging the removal of {}", path.display()))?;
        }
        Ok(())
    }

    /// Pushes the branch to the remote.
    pub fn push(&self) -> Result<Pushed> {
        let Some(url) = &self.remote_url else { return Ok(Pushed::NoRemote) };
        let mut remote = self.repo.find_remote(REMOTE).context("finding the remote")?;
        let mut refused = None;
        let mut callbacks = self.access.callbacks();
        callbacks.push_update_reference(|_, status| {
            refused = status.map(str::to_string);
            Ok(())
        });
        // libgit2's local transport checks fast-forward and updates the ref in two steps: two local pushes can
        // interleave and the second overwrites the first. For a remote on this machine we do what a git server
        // does: lock, compare the remote's head with the one we started from, then push.
        let _lock = match local_git_dir(url) {
            Some(git_dir) => {
                let lock = lock_file(&git_dir.join("dify-gitops-push.lock"))?;
                let remote_head = Repository::open(&git_dir)
                    .ok()
                    .and_then(|r| r.refname_to_id(&format!("refs/heads/{}", self.branch)).ok());
                let started_from = self.repo.refname_to_id(&format!("refs/remotes/{REMOTE}/{}", self.branch)).ok();
                if remote_head != started_from {
                    return Ok(Pushed::Rejected("the remote branch moved since it was fetched".into()));
                }
                Some(lock)
            }
            None => None,
        };
        let refspec = format!("refs/heads/{0}:refs/heads/{0}", self.branch);
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks).proxy_options(transport::proxy());
        let result = remote.push(&[refspec.as_str()], Some(&mut options));
        drop(options);
        match result {
            Ok(()) => Ok(refused.map_or(Pushed::Yes, Pushed::Rejected)),
            Err(e) if is_race(&e) => Ok(Pushed::Rejected(e.message().to_string())),
            Err(e) => Err(transport::explain(e, url))
                .with_context(|| format!("pushing to the ops repo {}", transport::redact(url))),
        }
    }

    /// After a rejected push: fetch and move the branch to the remote's head, dropping our unpushed commit.
    pub fn refresh(&mut self) -> Result<()> {
        if matches!(self.checkout, Checkout::InPlace) {
            bail!("the push was rejected: the remote has new commits; pull them into the working copy and run again");
        }
        self.fetch().context("fetching the ops repo after a rejected push")?;
        self.reset_to_remote()?;
        // As at the start: files this attempt wrote that the new head does not track must not reach the retry.
        cache::remove_untracked(&self.repo)
    }

    fn fetch(&self) -> Result<()> {
        let mut remote = self.repo.find_remote(REMOTE)?;
        let mut options = FetchOptions::new();
        // Pruned: a review branch deleted on the remote must not be resurrected from a stale tracking ref.
        options.remote_callbacks(self.access.callbacks()).proxy_options(transport::proxy()).prune(FetchPrune::On);
        let url = remote.url().map(str::to_string).unwrap_or_default();
        remote
            .fetch(&["+refs/heads/*:refs/remotes/origin/*"], Some(&mut options), None)
            .map_err(|e| transport::explain(e, &url))
    }

    fn remote_default_branch(&self) -> String {
        for candidate in ["main", "master"] {
            if self.repo.find_reference(&format!("refs/remotes/{REMOTE}/{candidate}")).is_ok() {
                return candidate.to_string();
            }
        }
        "main".to_string()
    }

    /// Points the branch at the remote's (or the base's) head and checks it out; an empty remote gives an
    /// unborn branch.
    fn reset_to_remote(&self) -> Result<()> {
        let start = [&self.branch, &self.base]
            .iter()
            .find_map(|b| self.repo.find_reference(&format!("refs/remotes/{REMOTE}/{b}")).ok());
        let reference = format!("refs/heads/{}", self.branch);
        match start {
            Some(remote_ref) => {
                let commit = remote_ref.peel_to_commit().context("reading the remote head")?;
                self.repo.reference(&reference, commit.id(), true, "dify-gitops: start from the remote")?;
                self.repo.set_head(&reference)?;
                self.repo.reset(commit.as_object(), ResetType::Hard, None).context("checking out the remote head")?;
            }
            None => self.repo.set_head(&reference)?,
        }
        Ok(())
    }

    fn signature(&self) -> Result<Signature<'static>> {
        match self.repo.signature() {
            Ok(signature) => Ok(signature.to_owned()),
            Err(_) => Signature::now("dify-gitops", "dify-gitops@localhost").context("making a commit signature"),
        }
    }
}

/// Every file (or symlink) under `dir`, as paths relative to `root`; nothing when `dir` does not exist.
fn files_under(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("listing {}", root.join(dir).display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", root.join(dir).display()))?;
        let path = dir.join(entry.file_name());
        if entry.file_type().with_context(|| format!("reading {}", path.display()))?.is_dir() {
            files_under(root, &path, found)?;
        } else {
            found.push(path);
        }
    }
    Ok(())
}

/// The git directory of a remote on this machine (a path or file:// URL), if it is one.
fn local_git_dir(url: &str) -> Option<PathBuf> {
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    if url.contains("://") && !url.starts_with("file://") {
        return None;
    }
    Repository::open(path).ok().map(|r| r.path().to_path_buf())
}

/// Errors that come from reaching the remote (network, TLS, SSH, credentials): a fresh clone would fail the same.
fn is_remote_error(error: &anyhow::Error) -> bool {
    use git2::ErrorClass::{Callback, Http, Net, Os, Ssh, Ssl};
    error.chain().filter_map(|e| e.downcast_ref::<git2::Error>()).any(|e| {
        matches!(e.class(), Net | Ssl | Ssh | Http | Callback | Os)
            || e.code() == git2::ErrorCode::Auth
            || e.code() == git2::ErrorCode::Certificate
    })
}

/// Errors that mean "someone else pushed first" (or holds the ref lock right now).
fn is_race(error: &git2::Error) -> bool {
    let message = error.message().to_lowercase();
    error.code() == git2::ErrorCode::NotFastForward
        || error.code() == git2::ErrorCode::Locked
        || ["non-fast-forward", "fast-forward", "fetch first", "lock", "failed to update ref"]
            .iter()
            .any(|s| message.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths in HEAD's tree, sorted.
    fn committed(repo: &Repository) -> Vec<String> {
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        let mut paths = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                paths.push(format!("{dir}{}", entry.name().unwrap()));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        paths.sort();
        paths
    }

    #[test]
    fn a_commit_stages_its_directory_as_git_add_all_would_and_nothing_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, text: &str| {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        };
        Repository::init(root).unwrap();
        let access = Access::from_env(None, None).unwrap();
        let ops = OpsRepo::open(root.to_str().unwrap(), None, access, false).unwrap();
        write(".gitignore", "*.tmp\n");
        write("apps/a/dify/values.yaml", "1");
        write("apps/a/dify/gone.yaml", "1");
        write("apps/a/dify/nested/kept.yaml", "1");
        write("apps/b/dify/values.yaml", "1");
        assert!(ops.commit_if_changed(Path::new("apps/a/dify"), "first").unwrap().is_some());
        assert_eq!(
            committed(&ops.repo),
            ["apps/a/dify/gone.yaml", "apps/a/dify/nested/kept.yaml", "apps/a/dify/values.yaml"]
        );

        write("apps/a/dify/values.yaml", "2");
        write("apps/a/dify/scratch.tmp", "ignored");
        write("apps/a/dify/new.yaml", "1");
        std::fs::remove_file(root.join("apps/a/dify/gone.yaml")).unwrap();
        write("apps/b/dify/values.yaml", "2");
        assert!(ops.commit_if_changed(Path::new("apps/a/dify"), "second").unwrap().is_some());
        assert_eq!(
            committed(&ops.repo),
            ["apps/a/dify/nested/kept.yaml", "apps/a/dify/new.yaml", "apps/a/dify/values.yaml"],
            "new and changed files staged, the removed one too, the ignored one and apps/b left out"
        );
        let head = ops.repo.head().unwrap().peel_to_tree().unwrap();
        let values = head.get_path(Path::new("apps/a/dify/values.yaml")).unwrap().to_object(&ops.repo).unwrap();
        assert_eq!(values.as_blob().unwrap().content(), b"2");
        assert_eq!(ops.commit_if_changed(Path::new("apps/a/dify"), "third").unwrap(), None, "nothing new");
    }
}
