//! `dify-gitops audit`: finds what must never be in an ops repo — a Kubernetes Secret that is not SOPS-encrypted, a
//! password or key in a ConfigMap or values file, a committed age identity or PEM private key, a SOPS file whose
//! MAC does not verify — in the working tree and, with `--history`, in every commit reachable from HEAD.
//!
//! Files: here the sources ([`run`] feeds files and git blobs, read through the ops-repo module's read-only
//! [`RepoReader`]: no checkout, nothing written); `rules.rs` the rules (pure: [`scan`], a path and its text in,
//! findings out); `report.rs` the table. **A finding never carries the value
//! it found**: only the file, line or commit, the key, a redacted hint (kind and length) and the fix.

mod report;
mod rules;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};

use crate::opsrepo::read::{BlobId, RepoReader};

pub use report::{Report, table};
pub use rules::{Finding, Rule, Severity, is_sensitive_key, scan};

/// Files larger than this are not read (an ops repo holds manifests, not blobs).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

pub struct Options<'a> {
    pub root: &'a Path,
    pub history: bool,
    pub identities: &'a [age::x25519::Identity],
}

/// Scans the working tree of `root` (a bare repository: its HEAD) and, with `history`, every commit reachable from
/// HEAD. History reports only file versions that differ from the working tree, each with the commit that
/// introduced it.
pub fn run(options: &Options) -> Result<Report> {
    let root = options.root;
    let repo = RepoReader::open(root);
    if options.history && !repo.is_repository() {
        anyhow::bail!("{} is not a git repository: --history reads its commits (drop --history to scan files)", {
            root.display()
        });
    }
    let mut findings = Vec::new();
    let mut current: HashMap<String, BlobId> = HashMap::new();
    let mut files = 0;
    if repo.is_bare() {
        for file in repo.head_files()? {
            if let Some(text) = repo.blob_text(file.blob, MAX_FILE_BYTES)? {
                files += 1;
                findings.extend(scan(&file.path, &text, options.identities));
            }
            current.insert(file.path, file.blob);
        }
    } else {
        for path in repo.work_tree_files()? {
            let relative = relative(root, &path);
            let Some(text) = read_text(&path)? else { continue };
            files += 1;
            findings.extend(scan(&relative, &text, options.identities));
            current.insert(relative, BlobId::of_text(&text)?);
        }
    }
    let mut commits = 0;
    if options.history {
        let (walked, scanned, found) = scan_history(&repo, &current, options.identities)?;
        commits = walked;
        files += scanned;
        findings.extend(found);
    }
    findings.sort_by(|a, b| (&a.commit, &a.path, a.line, a.rule).cmp(&(&b.commit, &b.path, b.line, b.rule)));
    let clean = findings.iter().all(|f| f.severity != Severity::Error);
    Ok(Report { clean, files, commits, findings })
}

/// Every file version of the history that is not in the working tree, scanned once, with the first commit that
/// holds it.
fn scan_history(
    repo: &RepoReader,
    current: &HashMap<String, BlobId>,
    identities: &[age::x25519::Identity],
) -> Result<(usize, usize, Vec<Finding>)> {
    let mut seen: HashSet<(String, BlobId)> = HashSet::new();
    let (mut scanned, mut findings) = (0, Vec::new());
    let commits = repo.for_each_commit(|commit, tree| {
        for file in tree {
            if current.get(&file.path) == Some(&file.blob) || !seen.insert((file.path.clone(), file.blob)) {
                continue;
            }
            let Some(text) = repo.blob_text(file.blob, MAX_FILE_BYTES)? else { continue };
            scanned += 1;
            for mut finding in scan(&file.path, &text, identities) {
                finding.commit = Some(commit.to_string());
                finding.fix = finding.rule.fix(true);
                findings.push(finding);
            }
        }
        Ok(())
    })?;
    Ok((commits, scanned, findings))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned()
}

/// A file's text, or None when it is binary, too large or not UTF-8.
fn read_text(path: &Path) -> Result<Option<String>> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if size > MAX_FILE_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.iter().take(8000).any(|&b| b == 0) {
        return Ok(None);
    }
    Ok(String::from_utf8(bytes).ok())
}
