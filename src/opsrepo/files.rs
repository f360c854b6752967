//! Files in the ops repo's work tree and the locks around it: nothing here knows about git.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// An exclusive advisory lock, released when the file is closed.
pub fn lock_file(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = open_lock(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {}", path.display()));
    }
    Ok(file)
}

fn open_lock(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))
}

/// The lock, or None when another process holds it.
pub fn try_lock_file(path: &Path) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let file = open_lock(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(None);
    }
    Err(error).with_context(|| format!("locking {}", path.display()))
}
