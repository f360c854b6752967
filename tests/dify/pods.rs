//! Pods as processes: each container runs as a child process in the test's network namespace (see
//! `support/traefik.rs`), on the address of its pod, with what a kubelet would give it that a bare process lacks:
//! - its own UTS namespace whose hostname is the pod's name (Celery names its node after it, probes use it);
//! - its own mount namespace where `/etc/hosts` is the harness's file: every Service of the release by its short
//!   and full names, and every pod by its name, to the address behind it (the name resolution a cluster's DNS
//!   gives);
//! - a clean environment: only what the image and the rendered container set, plus `HOSTNAME`;
//! - its volume mounts as directories of the test run, mapped by path (see `images.rs`).
//!
//! Every child dies with the test process (`PR_SET_PDEATHSIG`) and is killed by its pid when its [`Process`] drops.

use std::ffi::CString;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::traefik::StubNet;

/// Where the pods live: the namespace, the hosts file they all see, and the test run's directory.
pub struct Cluster {
    pub net: StubNet,
    pub dir: PathBuf,
    pub hosts: PathBuf,
    entries: Mutex<Vec<(Ipv4Addr, String)>>,
}

/// What to run, as a pod would run it.
#[derive(Clone)]
pub struct Launch {
    pub pod: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Run as this user (name from /etc/passwd) instead of root, e.g. `postgres`, which refuses root.
    pub user: Option<String>,
    /// Fresh tmpfs mounts in the pod's mount namespace: (an existing directory, directories to create in it).
    /// For absolute paths a binary names that the host lacks (the sandbox's `/var/sandbox`): only the pod sees
    /// them, and they go with it.
    pub tmpfs: Vec<(String, Vec<String>)>,
    /// Bind mounts in the pod's mount namespace: (a file or directory of the run, an existing path it covers).
    /// For mounts over the image's own files that a binary reads by their fixed path (the system CA bundle).
    pub binds: Vec<(PathBuf, String)>,
}

impl Launch {
    /// `program` with `args` and `env` in `cwd`, as root, with no mount of its own beyond the hosts file.
    pub fn new(pod: &str, program: String, args: Vec<String>, env: Vec<(String, String)>, cwd: PathBuf) -> Launch {
        Launch { pod: pod.to_string(), program, args, env, cwd, user: None, tmpfs: vec![], binds: vec![] }
    }
}

pub struct Process {
    pub pod: String,
    pub log: PathBuf,
    child: Mutex<Child>,
}

impl Cluster {
    pub fn create(dir: &Path) -> Cluster {
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("writing the hosts file");
        Cluster { net: StubNet::create_pod_network(), dir: dir.to_path_buf(), hosts, entries: Mutex::new(Vec::new()) }
    }

    /// Adds names for `ip` to the hosts file every pod reads (rewritten in place: bind mounts keep the inode).
    pub fn add_names(&self, ip: Ipv4Addr, names: &[String]) {
        let mut entries = self.entries.lock().unwrap();
        entries.extend(names.iter().map(|n| (ip, n.clone())));
        let mut text = String::from("127.0.0.1 localhost\n");
        for (ip, name) in entries.iter() {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(&self.hosts, text).expect("rewriting the hosts file");
    }

    /// Starts `launch` in the namespace; its stdout and stderr go to `<dir>/logs/<pod>.log`.
    pub fn start(&self, launch: Launch) -> Process {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{}.log", launch.pod));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("opening the pod log");
        let err = out.try_clone().unwrap();
        let mut command = Command::new(&launch.program);
        // The runtime sets HOSTNAME to the pod name; a container that sets it itself wins.
        command.args(&launch.args).env_clear().env("HOSTNAME", &launch.pod).envs(launch.env.iter().cloned());
        command.current_dir(&launch.cwd).stdin(Stdio::null()).stdout(out).stderr(err);
        let hostname = CString::new(launch.pod.clone()).unwrap();
        let hosts = CString::new(self.hosts.to_str().unwrap()).unwrap();
        let target = CString::new("/etc/hosts").unwrap();
        let root = CString::new("/").unwrap();
        let ids = launch.user.as_deref().map(user_ids);
        if let Some((uid, gid)) = ids {
            // What the container writes to /dev/stdout (squid's access log) opens the log file again, as its user.
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("handing the pod log to the pod's user");
        }
        let tmpfs: Vec<(CString, Vec<CString>)> = launch
            .tmpfs
            .iter()
            .map(|(at, dirs)| {
                (CString::new(at.as_str()).unwrap(), dirs.iter().map(|d| CString::new(d.as_str()).unwrap()).collect())
            })
            .collect();
        let tmpfs_type = CString::new("tmpfs").unwrap();
        let binds: Vec<(CString, CString)> = launch
            .binds
            .iter()
            .map(|(from, to)| (CString::new(from.to_str().unwrap()).unwrap(), CString::new(to.as_str()).unwrap()))
            .collect();
        // SAFETY: only async-signal-safe system calls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                // A process group of its own, so that dropping the pod kills what its entrypoint started too.
                check(libc::setpgid(0, 0))?;
                check(libc::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWNS))?;
                check(libc::sethostname(hostname.as_ptr(), hostname.as_bytes().len()))?;
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(hosts.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
                for (from, to) in &binds {
                    check(libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
                }
                for (at, dirs) in &tmpfs {
                    check(libc::mount(tmpfs_type.as_ptr(), at.as_ptr(), tmpfs_type.as_ptr(), 0, std::ptr::null()))?;
                    for dir in dirs {
                        check(libc::mkdir(dir.as_ptr(), 0o755))?;
                    }
                }
                if let Some((uid, gid)) = ids {
                    check(libc::setgroups(0, std::ptr::null()))?;
                    check(libc::setgid(gid))?;
                    check(libc::setuid(uid))?;
                }
                Ok(())
            });
        }
        let child = self
            .net
            .spawn(command)
            .unwrap_or_else(|e| panic!("starting {} for pod {}: {e}", launch.program, launch.pod));
        Process { pod: launch.pod, log, child: Mutex::new(child) }
    }
}

/// uid and gid of a user in /etc/passwd.
pub fn user_ids(name: &str) -> (libc::uid_t, libc::gid_t) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("no user {name} in /etc/passwd (is its Debian package installed?)"))
}

impl Process {
    /// The exit status when the process has ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits for the process to end, as a Job's pod does; panics with its log when it fails or overruns.
    pub fn wait_success(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                assert!(status.success(), "pod {} failed ({status}); its log:\n{}", self.pod, self.log_tail(60));
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "pod {} still running after {timeout:?}; its log:\n{}",
                self.pod,
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        // The whole tree (gunicorn's workers, a probe still running) is in the child's process group.
        // SAFETY: kill(2) on the child's own process group.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// True when something accepts TCP connections on `ip:port` (from this host, through the veth pair).
pub fn tcp_open(ip: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)).is_ok()
}
