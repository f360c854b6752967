//! The way out of the pods' network namespace: a forward proxy (Debian's squid) on this host's end of the veth
//! pair, as a corporate proxy would be for an NKP cluster that reaches the internet only through one. The
//! namespace has no route anywhere else; what the plugin daemon installs from PyPI comes through here, and the
//! proxy's access log says so.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pods::{user_ids, wait_listening};

pub struct EgressProxy {
    pub url: String,
    pub access_log: PathBuf,
    child: Child,
}

impl EgressProxy {
    /// squid on `address:port`, admitting clients from `clients` (the pods' range), logging to `dir`.
    pub fn start(address: Ipv4Addr, port: u16, clients: &str, dir: &Path) -> EgressProxy {
        std::fs::create_dir_all(dir).unwrap();
        let access_log = dir.join("egress-proxy-access.log");
        let conf = dir.join("egress-proxy.conf");
        // squid runs as its user (proxy), which must be able to write its logs.
        for file in [&access_log, &dir.join("egress-proxy-cache.log")] {
            std::fs::write(file, "").unwrap();
            let status = Command::new("chown").args(["proxy:proxy", &file.display().to_string()]).status();
            assert!(status.is_ok_and(|s| s.success()), "chown proxy {}", file.display());
        }
        std::fs::write(
            &conf,
            format!(
                "acl pods src {clients}\n\
                 http_access allow pods\n\
                 http_access deny all\n\
                 http_port {address}:{port}\n\
                 cache deny all\n\
                 pid_filename none\n\
                 netdb_filename none\n\
                 access_log stdio:{}\n\
                 cache_log stdio:{}\n\
                 cache_store_log none\n\
                 logfile_rotate 0\n\
                 coredump_dir /tmp\n\
                 shutdown_lifetime 1 seconds\n",
                access_log.display(),
                dir.join("egress-proxy-cache.log").display()
            ),
        )
        .unwrap();
        let squid = ["/usr/sbin/squid", "/sbin/squid"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("squid is not installed (scripts/test-tools install: Debian squid)");
        let mut command = Command::new(squid);
        command.args(["-N", "-f", &conf.display().to_string()]).stdin(Stdio::null());
        command.stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("egress-proxy.stderr")).unwrap());
        // Started as its user already: squid started as root switches to it itself, and a change of credentials
        // clears the parent-death signal, which would let it outlive a test that is killed.
        let (uid, gid) = user_ids("proxy");
        // SAFETY: only async-signal-safe system calls on the child itself, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                check(libc::setpgid(0, 0))?;
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                Ok(())
            });
        }
        let child = command.spawn().expect("starting squid");
        let stderr = dir.join("egress-proxy.stderr");
        wait_listening("the egress proxy", address, port, Duration::from_secs(30), &stderr);
        EgressProxy { url: format!("http://{address}:{port}"), access_log, child }
    }

    /// The access log's lines of requests: those with a method (squid logs the harness's own check that the port is
    /// open, a connection without a request, with method `-`).
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().nth(5).is_some_and(|method| method != "-"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the proxy's own process group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
