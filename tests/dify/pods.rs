//! Pods as processes: each container runs as a child process in the test's network namespace (see
//! `support/traefik.rs`), on the address of its pod, with what a kubelet would give it that a bare process lacks:
//! - its own UTS namespace whose hostname is the pod's name (Celery names its node after it, probes use it);
//! - its own mount namespace where:
//!   - `/etc/resolv.conf` and `/etc/hosts` are what a kubelet writes: the cluster's DNS (`cluster_dns.rs`) with the
//!     search list of the release's namespace, and `localhost` plus the pod's own name on its address. Services
//!     resolve through that DNS only, by the names a pod uses (`dify-api`, `dify-api.dify`, the full name);
//!   - `/etc` is an overlay of the host's with a writable layer of the container's own (a container's writable
//!     layer), where the image's user is in `passwd` and `group` when the host lacks its uid (PostgreSQL's `initdb`
//!     looks itself up) and where whatever a container writes to `/etc` stays (the sandbox adds users);
//!   - the directories a pod must read that lie under a directory others cannot enter (the builds under `~`, mode
//!     700; the run directory in the testbed's private directory) are reachable: that directory is covered by a
//!     tmpfs of mode 755 into which only those paths are bind-mounted back, at the same paths (a virtualenv names
//!     its own), the builds read-only. Nothing outside the run directory changes owner or mode;
//! - the uid, gid and supplementary groups the rendered `securityContext` gives it, set last, so that the process
//!   reaches only what that uid may; before them, its capabilities (the bounding set the rendering leaves of the
//!   runtime's defaults, which is what root keeps across exec), `no_new_privs` (`allowPrivilegeEscalation:
//!   false`) and the runtime's seccomp filter (`seccompProfile: RuntimeDefault`). `images.rs` decides them and
//!   `credentials.rs` applies them;
//! - the pod's own cgroup, entered first, by which the release's NetworkPolicies are enforced on its connections
//!   (`pod_firewall.rs`);
//! - a clean environment: only what the image and the rendered container set, plus `HOSTNAME` and `HOME`;
//! - its volume mounts as directories of the test run, mapped by path (see `images.rs`).
//!
//! An exec probe enters the mount and UTS namespaces and the cgroup of the container it probes, as `kubectl exec`
//! does.
//! Every child dies with the test process (`PR_SET_PDEATHSIG`) and is killed by its pid when its [`Process`] drops.

use std::ffi::CString;
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster_dns::ClusterDns;
use crate::credentials::{Ids, PreparedPrivileges, Privileges, ids_of, privileges_of, set_ids};
use crate::pod_firewall::PodFirewall;
use crate::support::traefik::StubNet;

/// Where the pods live: the network, its DNS, the namespace of the release, and the test run's directory.
pub struct Cluster {
    pub net: StubNet,
    pub dns: ClusterDns,
    /// Each pod's cgroup, and the release's NetworkPolicies enforced on them.
    pub firewall: PodFirewall,
    pub namespace: String,
    pub dir: PathBuf,
    /// The `/etc/resolv.conf` of every pod.
    resolv_conf: PathBuf,
    /// Each pod's address, for the pod's own line in its `/etc/hosts`.
    pods: Mutex<Vec<(Ipv4Addr, String)>>,
    /// Directories covered in each pod so that the paths under them that pods need are reachable.
    views: Vec<View>,
    /// Every container started (not the probes): who it should run as and who it ran as.
    pub started: Mutex<Vec<Started>>,
}

/// A directory others cannot enter, covered in each pod by a tmpfs of mode 755 holding only `keep`: paths under
/// it bind-mounted back at the same place, read-only unless marked writable.
struct View {
    cover: PathBuf,
    keep: Vec<(PathBuf, bool)>,
}

/// A container as started: its pod, name and process, the credentials its rendering gives it, and those its
/// process had right after exec (None when it had already ended).
pub struct Started {
    pub pod: String,
    pub container: String,
    pub pid: u32,
    pub expected: Ids,
    pub seen: Option<Ids>,
    pub privileges: Privileges,
    pub seen_privileges: Option<Privileges>,
}

/// What to run, as a pod would run it.
#[derive(Clone)]
pub struct Launch {
    pub pod: String,
    /// The container's name in the pod spec.
    pub container: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Who it runs as (root until `images.rs` says otherwise from the rendering).
    pub ids: Ids,
    /// Its capabilities and no_new_privs (the host root's until `images.rs` says otherwise).
    pub privileges: Privileges,
    /// The image's own user, as lines of its `/etc/passwd` and `/etc/group`, for when the host lacks that uid.
    pub image_user: Option<(String, String)>,
    /// Fresh tmpfs mounts in the pod's mount namespace: (an existing directory, directories to create in it).
    /// For absolute paths a binary names that the host lacks (the sandbox's `/var/sandbox`): only the pod sees
    /// them, and they go with it.
    pub tmpfs: Vec<(String, Vec<String>)>,
    /// Bind mounts in the pod's mount namespace: (a file or directory of the run, an existing path it covers).
    /// For mounts over the image's own files that a binary reads by their fixed path (the system CA bundle).
    pub binds: Vec<(PathBuf, String)>,
    /// An exec probe: the pid of the container whose mount and UTS namespaces it enters.
    pub join: Option<u32>,
}

impl Launch {
    /// `program` with `args` and `env` in `cwd`, as root, with no mount of its own beyond the kubelet's files.
    pub fn new(pod: &str, program: String, args: Vec<String>, env: Vec<(String, String)>, cwd: PathBuf) -> Launch {
        Launch {
            pod: pod.to_string(),
            container: String::new(),
            program,
            args,
            env,
            cwd,
            ids: Ids { uid: 0, gid: 0, groups: vec![] },
            privileges: Privileges::host_root(),
            image_user: None,
            tmpfs: vec![],
            binds: vec![],
            join: None,
        }
    }
}

pub struct Process {
    pub pod: String,
    pub log: PathBuf,
    child: Mutex<Child>,
}

fn cstring(path: &Path) -> CString {
    CString::new(path.to_str().expect("a UTF-8 path")).unwrap()
}

impl Cluster {
    /// The pods of a run in `dir`, in `namespace`. `readable` are the host directories pods read (the builds, the
    /// tools); the run directory is readable and writable. Where one lies under a directory that others cannot
    /// enter, each pod gets the view described above.
    pub fn create(dir: &Path, namespace: &str, readable: &[PathBuf]) -> Cluster {
        let net = StubNet::create_pod_network();
        let dns = ClusterDns::start(&net, net.new_address(), dir, &dir.join("logs"));
        let firewall = PodFirewall::create();
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(&resolv_conf, dns.resolv_conf(namespace)).expect("writing the pods' resolv.conf");
        let mut views: Vec<View> = Vec::new();
        let paths = readable.iter().map(|p| (p.clone(), false)).chain([(dir.to_path_buf(), true)]);
        for (path, writable) in paths {
            let path = std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let Some(cover) = closed_ancestor(&path) else { continue };
            match views.iter_mut().find(|v| v.cover == cover) {
                Some(view) => view.keep.push((path, writable)),
                None => views.push(View { cover, keep: vec![(path, writable)] }),
            }
        }
        Cluster {
            net,
            dns,
            firewall,
            namespace: namespace.to_string(),
            dir: dir.to_path_buf(),
            resolv_conf,
            pods: Mutex::new(Vec::new()),
            views,
            started: Mutex::new(Vec::new()),
        }
    }

    /// Pod `name` lives on `ip` (its own `/etc/hosts` names it there).
    pub fn add_pod(&self, ip: Ipv4Addr, name: &str) {
        self.pods.lock().unwrap().push((ip, name.to_string()));
    }

    /// Service `name` of the release's namespace is at `ip`, in the cluster's DNS.
    pub fn add_service(&self, ip: Ipv4Addr, name: &str) -> String {
        self.dns.add_service(ip, name, &self.namespace)
    }

    /// The `/etc/hosts` a kubelet writes for `pod`: loopback, and the pod's name on its address.
    fn hosts_file(&self, pod: &str) -> PathBuf {
        let path = self.dir.join("pods").join(pod).join("hosts");
        let mut text = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        if let Some((ip, _)) = self.pods.lock().unwrap().iter().find(|(_, name)| name == pod) {
            text.push_str(&format!("{ip}\t{pod}\n"));
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).expect("writing a pod's hosts file");
        path
    }

    /// The container's writable layer over `/etc`: `upper` and overlayfs's `work`, under `pods/<pod>/<container>/`.
    /// The image's user goes into `passwd` and `group` when the host has no entry with its id.
    fn etc_layer(&self, launch: &Launch) -> (PathBuf, PathBuf) {
        let base = self.dir.join("pods").join(&launch.pod).join(&launch.container);
        let (upper, work) = (base.join("etc"), base.join("etc-work"));
        if !upper.exists() {
            std::fs::create_dir_all(&upper).unwrap();
            std::fs::create_dir_all(&work).unwrap();
            if let Some((passwd, group)) = &launch.image_user {
                for (file, line) in [("passwd", passwd), ("group", group)] {
                    let host = std::fs::read_to_string(Path::new("/etc").join(file)).unwrap();
                    let id = line.split(':').nth(2).unwrap_or_default();
                    if !host.lines().any(|l| l.split(':').nth(2) == Some(id)) {
                        std::fs::write(upper.join(file), format!("{host}{line}\n")).unwrap();
                    }
                }
            }
        }
        (upper, work)
    }

    /// Starts `launch` in the namespace; its stdout and stderr go to `<dir>/logs/<pod>.log`.
    pub fn start(&self, launch: Launch) -> Process {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{}.log", launch.pod));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("opening the pod log");
        let err = out.try_clone().unwrap();
        // What the container writes to /dev/stdout (squid's access log) opens the log file again, as its user.
        std::os::unix::fs::chown(&log, Some(launch.ids.uid), Some(launch.ids.gid))
            .expect("handing the pod log to the pod's user");
        let mut command = Command::new(&launch.program);
        // The runtime sets HOSTNAME to the pod name; a container that sets it itself wins.
        command.args(&launch.args).env_clear().env("HOSTNAME", &launch.pod).envs(launch.env.iter().cloned());
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // First of all, the pod's cgroup (an exec probe's too, as `kubectl exec` runs in the container's): its
        // sockets are the pod's to the NetworkPolicies (`pod_firewall.rs`).
        let cgroup_procs = self.firewall.cgroup_procs(&launch.pod);
        // SAFETY: write(2) is async-signal-safe; the file was opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::write(cgroup_procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let cwd = cstring(&launch.cwd);
        let (uid, gid, groups) = (launch.ids.uid, launch.ids.gid, launch.ids.groups.clone());
        let privileges = PreparedPrivileges::of(&launch.privileges);
        // An exec probe: the namespaces of the container it probes, opened here.
        let joined: Option<[std::fs::File; 2]> = launch.join.map(|pid| {
            ["mnt", "uts"].map(|ns| {
                std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
                    .unwrap_or_else(|e| panic!("entering pod {}'s {ns} namespace: {e}", launch.pod))
            })
        });
        if let Some(files) = joined {
            let fds = files.each_ref().map(|f| f.as_raw_fd());
            // SAFETY: only async-signal-safe system calls on memory prepared before the fork.
            unsafe {
                command.pre_exec(move || {
                    let _keep = &files;
                    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                    check(libc::setpgid(0, 0))?;
                    check(libc::setns(fds[0], libc::CLONE_NEWNS))?;
                    check(libc::setns(fds[1], libc::CLONE_NEWUTS))?;
                    privileges.apply()?;
                    set_ids(uid, gid, &groups)?;
                    check(libc::chdir(cwd.as_ptr()))
                });
            }
        } else {
            self.mount_namespace(&mut command, &launch, cwd);
        }
        let child = self
            .net
            .spawn(command)
            .unwrap_or_else(|e| panic!("starting {} for pod {}: {e}", launch.program, launch.pod));
        if launch.join.is_none() {
            // spawn returns once the child has exec'd, after it took its credentials.
            let (seen, seen_privileges) = (ids_of(child.id()), privileges_of(child.id()));
            self.started.lock().unwrap().push(Started {
                pod: launch.pod.clone(),
                container: launch.container.clone(),
                pid: child.id(),
                expected: launch.ids.clone(),
                seen,
                privileges: launch.privileges.clone(),
                seen_privileges,
            });
        }
        Process { pod: launch.pod, log, child: Mutex::new(child) }
    }

    /// The pod's own UTS and mount namespaces as described at the top, then its credentials and working directory.
    fn mount_namespace(&self, command: &mut Command, launch: &Launch, cwd: CString) {
        let hostname = CString::new(launch.pod.clone()).unwrap();
        let (uid, gid, groups) = (launch.ids.uid, launch.ids.gid, launch.ids.groups.clone());
        let privileges = PreparedPrivileges::of(&launch.privileges);
        let kubelet_files = [
            (cstring(&self.hosts_file(&launch.pod)), CString::new("/etc/hosts").unwrap()),
            (cstring(&self.resolv_conf), CString::new("/etc/resolv.conf").unwrap()),
        ];
        let root = CString::new("/").unwrap();
        let tmpfs_type = CString::new("tmpfs").unwrap();
        let tmpfs: Vec<(CString, Vec<CString>)> = launch
            .tmpfs
            .iter()
            .map(|(at, dirs)| {
                (CString::new(at.as_str()).unwrap(), dirs.iter().map(|d| CString::new(d.as_str()).unwrap()).collect())
            })
            .collect();
        let binds: Vec<(CString, CString)> =
            launch.binds.iter().map(|(from, to)| (cstring(from), CString::new(to.as_str()).unwrap())).collect();
        // The views: for each covered directory, the directories to make in its tmpfs (parents first) and the
        // paths to bind back, writable or not.
        let views: Vec<PreparedView> = self
            .views
            .iter()
            .map(|v| {
                let mut dirs: Vec<PathBuf> = Vec::new();
                for (keep, _) in &v.keep {
                    for dir in keep.ancestors().take_while(|a| *a != v.cover) {
                        if !dirs.iter().any(|d| d == dir) {
                            dirs.push(dir.to_path_buf());
                        }
                    }
                }
                dirs.sort_by_key(|d| d.components().count());
                let keep = v.keep.iter().map(|(p, w)| (cstring(p), *w)).collect();
                (cstring(&v.cover), dirs.iter().map(|d| cstring(d)).collect(), keep)
            })
            .collect();
        let cover_options = CString::new("mode=755").unwrap();
        let (upper, work) = self.etc_layer(launch);
        let overlay = CString::new("overlay").unwrap();
        let etc = CString::new("/etc").unwrap();
        let etc_options =
            CString::new(format!("lowerdir=/etc,upperdir={},workdir={}", upper.display(), work.display())).unwrap();
        let empty = CString::new("").unwrap();
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
                // Detached copies of every path to keep, taken before any cover hides them.
                let mut trees: Vec<Vec<libc::c_int>> = Vec::new();
                for (_, _, keep) in &views {
                    let mut fds = Vec::new();
                    for (path, _) in keep {
                        let flags = 1 /* OPEN_TREE_CLONE */ | libc::AT_RECURSIVE as libc::c_uint | libc::O_CLOEXEC as libc::c_uint;
                        let fd = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags);
                        if fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        fds.push(fd as libc::c_int);
                    }
                    trees.push(fds);
                }
                for ((cover, dirs, keep), fds) in views.iter().zip(&trees) {
                    let data = cover_options.as_ptr() as *const libc::c_void;
                    check(libc::mount(tmpfs_type.as_ptr(), cover.as_ptr(), tmpfs_type.as_ptr(), 0, data))?;
                    for dir in dirs {
                        if libc::mkdir(dir.as_ptr(), 0o755) != 0
                            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    for ((path, writable), fd) in keep.iter().zip(fds) {
                        let moved = libc::syscall(
                            libc::SYS_move_mount,
                            *fd,
                            empty.as_ptr(),
                            libc::AT_FDCWD,
                            path.as_ptr(),
                            4, /* MOVE_MOUNT_F_EMPTY_PATH */
                        );
                        if moved != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::close(*fd);
                        if !writable {
                            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
                            check(libc::mount(std::ptr::null(), path.as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
                        }
                    }
                }
                let data = etc_options.as_ptr() as *const libc::c_void;
                check(libc::mount(overlay.as_ptr(), etc.as_ptr(), overlay.as_ptr(), 0, data))?;
                for (from, to) in &kubelet_files {
                    check(libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
                }
                for (from, to) in &binds {
                    check(libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
                }
                for (at, dirs) in &tmpfs {
                    check(libc::mount(tmpfs_type.as_ptr(), at.as_ptr(), tmpfs_type.as_ptr(), 0, std::ptr::null()))?;
                    for dir in dirs {
                        check(libc::mkdir(dir.as_ptr(), 0o755))?;
                    }
                }
                privileges.apply()?;
                set_ids(uid, gid, &groups)?;
                check(libc::chdir(cwd.as_ptr()))
            });
        }
    }
}

/// A view ready for the child: the covered directory, the directories to make in its tmpfs (parents first), and
/// the paths to bind back with whether they stay writable.
type PreparedView = (CString, Vec<CString>, Vec<(CString, bool)>);

/// The highest ancestor of `path` (itself included) that others cannot enter (no `o+x`), if any.
fn closed_ancestor(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// Every live descendant of `pid` (what a pod's entrypoint started: gunicorn's and Celery's workers, PostgreSQL's
/// backends, which leave its process group).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command name in parentheses: state, then ppid.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
        if let Some(parent) = fields.get(1).and_then(|p| p.parse::<u32>().ok()) {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        at += 1;
    }
    found.remove(0);
    found
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
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

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

/// Waits until a server the test started outside the pods (`what`) accepts connections on `ip:port`; after
/// `timeout` the test fails with the server's own log (`log`).
pub fn wait_listening(what: &str, ip: Ipv4Addr, port: u16, timeout: Duration, log: &Path) {
    let deadline = std::time::Instant::now() + timeout;
    while !tcp_open(ip, port) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never listened on {ip}:{port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
