//! Loopback plumbing shared by the tests' servers: a free port, and the accept loop that serves each connection
//! on a thread of its own (the git servers, the CONNECT proxy and Traefik's stub backends).

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// A loopback port that was free a moment ago; the caller binds it soon after (the testbed's own helper).
pub fn free_port() -> u16 {
    dify_gitops_testbed::free_port().expect("a free loopback port")
}

/// Accepts connections on `listener` for the rest of the test process, each served by `handle` on its own thread;
/// an error is printed with `name`, so a test that did not expect it can tell which server failed.
pub fn serve_each<F>(listener: TcpListener, name: &'static str, handle: F)
where
    F: Fn(TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(stream) {
                    eprintln!("{name}: {e}");
                }
            });
        }
    });
}
