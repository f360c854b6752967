//! The code sandbox ends a snippet that outlives its `WORKER_TIMEOUT`. The sandbox (root, with the capabilities the
//! chart gives it) runs each snippet in a child that chroots and takes an unprivileged uid; at the timeout it kills
//! that child, and root may signal another uid's process only with CAP_KILL. Without it the kill fails, the request
//! never ends (the sandbox waits for the snippet's output to close), and the snippet runs on, holding one of the
//! sandbox's workers, until the pod restarts.
//!
//! The check asks the sandbox as Dify's api does (`sandbox_api.rs`) to run a loop that never ends, then looks for that
//! loop among the sandbox's processes.

use std::time::{Duration, Instant};

use crate::credentials::ids_of;
use crate::install::Install;
use crate::pods::descendants;
use crate::sandbox_api::SandboxApi;

/// What the sandbox answered for the endless snippet, and how long it took.
pub struct Ended {
    pub error: String,
    pub answered_after: Duration,
}

/// Runs the endless snippet and checks that it is ended: the sandbox answers with a timeout within its
/// `WORKER_TIMEOUT` and some slack, and no process of the snippet's uid is left under the sandbox.
pub fn check_code_past_its_timeout_is_ended(install: &mut Install) -> Ended {
    let sandbox = SandboxApi::of(install);
    let timeout = sandbox.worker_timeout;
    let sandbox_pid = install.pid_of("dify-sandbox");
    let started = Instant::now();
    let answer = sandbox.run_python("while True:\n    pass\n", timeout + Duration::from_secs(30));
    let answered_after = started.elapsed();
    // The snippet's processes: the sandbox's descendants that left root for the sandbox's code user.
    let snippets = || -> Vec<u32> {
        descendants(sandbox_pid).into_iter().filter(|pid| ids_of(*pid).is_some_and(|ids| ids.uid != 0)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !snippets().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = snippets();
    let answer = answer.unwrap_or_else(|e| {
        panic!(
            "the sandbox never answered a snippet that outlives WORKER_TIMEOUT ({timeout:?}): {e}; the snippet's \
             processes still running: {left:?}. Root in the sandbox may signal the snippet's uid only with CAP_KILL \
             (sandbox.containerSecurityContext.capabilities.add)"
        )
    });
    let error = answer["data"]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("timeout") && left.is_empty(),
        "the sandbox should end a snippet past its WORKER_TIMEOUT ({timeout:?}): it answered {answer} after \
         {answered_after:?}, and the snippet's processes {left:?} are still running"
    );
    Ended { error: error.trim().to_string(), answered_after }
}
