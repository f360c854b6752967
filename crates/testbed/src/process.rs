//! Child processes that cannot outlive the testbed: each is started with `PR_SET_PDEATHSIG`, so the kernel
//! kills it when the thread that spawned it dies (even on SIGKILL of the testbed), and [`Child`] kills and
//! reaps it on drop.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// A loopback TCP port that was free a moment ago, for a server the caller starts soon after.
///
/// Not the kernel's answer to a bind of port 0: that comes from the ephemeral range, which the kernel also hands
/// to every outgoing connection, and the tests open hundreds (to the kube-apiserver, to Traefik, to Dify). So the
/// port could be some connection's local port by the time the server binds it; a Flux controller once stopped on
/// `bind: address already in use` that way. A port outside that range is only taken by an explicit bind. This
/// process walks those ports from a random start, so its servers never get the same port twice, and two test
/// processes running at once rarely do.
pub fn free_port() -> Result<u16> {
    static START: OnceLock<u32> = OnceLock::new();
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let ports = listening_ports()?;
    let span = u32::from(ports.end - ports.start);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // Without the OS random source every process starts at the same place; the probing below still holds.
        let _ = getrandom::fill(&mut bytes);
        u32::from_ne_bytes(bytes) % span
    });
    for _ in 0..span {
        let offset = (start + TAKEN.fetch_add(1, Ordering::Relaxed)) % span;
        let port = ports.start + offset as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {ports:?}, the ports outside the kernel's ephemeral range")
}

/// The ports free_port hands out: the larger stretch outside `net.ipv4.ip_local_port_range`, above 10000 (below
/// it live the well-known servers of a developer's machine).
fn listening_ports() -> Result<Range<u16>> {
    const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(RANGE).with_context(|| format!("reading {RANGE}"))?;
    let bounds: Vec<u16> = text.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [low, high] = bounds[..] else { bail!("{RANGE} holds {text:?}, not two port numbers") };
    let below = 10_000..low.max(10_000);
    let above = high.saturating_add(1).max(10_000)..u16::MAX;
    let ports = if below.len() >= above.len() { below } else { above };
    if ports.len() < 1_000 {
        bail!(
            "{RANGE} is {low} {high}, which leaves fewer than 1000 ports above 10000 for the tests' servers; \
             narrow it, for example: sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""
        );
    }
    Ok(ports)
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
