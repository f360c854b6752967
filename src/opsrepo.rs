//! The ops repo, through git2 only: open a working copy in place or clone a remote into a private temp dir,
//! write files atomically, commit only when the tree changed, push, and on a rejected push start over from
//! the remote's new head.
//!
//! Architecture invariant: this is the only module that runs git. The remote is changed by one thing only, a
//! successful push of a complete commit; every error before it leaves the remote as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use git2::{FetchOptions, IndexAddOption, PushOptions, RemoteCallbacks, Repository, ResetType, Signature};

const REMOTE: &str = "origin";

pub struct OpsRepo {
    repo: Repository,
    /// The branch commits go to and are pushed to.
    branch: String,
    /// The branch a new `branch` starts from (the remote's default).
    base: String,
    /// Where pushes go; None for a working copy without a remote.
    remote_url: Option<String>,
    /// Present when the repo is our own clone; removed on drop.
    _clone: Option<tempfile::TempDir>,
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
    /// (a bare repo path, `file://` URL) is cloned into a temp dir. `branch` defaults to the remote's default.
    pub fn open(spec: &str, branch: Option<&str>) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir()
            && let Ok(repo) = Repository::open(path)
            && !repo.is_bare()
        {
            return Self::in_place(repo, branch);
        }
        Self::clone(spec, branch)
    }

    fn in_place(repo: Repository, branch: Option<&str>) -> Result<Self> {
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
        Ok(Self { branch: current.clone(), base: current, remote_url, repo, _clone: None })
    }

    fn clone(url: &str, branch: Option<&str>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("dify-gitops-ops-").tempdir().context("creating a temp dir")?;
        let repo = Repository::init(dir.path()).context("initialising the clone")?;
        repo.remote(REMOTE, url).with_context(|| format!("'{url}' is not a usable git remote"))?;
        let mut ops = Self {
            repo,
            branch: String::new(),
            base: String::new(),
            remote_url: Some(url.to_string()),
            _clone: Some(dir),
        };
        ops.fetch().with_context(|| format!("cannot reach the ops repo {url}; nothing was changed"))?;
        ops.base = ops.remote_default_branch();
        ops.branch = branch.unwrap_or(&ops.base).to_string();
        ops.reset_to_remote()?;
        Ok(ops)
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

    /// Commits everything under `dir` when the tree differs from HEAD; returns the new commit's id.
    pub fn commit_if_changed(&self, dir: &Path, message: &str) -> Result<Option<git2::Oid>> {
        let mut index = self.repo.index().context("reading the index")?;
        index.add_all([dir], IndexAddOption::DEFAULT, None).context("staging the overlay")?;
        index.update_all([dir], None).context("staging removed files")?;
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
        Ok(Some(id))
    }

    /// Pushes the branch to the remote.
    pub fn push(&self) -> Result<Pushed> {
        let Some(url) = &self.remote_url else { return Ok(Pushed::NoRemote) };
        let mut remote = self.repo.find_remote(REMOTE).context("finding the remote")?;
        let mut refused = None;
        let mut callbacks = RemoteCallbacks::new();
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
        let result = remote.push(&[refspec.as_str()], Some(PushOptions::new().remote_callbacks(callbacks)));
        match result {
            Ok(()) => Ok(refused.map_or(Pushed::Yes, Pushed::Rejected)),
            Err(e) if is_race(&e) => Ok(Pushed::Rejected(e.message().to_string())),
            Err(e) => Err(e).with_context(|| format!("pushing to the ops repo {url}")),
        }
    }

    /// After a rejected push: fetch and move the branch to the remote's head, dropping our unpushed commit.
    pub fn refresh(&mut self) -> Result<()> {
        if self._clone.is_none() {
            bail!("the push was rejected: the remote has new commits; pull them into the working copy and run again");
        }
        self.fetch().context("fetching the ops repo after a rejected push")?;
        self.reset_to_remote()
    }

    fn fetch(&self) -> Result<()> {
        let mut remote = self.repo.find_remote(REMOTE)?;
        remote.fetch(&["+refs/heads/*:refs/remotes/origin/*"], Some(&mut FetchOptions::new()), None)?;
        Ok(())
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

/// The git directory of a remote on this machine (a path or file:// URL), if it is one.
fn local_git_dir(url: &str) -> Option<PathBuf> {
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    if url.contains("://") && !url.starts_with("file://") {
        return None;
    }
    Repository::open(path).ok().map(|r| r.path().to_path_buf())
}

/// An exclusive advisory lock, released when the file is closed.
fn lock_file(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the push lock {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {}", path.display()));
    }
    Ok(file)
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

/// The text of a file, or None when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes each file to a temp file beside it, then renames them all: a reader never sees half a file.
pub fn write_atomically(root: &Path, files: &[(PathBuf, &str)]) -> Result<()> {
    let mut staged = Vec::new();
    for (relative, content) in files {
        let path = root.join(relative);
        let dir = path.parent().context("a file path has a directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
        std::io::Write::write_all(&mut temp, content.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        staged.push((temp, path));
    }
    for (temp, path) in staged {
        temp.persist(&path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}
