//! `dify-gitops … --output json | head`: a reader that stops early ends the command quietly with exit 0, never a
//! panic (Rust ignores SIGPIPE, so every write after the reader left fails with EPIPE).

mod support;

use std::process::Stdio;

#[test]
fn a_closed_stdout_is_success_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    // The read end is closed before the command starts, so its first write to stdout meets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = support::cli::command()
        .args(["init", "--env", "prod", "--image-tag", "1.13.3", "--helmrelease-api", "v2", "--output", "json"])
        .args(["--recipient", recipient, "--repo-dir"])
        .arg(dir.path())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "a closed pipe is not an error worth a message: {stderr}");
    // The command did its work before it printed.
    assert!(dir.path().join("dify-gitops.yaml").is_file());
}
