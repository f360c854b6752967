//! A read-only view of a repository, for `audit`: the files of the work tree (or of a bare repository's HEAD) and
//! every commit reachable from HEAD, object by object. Nothing is checked out, locked or written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use git2::{ErrorCode, ObjectType, Oid, Repository, Sort, TreeWalkMode, TreeWalkResult};

/// A blob's id: the same for the same content, in a commit or hashed from a file of the work tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(Oid);

impl BlobId {
    /// The id git gives a blob holding `text`.
    pub fn of_text(text: &str) -> Result<Self> {
        Ok(Self(Oid::hash_object(ObjectType::Blob, text.as_bytes()).context("hashing a file")?))
    }
}

/// A file of a commit's tree: its path from the root and its blob.
#[derive(Debug, Clone)]
pub struct TreeFile {
    pub path: String,
    pub blob: BlobId,
}

/// A directory that may be a git repository (a working copy or a bare one), opened for reading only.
pub struct RepoReader {
    root: PathBuf,
    repo: Option<Repository>,
}

impl RepoReader {
    /// Opens `root`; a directory that is not a repository is read as plain files.
    pub fn open(root: &Path) -> Self {
        Self { root: root.to_path_buf(), repo: Repository::open(root).ok() }
    }

    pub fn is_repository(&self) -> bool {
        self.repo.is_some()
    }

    /// A repository without a work tree: its files are HEAD's.
    pub fn is_bare(&self) -> bool {
        self.repo.as_ref().is_some_and(Repository::is_bare)
    }

    /// The files of HEAD's tree (none on an unborn branch or outside a repository).
    pub fn head_files(&self) -> Result<Vec<TreeFile>> {
        let Some(repo) = &self.repo else { return Ok(Vec::new()) };
        match repo.head() {
            Ok(head) => files_of(&head.peel_to_tree().context("reading HEAD's tree")?),
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("reading HEAD"),
        }
    }

    /// The files under the root, sorted, skipping `.git`, symlinks and what git ignores (it is not committed).
    pub fn work_tree_files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, self.repo.as_ref(), &mut out)?;
        Ok(out)
    }

    /// A blob's text, or None when it is binary, larger than `max_bytes` or not UTF-8.
    pub fn blob_text(&self, blob: BlobId, max_bytes: u64) -> Result<Option<String>> {
        let Some(repo) = &self.repo else { bail!("{} is not a git repository", self.root.display()) };
        let found = repo.find_blob(blob.0).with_context(|| format!("reading blob {}", blob.0))?;
        if found.is_binary() || found.size() as u64 > max_bytes {
            return Ok(None);
        }
        Ok(std::str::from_utf8(found.content()).ok().map(str::to_string))
    }

    /// Calls `visit` with the id and files of every commit reachable from HEAD, oldest first (topologically);
    /// returns how many there were (none on an unborn branch).
    pub fn for_each_commit(&self, mut visit: impl FnMut(&str, &[TreeFile]) -> Result<()>) -> Result<usize> {
        let Some(repo) = &self.repo else { bail!("{} is not a git repository", self.root.display()) };
        let mut walk = repo.revwalk().context("walking the history")?;
        match walk.push_head() {
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => return Ok(0),
            Err(e) => return Err(e).context("reading HEAD"),
        }
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
        let mut commits = 0;
        for id in walk {
            let commit = repo.find_commit(id.context("walking the history")?)?;
            commits += 1;
            visit(&commit.id().to_string(), &files_of(&commit.tree()?)?)?;
        }
        Ok(commits)
    }
}

/// Every blob of a tree with its path (submodules and symlinks skipped).
fn files_of(tree: &git2::Tree) -> Result<Vec<TreeFile>> {
    let mut out = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob) && entry.filemode() != 0o120000 {
            out.push(TreeFile { path: format!("{dir}{}", entry.name().unwrap_or("")), blob: BlobId(entry.id()) });
        }
        TreeWalkResult::Ok
    })
    .context("walking a tree")?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, repo: Option<&Repository>, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type()?;
        if entry.file_name() == ".git" || kind.is_symlink() {
            continue;
        }
        if let Some(repo) = repo
            && repo.is_path_ignored(path.strip_prefix(root).unwrap_or(&path)).unwrap_or(false)
        {
            continue;
        }
        if kind.is_dir() {
            walk(root, &path, repo, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
