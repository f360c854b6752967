//! The seccomp filter of `seccompProfile: RuntimeDefault`: containerd's default profile for the container's bounding
//! capabilities, compiled to classic BPF by `seccomp-filter` (`tests/dify/seccomp-filter`, built by
//! `scripts/test-tools`: containerd's own profile code and libseccomp, as runc compiles it). `credentials.rs` loads it
//! into the child before exec.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;

/// The filter for a bounding set (a mask of `1 << capability number`): one run of the tool per set.
pub fn runtime_default(bounding: u64) -> Vec<libc::sock_filter> {
    static FILTERS: Mutex<BTreeMap<u64, Vec<libc::sock_filter>>> = Mutex::new(BTreeMap::new());
    let mut filters = FILTERS.lock().unwrap();
    filters.entry(bounding).or_insert_with(|| compile(bounding)).clone()
}

fn compile(bounding: u64) -> Vec<libc::sock_filter> {
    let names: Vec<String> =
        caps::all().into_iter().filter(|c| bounding & c.bitmask() != 0).map(|c| c.to_string()).collect();
    let output = Command::new("seccomp-filter").args(&names).output().unwrap_or_else(|e| {
        panic!(
            "running seccomp-filter ({e}): build it with `scripts/test-tools install seccomp-filter` and put the \
             tools on PATH"
        )
    });
    assert!(
        output.status.success(),
        "seccomp-filter {} failed: {}",
        names.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = output.stdout;
    assert!(
        !bytes.is_empty() && bytes.len().is_multiple_of(8),
        "seccomp-filter printed {} bytes, not a BPF program",
        bytes.len()
    );
    bytes
        .chunks_exact(8)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect()
}

/// Loads `filter` into the calling thread, which the exec'd program inherits. Needs CAP_SYS_ADMIN or no_new_privs:
/// the child is still root with all its effective capabilities when it calls this.
///
/// # Safety
/// For a child between fork and exec: prctl(2) only, on memory prepared before the fork.
pub unsafe fn load(filter: &[libc::sock_filter]) -> std::io::Result<()> {
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: `program` points at `filter`, alive for the call.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const _, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
