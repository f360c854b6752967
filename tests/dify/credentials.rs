//! Who a container's process is, as its rendered `securityContext` and the runtime make it: its uid, gid and
//! supplementary groups ([`Ids`]), its capabilities, no_new_privs and seccomp filter ([`Privileges`]). Both are
//! applied in the child before exec (`pods.rs` calls [`PreparedPrivileges::apply`] then [`set_ids`], in that order:
//! dropping from the bounding set takes CAP_SETPCAP, which root loses with its uid) and read back from
//! `/proc/<pid>/status`, where `install.rs` checks them for every process.

/// The credentials of a process: what `/proc/<pid>/status` shows as `Uid`, `Gid` and `Groups`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, sorted.
    pub groups: Vec<u32>,
}

impl std::fmt::Display for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let groups = if groups.is_empty() { "-".to_string() } else { groups.join(",") };
        write!(f, "{:>5} {:>5}  {groups:<8}", self.uid, self.gid)
    }
}

/// What a container's `securityContext` decides beside its ids: the capability bounding set (what the runtime
/// grants, less `capabilities.drop`, plus `capabilities.add`), the effective set (that set for root, none for any
/// other uid: Kubernetes sets no ambient capabilities, so exec as non-root clears them), and `no_new_privs`
/// (`allowPrivilegeEscalation: false`), and whether the runtime's default seccomp filter applies
/// (`seccompProfile: RuntimeDefault`). Masks of `1 << capability number`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    pub bounding: u64,
    pub effective: u64,
    pub no_new_privs: bool,
    pub seccomp: bool,
}

impl Privileges {
    /// What a process of `uid` holds with `bounding` as its bounding set.
    pub fn of(uid: u32, bounding: u64, no_new_privs: bool) -> Privileges {
        Privileges { bounding, effective: if uid == 0 { bounding } else { 0 }, no_new_privs, seccomp: false }
    }

    /// Everything this kernel supports: root on the host, which the harness is.
    pub fn host_root() -> Privileges {
        let all = caps::runtime::procfs_all_supported(None).expect("reading /proc/sys/kernel/cap_last_cap");
        Privileges::of(0, all.iter().fold(0, |mask, c| mask | c.bitmask()), false)
    }
}

impl std::fmt::Display for Privileges {
    /// `nnp` when no_new_privs is set, `seccomp` when a filter applies, then the effective capabilities by name
    /// (`-` for none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<String> = caps::all()
            .into_iter()
            .filter(|c| self.effective & c.bitmask() != 0)
            .map(|c| c.to_string().trim_start_matches("CAP_").to_string())
            .collect();
        names.sort();
        let names = if names.is_empty() { "-".to_string() } else { names.join(",") };
        let bounding = if self.bounding == self.effective || self.effective == 0 && self.bounding == 0 {
            String::new()
        } else {
            format!(" (bounding {:#x})", self.bounding)
        };
        let (nnp, seccomp) = (if self.no_new_privs { "nnp" } else { "-" }, if self.seccomp { "seccomp" } else { "-" });
        write!(f, "{nnp:<3}  {seccomp:<7}  {names}{bounding}")
    }
}

/// [`Privileges`] ready for the child: the capability numbers to drop from the bounding set, no_new_privs, and the
/// seccomp filter as BPF.
pub struct PreparedPrivileges {
    drop: Vec<libc::c_ulong>,
    no_new_privs: bool,
    seccomp: Option<Vec<libc::sock_filter>>,
}

impl PreparedPrivileges {
    pub fn of(privileges: &Privileges) -> PreparedPrivileges {
        let supported = caps::runtime::procfs_all_supported(None).expect("reading /proc/sys/kernel/cap_last_cap");
        let mut drop: Vec<libc::c_ulong> = supported
            .into_iter()
            .filter(|c| privileges.bounding & c.bitmask() == 0)
            .map(|c| libc::c_ulong::from(c.index()))
            .collect();
        drop.sort_unstable();
        let seccomp = privileges.seccomp.then(|| crate::seccomp::runtime_default(privileges.bounding));
        PreparedPrivileges { drop, no_new_privs: privileges.no_new_privs, seccomp }
    }

    /// Drops the capabilities from the bounding set (while still root: it takes CAP_SETPCAP), sets no_new_privs
    /// and loads the seccomp filter (while root holds CAP_SYS_ADMIN, as runc loads it for a container without
    /// no_new_privs; what the child does after it, taking its ids and exec, the filter allows). At exec, root's
    /// capabilities become that set; another uid's become none.
    pub fn apply(&self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        // SAFETY: prctl(2) with integer arguments only, on this (the child's) thread.
        unsafe {
            for cap in &self.drop {
                check(libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0))?;
            }
            if self.no_new_privs {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            if let Some(filter) = &self.seccomp {
                crate::seccomp::load(filter)?;
            }
        }
        Ok(())
    }
}

/// Takes the container's credentials: supplementary groups, then gid, then uid (after which nothing else can be
/// changed).
pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
    // SAFETY: async-signal-safe system calls on a slice allocated before the fork.
    unsafe {
        check(libc::setgroups(groups.len(), groups.as_ptr()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))
    }
}

/// The credentials of process `pid` as its `/proc/<pid>/status` gives them (the real ids; `check_ids` compares
/// all four of each).
pub fn ids_of(pid: u32) -> Option<Ids> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = status.lines().find(|l| l.starts_with(&format!("{name}:")))?;
        Some(line[name.len() + 1..].split_whitespace().filter_map(|n| n.parse().ok()).collect())
    };
    let (uids, gids, mut groups) = (field("Uid")?, field("Gid")?, field("Groups")?);
    // Real, effective, saved and filesystem ids must all be the one the container runs as.
    if uids.iter().any(|u| *u != uids[0]) || gids.iter().any(|g| *g != gids[0]) {
        return Some(Ids { uid: u32::MAX, gid: u32::MAX, groups: vec![] });
    }
    groups.sort_unstable();
    Some(Ids { uid: uids[0], gid: gids[0], groups })
}

/// The capabilities and no_new_privs of process `pid`, as its `/proc/<pid>/status` gives them.
pub fn privileges_of(pid: u32) -> Option<Privileges> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
    let mask = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
    Some(Privileges {
        bounding: mask("CapBnd")?,
        effective: mask("CapEff")?,
        no_new_privs: field("NoNewPrivs")? == "1",
        // 2: a filter (mode 0 is none, 1 strict).
        seccomp: field("Seccomp")? == "2",
    })
}
