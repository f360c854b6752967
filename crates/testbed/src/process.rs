//! Child processes that cannot outlive the testbed: each is started with `PR_SET_PDEATHSIG`, so the kernel
//! kills it when the thread that spawned it dies (even on SIGKILL of the testbed), and [`Child`] kills and
//! reaps it on drop.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Child {
    name: &'static str,
    inner: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, program: &Path, args: &[String], log: PathBuf) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let inner = command.spawn().with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self { name, inner, log })
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Fails with the tail of the log when the process has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.inner.try_wait().context("polling child")? {
            bail!("{} exited early ({status}); last lines of {}:\n{}", self.name, self.log.display(), self.log_tail());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

/// A loopback TCP port that was free a moment ago (the caller binds it soon after).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Finds `name` on PATH, with the fix in the error when it is not there.
pub fn find_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()).with_context(|| {
        format!(
            "`{name}` is not on PATH; install the pinned test tools and put them on PATH: \
                 scripts/test-tools install && export PATH=\"$(scripts/test-tools path):$PATH\""
        )
    })
}
