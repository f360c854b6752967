//! A real OpenSSH server on loopback serving the git repositories under a directory, so that tests can drive
//! `ssh://` remotes end to end (libgit2 + libssh2 in `dify-gitops sync`, or the `git` and `ssh` CLIs) and prove that
//! unknown host keys and unauthorised client keys are refused by a real server, not by a stub.
//!
//! Each [`Sshd`] has its own temp dir with a fresh ed25519 host key, an ed25519 client key pair (no passphrase), an
//! `authorized_keys` and an `sshd_config`; `sshd` comes from the `openssh-server` Debian package
//! (`scripts/test-tools install debian`). It logs in as the user running the tests, whose login shell runs
//! `git-upload-pack`/`git-receive-pack` from `/usr/bin`.
//!
//! Root and non-root: run as another user than root, `sshd` skips its privilege-separation chroot and can only log
//! in as that user, which is all the tests need; it does not read `/etc/shadow` then, so a locked password (`!`,
//! as `useradd` leaves it) does not matter. Run as root, it chroots its pre-auth child into `/run/sshd` and refuses
//! to start without it; the package ships no such directory (systemd or the init script makes it at service start,
//! neither runs here), and `/run` is emptied at every boot, so [`Sshd::start`] creates it itself when root.
//! With `UsePAM no`, root must not have a locked password either (Debian images have `*`, which is not locked).
//!
//! Nothing outlives the test: `sshd` is killed by its pid and reaped on drop, and it is spawned with
//! `PR_SET_PDEATHSIG`, so the kernel sends it SIGTERM when the spawning thread ends, even when the test process is
//! killed. That ties it to the thread that called [`Sshd::start`]: keep the server on that thread (a `#[test]`
//! function), not in a static shared across test threads.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Started by absolute path: sshd re-executes itself for every connection and refuses a relative one.
pub const SSHD: &str = "/usr/sbin/sshd";
pub const INSTALL_HINT: &str = "scripts/test-tools install debian (Debian package openssh-server)";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sshd {
    pub port: u16,
    pub pid: u32,
    /// The login user: the one running the tests.
    pub user: String,
    /// The client's private key (mode 0600) and public key, the one `authorized_keys` lists.
    pub client_key: PathBuf,
    pub client_public_key: PathBuf,
    /// A known_hosts file holding [`Sshd::host_key_line`] and nothing else.
    pub known_hosts: PathBuf,
    /// sshd's own log (`-e`: everything it would send to syslog).
    pub log: PathBuf,
    pub dir: PathBuf,
    repos_root: PathBuf,
    /// `ssh-ed25519 AAAA…` of the server's host key.
    host_key: String,
    process: Child,
    _temp: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd on a free loopback port, serving the repositories under `repos_root`; panics with the log's
    /// path and tail when it does not come up.
    pub fn start(repos_root: &Path) -> Sshd {
        assert!(Path::new(SSHD).is_file(), "{SSHD} is missing: {INSTALL_HINT}");
        let repos_root = repos_root.canonicalize().expect("repos_root exists");
        let (user, shell) = current_user();
        assert!(
            Path::new(&shell).is_file() && !shell.ends_with("nologin") && !shell.ends_with("false"),
            "the login shell of {user} ({shell}) cannot run git-upload-pack over ssh"
        );
        // SAFETY: geteuid cannot fail and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            ensure_privsep_dir();
        }
        let temp = tempfile::Builder::new().prefix("dify-gitops-sshd").tempdir().expect("sshd temp dir");
        let dir = temp.path().to_path_buf();
        let host_key_file = dir.join("host_key");
        keygen(&host_key_file, "dify-gitops test host");
        let client_key = dir.join("client_key");
        keygen(&client_key, "dify-gitops test client");
        // ssh refuses a private key others can read; ssh-keygen writes 0600 already, this states it.
        std::fs::set_permissions(&client_key, PermissionsExt::from_mode(0o600)).expect("chmod client key");
        let client_public_key = dir.join("client_key.pub");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(&client_public_key, &authorized_keys).expect("writing authorized_keys");
        let host_key = public_key(&host_key_file.with_extension("pub"));
        let log = dir.join("sshd.log");

        let version = sshd_version();
        // A port free a moment ago can be taken before sshd binds it: then sshd exits at once and we try another.
        for _ in 0..5 {
            let port = super::net::free_port();
            let config = dir.join("sshd_config");
            std::fs::write(&config, sshd_config(&dir, port, &user, version)).expect("writing sshd_config");
            let mut process = spawn(&config, &log);
            match wait_ready(&mut process, port) {
                Ok(()) => {
                    let known_hosts = dir.join("known_hosts");
                    let server = Sshd {
                        port,
                        pid: process.id(),
                        user,
                        client_key,
                        client_public_key,
                        known_hosts,
                        log,
                        dir,
                        repos_root,
                        host_key,
                        process,
                        _temp: temp,
                    };
                    std::fs::write(&server.known_hosts, format!("{}\n", server.host_key_line()))
                        .expect("writing known_hosts");
                    return server;
                }
                Err(reason) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if !text.contains("Address already in use") {
                        stop(&mut process);
                        let kept = temp.keep();
                        panic!("sshd did not start: {reason}; log {}:\n{text}", kept.join("sshd.log").display());
                    }
                }
            }
        }
        let kept = temp.keep();
        panic!("sshd found no free loopback port in 5 attempts; log {}", kept.join("sshd.log").display());
    }

    /// `ssh://<user>@127.0.0.1:<port>/<abs path of repo under repos_root>`.
    pub fn url(&self, repo: &str) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, self.repos_root.join(repo).display())
    }

    /// The known_hosts line for this server: `[127.0.0.1]:<port> ssh-ed25519 AAAA…`.
    pub fn host_key_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// A `GIT_SSH_COMMAND` that logs in with `key` and trusts only the hosts in `known_hosts`, never asking: no
    /// user or system ssh config (`-F /dev/null`), no agent keys, strict host key checking, batch mode.
    pub fn git_ssh_command(&self, key: &Path, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes",
            shell_quote(key),
            shell_quote(known_hosts)
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server and waits for it, as dropping it does.
    pub fn stop(self) {}
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.process);
    }
}

fn sshd_config(dir: &Path, port: u16, user: &str, version: (u32, u32)) -> String {
    let d = dir.display();
    let mut config = format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/host_key\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         AllowUsers {user}\n\
         # authorized_keys lives under /tmp (world-writable, outside the home directory): StrictModes rejects that.\n\
         StrictModes no\n\
         # Debian's PAM stack for sshd needs root (pam_loginuid); public-key checks do not need PAM.\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         AuthenticationMethods publickey\n\
         # The default, stated: root logs in by key only (tests run as root on some machines).\n\
         PermitRootLogin prohibit-password\n\
         # Git needs none of these; a non-root sshd could not write lastlog anyway.\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         PermitTTY no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         # Logs the fingerprint of each accepted and each refused key.\n\
         LogLevel VERBOSE\n"
    );
    // OpenSSH 9.8 blocks an address after repeated failed logins; tests fail logins on purpose, all from 127.0.0.1.
    if version >= (9, 8) {
        config.push_str("PerSourcePenalties no\n");
    }
    config
}

/// `(major, minor)` from `sshd -V` (`OpenSSH_9.2p1 …` on stderr).
fn sshd_version() -> (u32, u32) {
    let output = Command::new(SSHD).arg("-V").output().expect("running sshd -V");
    let text = String::from_utf8_lossy(&output.stderr);
    let version = text.split("OpenSSH_").nth(1).unwrap_or_else(|| panic!("sshd -V printed no version: {text}"));
    let mut numbers = version.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn spawn(config: &Path, log: &Path) -> Child {
    let out = File::create(log).expect("creating the sshd log");
    let err = out.try_clone().expect("sshd log handle");
    let mut command = Command::new(SSHD);
    // -D: stay in the foreground, so the pid we hold is the server's; -e: log to stderr, i.e. the log file.
    command.arg("-D").arg("-e").arg("-f").arg(config).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap_or_else(|e| panic!("starting {SSHD}: {e}; {INSTALL_HINT}"))
}

/// Ready once the port answers with an SSH banner: a listening socket alone could still be someone else's.
fn wait_ready(process: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = process.try_wait().expect("polling sshd") {
            return Err(format!("it exited ({status})"));
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_secs(2))).expect("read timeout");
            let mut banner = [0u8; 8];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            stop(process);
            return Err(format!("127.0.0.1:{port} sent no SSH banner within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM by pid, then SIGKILL if it lingers; reaped either way, so the pid is gone when this returns.
fn stop(process: &mut Child) {
    // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet, so not reused.
    unsafe { libc::kill(process.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(process.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = process.kill();
    let _ = process.wait();
}

/// Running as root, sshd needs `/run/sshd`, root-owned and not group- or world-writable (see the module doc).
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).expect("chmod /run/sshd"),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("creating /run/sshd, sshd's privilege-separation directory: {e}"),
    }
}

fn keygen(path: &Path, comment: &str) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running ssh-keygen: {e} (Debian package openssh-client)"));
    assert!(output.status.success(), "ssh-keygen for {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
}

/// `ssh-ed25519 AAAA…` from a `.pub` file, its comment dropped.
fn public_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("reading a public key");
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Name and login shell of the effective user, from the password database (as sshd sees them).
fn current_user() -> (String, String) {
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the reentrant getpwuid_r writes only into `entry` and `buffer`, which outlive the strings read below.
    let rc = unsafe { libc::getpwuid_r(libc::geteuid(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    assert!(rc == 0 && !found.is_null(), "the current user has no passwd entry, so sshd cannot log in as them");
    // SAFETY: both fields point into `buffer` as NUL-terminated strings.
    let text = |p: *const libc::c_char| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned();
    let shell = text(entry.pw_shell);
    // An empty shell field means /bin/sh, to sshd as to login.
    (text(entry.pw_name), if shell.is_empty() { "/bin/sh".to_string() } else { shell })
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
