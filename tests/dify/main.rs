//! Real Dify from this chart: every workload of a Dify release, each process started with exactly the command, args
//! and environment the chart renders, behind the chart's Ingresses on a real Traefik, driven in a real browser at
//! `https://<Traefik's address>/dify`. This file holds the tests and what they check; the pieces (README.md in this
//! directory says more):
//! - `tests/dify/prepare` builds what the release runs once per source archive (the api's virtualenv, the `/dify`
//!   web, the plugin daemon, sandbox, Weaviate, the model plugin and its offline bundle); this test fails, naming
//!   the command, when they are missing.
//! - `install.rs` brings the release up as a cluster would: `helm install --no-hooks` of `chart/dify` on the
//!   testbed's kube-apiserver (so the chart's generated Secrets exist), then each workload in order, the hook Jobs
//!   (migration, bootstrap) from the release's hooks.
//! - `release.rs` resolves each container against the cluster's Secrets and ConfigMaps; `images.rs` does what
//!   each image adds; `pods.rs` runs it in the test's network namespace on its pod's address, where the cluster's
//!   DNS (`cluster_dns.rs`) resolves the chart's Service names. EndpointSlices put those addresses behind the chart's
//!   Services.
//! - Traefik (as NKP configures Kommander's) serves the chart's Ingresses on ports 80 and 443 of this host's end
//!   of the namespace's veth pair, the "load balancer address" the chart is rendered for.
//! - `egress_proxy.rs` (a corporate proxy), `model_server.rs` (a private model endpoint) and `s3_store.rs` (an
//!   S3-compatible store: versitygw, which holds the 1.13.3 run's files and plugins) sit outside the pods.
//! - `scenario.rs` is what a user does in Debian's Chromium (`browser.rs`), with a screenshot per step under
//!   `test-output/dify/<version>/`.
//!
//! Needs root (namespaces), the pinned tools (helm, kubectl, Traefik, node, uv) and Debian's chromium,
//! chromium-driver, postgresql-15, redis-server and squid (`scripts/test-tools install`). Run it through
//! `scripts/test dify`.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod cluster_dns;
mod credentials;
mod egress_proxy;
mod images;
mod install;
mod model_server;
mod network_policy;
mod pod_firewall;
mod pods;
mod proxy_chain_run;
mod pypi_mirror;
mod pypi_mirror_run;
mod release;
mod s3_store;
mod sandbox_api;
mod sandbox_egress;
mod sandbox_timeout;
mod scenario;
mod seccomp;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::images::{Kind, PATH_WEB_IMAGE};
use crate::install::{Egress, Files, FirstSetUp, Install, bring_up};
use crate::model_server::ModelServer;
use crate::scenario::{FirstAdmin, Visit};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the chart's release of `version` and the browser scenario.
fn real_dify(version: &str, extra_sets: &[&str], setup: FirstSetUp, egress: Egress, file_store: Files) {
    let mut install = bring_up(version, extra_sets, version, setup, egress, file_store);
    let web = install.release.containers("dify-web", false).remove(0);
    assert_eq!(images::kind(&web.image), Kind::Web);

    // The init password (or, bootstrapped, the admin's), read the way the chart's NOTES tell a user to.
    let first_admin = match setup {
        FirstSetUp::InBrowser => {
            FirstAdmin::InBrowser { init_password: install.secret_value("dify-internal", "init-password") }
        }
        FirstSetUp::Bootstrap => FirstAdmin::Bootstrapped {
            email: scenario::ADMIN_EMAIL.to_string(),
            password: install.secret_value("dify-internal", "admin-password"),
        },
    };

    let url = format!("https://{}/dify", install.address);
    let shots = install.output.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A private address for the sandboxed code to try: the api pod's.
    let private_target = format!("http://{}:5001/health", install.addresses["dify-api"]);
    // And one the SSRF proxy's allow-list admits: the model server's.
    let allowed_target = format!("{}/models", install.model.url);
    // Air-gapped, the plugin daemon leaves through the SSRF proxy: a model on the second server's private address is
    // refused.
    let unlisted_model_url = install.unlisted_model.url.clone();
    let through_ssrf_proxy = egress == Egress::AirGapped;
    let started = Instant::now();
    let seen = runtime.block_on(scenario::browse(Visit {
        url: &url,
        first_admin,
        shots: &shots,
        package: &install.images.signed_package,
        model_url: &install.model.url,
        private_target: &private_target,
        allowed_target: &allowed_target,
        sandbox_log: &install.cluster.dir.join("logs/dify-sandbox-0.log"),
        unlisted_model_url: through_ssrf_proxy.then_some(unlisted_model_url.as_str()),
    }));
    install.figure(format!("browser scenario: {:.1} s", started.elapsed().as_secs_f64()));
    install.figure(format!(
        "first chat reply {:.1} s after the set-up began (testbed, helm install, start-up, sign-up, plugin, model, app)",
        seen.replied.duration_since(install.started).as_secs_f64()
    ));
    install.figure(format!(
        "screenshots: app list {}, chat reply {}, chat image {}, knowledge indexed {}, document download {}, \
         knowledge answer {}, sandbox {}",
        seen.app_list.display(),
        seen.chat.display(),
        seen.image.shot.display(),
        seen.knowledge.display(),
        seen.document.shot.display(),
        seen.knowledge_answer.1.display(),
        seen.sandbox.shot.display()
    ));
    // Code in the sandbox cannot go around the SSRF proxy: its NetworkPolicy refuses direct connections.
    let reached = sandbox_egress::check_code_reaches_only_the_ssrf_proxy(&mut install);
    install.figure(format!(
        "sandbox egress: a snippet's direct connections: {}; refused by the sandbox's NetworkPolicy: {}",
        reached.seen,
        reached.refused.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    ));
    // A Code node that never ends is ended at the sandbox's timeout, as the chart's capabilities allow.
    let ended = sandbox_timeout::check_code_past_its_timeout_is_ended(&mut install);
    install.figure(format!(
        "sandbox: an endless snippet answered {:?} after {:.1} s, and its process is gone",
        ended.error,
        ended.answered_after.as_secs_f64()
    ));
    // The chat image: previewed from the browser's own copy before sending, then shown from Dify's files route
    // under /dify (FILES_URL carries the path; Traefik strips it for the api), and sent to the model.
    let files = format!("{url}/files/");
    let image = &seen.image;
    assert!(
        image.attached.natural_width > 0,
        "the image's preview in the message box did not load: {:?}; {}",
        image.attached,
        image.attached_shot.display()
    );
    assert!(
        image.sent.src.starts_with(&files) && image.sent.natural_width > 0,
        "the sent image should load from {files}…, the page shows {:?}; {}",
        image.sent,
        image.shot.display()
    );
    check_image_reached_the_model(&install.model, &image.png, &image.shot);
    install.figure(format!(
        "chat image: preview {}…, sent {}…",
        &image.attached.src[..image.attached.src.len().min(22)],
        image.sent.src.split('?').next().unwrap_or_default()
    ));
    // The knowledge document's file, through its Download action: the signed address under /dify/files/ gives the
    // uploaded text back.
    let document = &seen.document;
    assert!(
        document.url.starts_with(&files)
            && document.status == 200
            && document.body.contains(model_server::CONTEXT_MARKER),
        "the document's download should be its text from {files}…: {} answered {} with {:?}; {}",
        document.url,
        document.status,
        document.body.chars().take(300).collect::<String>(),
        document.shot.display()
    );
    install.figure(format!(
        "document download: {} ({} bytes)",
        document.url.split('?').next().unwrap_or_default(),
        document.body.len()
    ));
    // The document went through the model's embeddings into Weaviate: its objects are there.
    let embeddings = install.model.requests_to("/v1/embeddings");
    assert!(!embeddings.is_empty(), "the knowledge base was indexed without the model server's embeddings");
    let weaviate_key = install.secret_value("dify-internal", "weaviate-api-key");
    let objects = Command::new("curl")
        .args(["-s", "-H", "@-", &format!("http://{}:8080/v1/objects?limit=5", install.addresses["dify-weaviate"])])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            // The key travels on stdin, never in argv.
            child.stdin.take().unwrap().write_all(format!("Authorization: Bearer {weaviate_key}").as_bytes())?;
            child.wait_with_output()
        })
        .expect("asking Weaviate for its objects");
    let objects: Value = serde_json::from_slice(&objects.stdout).unwrap_or(Value::Null);
    let stored = objects["objects"].as_array().map_or(0, Vec::len);
    assert!(stored > 0, "Weaviate holds no object of the indexed document: {objects}");
    install.figure(format!("embedding requests: {}; Weaviate objects (first page): {stored}", embeddings.len()));
    // The knowledge chat's answer quotes the document's line, which reached the model as context.
    let (answer, answer_shot) = &seen.knowledge_answer;
    if !answer.contains(model_server::CONTEXT_MARKER) {
        let prompts: Vec<Value> =
            install.model.requests_to("/v1/chat/completions").into_iter().map(|c| c["messages"].clone()).collect();
        panic!(
            "the knowledge chat answered without the document as context: {answer:?}; {}\nthe model's prompts: {prompts:#?}",
            answer_shot.display()
        );
    }
    // The Code node ran in the sandbox, and the SSRF proxy refused its request to a private address.
    assert_eq!(seen.sandbox.squares, "squares=285", "the Code node's own result; {}", seen.sandbox.shot.display());
    assert!(
        seen.sandbox.private.starts_with("private=403") && seen.sandbox.private.contains("ERR_ACCESS_DENIED"),
        "the SSRF proxy should refuse {private_target} (403 ERR_ACCESS_DENIED), the Code node saw {}; {}",
        seen.sandbox.private,
        seen.sandbox.shot.display()
    );
    let proxy_log = std::fs::read_to_string(install.cluster.dir.join("logs/dify-ssrf-proxy-0.log")).unwrap_or_default();
    assert!(
        proxy_log.lines().any(|l| l.contains("TCP_DENIED/403") && l.contains(&private_target)),
        "the SSRF proxy's log has no refusal of {private_target}"
    );
    assert!(
        seen.sandbox.allowed.starts_with("allowed=200"),
        "the SSRF proxy's allow-list admits {allowed_target}, the Code node saw {}; {}",
        seen.sandbox.allowed,
        seen.sandbox.shot.display()
    );
    if through_ssrf_proxy {
        check_model_endpoints_meet_the_allow_list(&mut install, &seen, &proxy_log);
    }
    // The model was asked to stream.
    let chats = install.model.requests_to("/v1/chat/completions");
    assert!(chats.iter().any(|c| c["stream"] == true), "no streamed chat request reached the model: {chats:?}");
    let through_proxy: Vec<String> =
        install.egress.log().into_iter().filter(|l| l.contains("pypi.org") || l.contains("pythonhosted.org")).collect();
    match egress {
        // The plugin's dependencies came from PyPI through the proxy.
        // And the package installed with signatures verified: signed with the test's key, which the daemon trusts.
        Egress::Proxy => {
            assert!(!through_proxy.is_empty(), "the plugin install fetched nothing from PyPI through the proxy");
            install.figure(format!("PyPI requests through the egress proxy: {}", through_proxy.len()));
            let daemon = install.release.containers("dify-plugin-daemon", false).remove(0);
            let env = |name: &str| daemon.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            assert_eq!(env("FORCE_VERIFYING_SIGNATURE").as_deref(), Some("true"), "signatures must stay verified");
            assert_eq!(env("THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED").as_deref(), Some("true"));
        }
        // Nothing left the namespace: the offline bundle's wheels were all the install had.
        Egress::AirGapped => {
            let left = install.egress.log();
            assert!(left.is_empty(), "an air-gapped install sent requests out through the egress proxy: {left:?}");
            let size = std::fs::metadata(&install.images.offline_package).map_or(0, |m| m.len());
            install.figure(format!("offline bundle: {:.1} MiB, nothing fetched", size as f64 / 1048576.0));
        }
        Egress::AirGappedMirror => unreachable!("the mirror run has its own test (pypi_mirror_run.rs)"),
        Egress::ProxyThroughSsrf => unreachable!("the proxy chain run has its own test (proxy_chain_run.rs)"),
    }

    if file_store == Files::S3 {
        check_files_on_s3(&mut install, &seen.image.png);
    }

    if setup == FirstSetUp::Bootstrap {
        bootstrap_again(&mut install);
    }

    // `dify-gitops verify` passes on this install.
    let verify = install.testbed.dify_gitops(&["verify", "--url", &url, "--insecure"]);
    assert_eq!(verify.code, 0, "dify-gitops verify failed on a working install:\n{}\n{}", verify.stdout, verify.stderr);

    // The web image the chart chose for /dify is the project's build for that path, which is exactly what the
    // harness served: the recipe's output.
    assert!(
        web.image.starts_with(&format!("{PATH_WEB_IMAGE}:")),
        "with expose.path /dify the chart should default to the /dify web image {PATH_WEB_IMAGE}, not {}",
        web.image
    );
    // Everything above happened within the release's NetworkPolicies, but the sandbox's connections refused on
    // purpose.
    install.check_no_connection_refused(&reached.refused);
    eprintln!("dify: figures and logs in {}", install.output.display());
}

/// The plugin daemon left through the SSRF proxy: the model plugin's calls to the allow-listed model server went
/// through it (and answered), and its call to the second server, on an address the list does not admit, was refused
/// there (TCP_DENIED/403): that server never saw a request, and the console reported the failed check.
fn check_model_endpoints_meet_the_allow_list(install: &mut Install, seen: &scenario::Seen, proxy_log: &str) {
    let refused = seen.refused_model.as_ref().expect("the scenario added a model on the unlisted server");
    // Every chat and embedding request the allow-listed server received came through the SSRF proxy, answered.
    let answered = |l: &str| l.contains("/200 ");
    let through =
        install.model_requests_through_ssrf_proxy(proxy_log, answered, "passed on (and saw answered) each of them");
    let unlisted_chat = format!("POST {}/chat/completions", install.unlisted_model.url);
    let denied: Vec<&str> =
        proxy_log.lines().filter(|l| l.contains(&unlisted_chat) && l.contains("TCP_DENIED/403")).collect();
    assert!(
        !denied.is_empty(),
        "the SSRF proxy's log has no refusal of {unlisted_chat}; the console said {:?}; {}",
        refused.message,
        refused.shot.display()
    );
    assert_eq!(
        install.unlisted_model.request_count(),
        0,
        "the model server on {}, which the allow-list does not admit, was reached",
        install.unlisted_model.ip
    );
    install.figure(format!(
        "model endpoints through the SSRF proxy: {through} requests to the allow-listed {} answered; {} refused to the \
         unlisted {} (its server saw none); the console: {}…; {}",
        install.model.ip,
        denied.len(),
        install.unlisted_model.ip,
        refused.message.chars().take(120).collect::<String>(),
        refused.shot.display()
    ));
    eprintln!("dify: the SSRF proxy's refusal: {}", denied[0]);
}

/// Files on S3 (`storage.files.type=s3`, the plugin daemon following it): what the scenario stored is in the
/// bucket, byte for byte, as the store's own S3 API gives it back (the knowledge document and the chat image under
/// Dify's `upload_files/`, the installed plugin package under the daemon's `plugin/`), and none of it in any
/// volume or container layer of the run. api, worker and the daemon asked the store themselves (its access log has
/// their pod addresses), none through the egress proxy.
fn check_files_on_s3(install: &mut Install, png: &[u8]) {
    // Taken for the checks (figures need the install), and put back.
    let store = install.s3.take().expect("files on S3 start the store");
    let objects = store.objects();
    let total: u64 = objects.iter().map(|o| o.size).sum();
    let listing: String = objects.iter().map(|o| format!("  {} ({} B)\n", o.key, o.size)).collect();
    let holding = |prefix: &str, bytes: &[u8]| {
        objects
            .iter()
            .filter(|o| o.key.starts_with(prefix) && o.size == bytes.len() as u64)
            .find(|o| store.get(&o.key) == bytes)
            .map(|o| o.key.clone())
    };
    let document = scenario::knowledge_document();
    let package = std::fs::read(&install.images.signed_package).unwrap();
    let mut found = Vec::new();
    for (what, prefix, bytes) in [
        ("the knowledge document", "upload_files/", document.as_bytes()),
        ("the chat image", "upload_files/", png),
        ("the installed plugin package", "plugin/", &package[..]),
    ] {
        let key = holding(prefix, bytes).unwrap_or_else(|| {
            panic!(
                "no object under {prefix} of bucket {} holds {what}'s bytes; the bucket:\n{listing}",
                s3_store::BUCKET
            )
        });
        found.push(format!("{what} {key}"));
    }
    assert!(
        objects.iter().any(|o| o.key.starts_with("plugin_packages/")),
        "the plugin daemon cached no package under plugin_packages/; the bucket:\n{listing}"
    );
    let mut prefixes: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for o in &objects {
        let entry = prefixes.entry(o.key.split('/').next().unwrap_or_default()).or_default();
        entry.0 += 1;
        entry.1 += o.size;
    }
    let prefixes: Vec<String> = prefixes.iter().map(|(p, (n, b))| format!("{p}/ {n} ({b} B)")).collect();
    install.figure(format!(
        "S3 bucket {}: {} objects, {total} bytes ({:.2} MiB): {}",
        s3_store::BUCKET,
        objects.len(),
        total as f64 / 1048576.0,
        prefixes.join(", ")
    ));
    install.figure(format!("in the bucket, byte for byte: {}", found.join("; ")));

    // Nowhere on the run's disks: not in a volume (the daemon's keeps only its working directory), not in a
    // container's layer, not in the api image's /app/api (no storage/ there without the files volume).
    let run = &install.cluster.dir;
    let copies = files_holding(
        &[run.join("volumes"), run.join("pods"), run.join("image-api/app/api")],
        &[document.as_bytes(), png, &package],
    );
    assert!(copies.is_empty(), "with files on S3, these files of the run hold what the bucket holds: {copies:?}");
    let daemon_storage = run.join("volumes/dify-plugin-daemon/storage");
    let local: Vec<String> = std::fs::read_dir(&daemon_storage)
        .unwrap_or_else(|e| panic!("{}: {e}", daemon_storage.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| ["plugin", "plugin_packages", "assets", "persistence"].contains(&name.as_str()))
        .collect();
    assert!(local.is_empty(), "the plugin daemon's volume holds {local:?}, which belong in the bucket");
    assert!(!run.join("image-api/app/api/storage").exists(), "api or worker made /app/api/storage with files on S3");

    // Straight to the store, from the pod network: its access log (client address in the fifth field, then the
    // User-Agent) has requests of Dify's boto3 (api, worker) and of the daemon's Go SDK. Every pod shares the
    // namespace's source address, so the two clients are told apart by their agents, and the egress proxy (on the
    // host's end of the veth, as is the test's own client) is told apart by its address.
    let host = install.address.to_string();
    let log = store.requests();
    let requests: Vec<&String> = log.iter().filter(|l| l.contains(" s3_")).collect();
    let direct = |agent: &str| {
        requests.iter().filter(|l| l.split_whitespace().nth(4) != Some(host.as_str()) && l.contains(agent)).count()
    };
    let (dify, daemon) = (direct("Boto3/"), direct("aws-sdk-go-v2/"));
    let endpoint = store.endpoint.trim_start_matches("http://").to_string();
    let proxied: Vec<String> = install.egress.log().into_iter().filter(|l| l.contains(&endpoint)).collect();
    install.figure(format!(
        "S3 requests from the pod network: Dify's boto3 (api, worker) {dify}, the plugin daemon's Go SDK {daemon}; \
         through the egress proxy: {}",
        proxied.len()
    ));
    assert!(proxied.is_empty(), "requests to the S3 store went through the egress proxy (NO_PROXY): {proxied:#?}");
    assert!(
        dify > 0 && daemon > 0,
        "api/worker ({dify}) and the plugin daemon ({daemon}) should ask the store directly"
    );
    install.s3 = Some(store);
}

/// The files under `roots` whose bytes are one of `contents`.
fn files_holding(roots: &[PathBuf], contents: &[&[u8]]) -> Vec<PathBuf> {
    let mut stack: Vec<PathBuf> = roots.to_vec();
    let mut holding = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file()
                && contents.iter().any(|c| c.len() as u64 == meta.len())
                && std::fs::read(entry.path()).is_ok_and(|bytes| contents.contains(&&bytes[..]))
            {
                holding.push(entry.path());
            }
        }
    }
    holding
}

/// The bootstrap Job once more, as every upgrade runs it: it finds each step done and changes nothing, and its
/// log holds none of the secrets it was given.
fn bootstrap_again(install: &mut Install) {
    let (took, log) = install.run_job("dify-bootstrap");
    install.figure(format!("bootstrap Job again (nothing to do) in {:.1} s", took.as_secs_f64()));
    for line in ["admin: already set up", "already installed", "unchanged", "done"] {
        assert!(log.contains(line), "the second bootstrap run should log {line:?}:\n{log}");
    }
    for changed in ["added", "updated", "installed in", "default llm model"] {
        assert!(!log.contains(changed), "the second bootstrap run changed something ({changed:?}):\n{log}");
    }
    let whole = std::fs::read_to_string(install.cluster.dir.join("logs/dify-bootstrap-0.log")).unwrap_or_default();
    for (secret, key) in
        [("dify-internal", "admin-password"), ("dify-internal", "init-password"), ("dify", "openai-api-key")]
    {
        let value = install.secret_value(secret, key);
        assert!(!whole.contains(&value), "the bootstrap Job's log holds {key} of Secret {secret}");
    }
}

/// The chat request for the image carried it to the model: a message whose content has an `image_url` part
/// holding the uploaded PNG (Dify sends it base64-encoded, its default `MULTIMODAL_SEND_FORMAT`).
fn check_image_reached_the_model(model: &ModelServer, png: &[u8], shot: &std::path::Path) {
    use base64::Engine;
    let chats = model.requests_to("/v1/chat/completions");
    let parts: Vec<&Value> = chats
        .iter()
        .flat_map(|c| c["messages"].as_array().into_iter().flatten())
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|p| p["type"] == "image_url")
        .collect();
    let sent = parts.iter().filter_map(|p| p["image_url"]["url"].as_str()).any(|u| {
        u.strip_prefix("data:image/png;base64,")
            .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
            .is_some_and(|bytes| bytes == png)
    });
    let urls: Vec<String> =
        parts.iter().map(|p| p["image_url"]["url"].as_str().unwrap_or_default().chars().take(60).collect()).collect();
    assert!(
        sent,
        "no chat request carried the uploaded PNG as an image_url part ({} such parts: {urls:?}); {}",
        parts.len(),
        shot.display()
    );
}

/// The seed's mistake, on the real thing: Dify's stock web image (built for "/") named for /dify. Pages under /dify
/// cannot load their scripts, and `verify` must say so and name the build to run.
#[test]
fn verify_names_the_build_when_a_web_built_for_the_root_serves_dify() {
    let sets = ["images.web.repository=langgenius/dify-web"];
    let install = bring_up("1.13.3", &sets, "1.13.3-root-web", FirstSetUp::InBrowser, Egress::Proxy, Files::Volume);
    let url = format!("https://{}/dify", install.address);
    let verify = install.testbed.dify_gitops(&["verify", "--url", &url, "--insecure"]);
    eprintln!("dify: verify with a web built for the root:\n{}", verify.stdout);
    assert_eq!(verify.code, 5, "verify should fail on a root-path web build:\n{}\n{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("NEXT_PUBLIC_BASE_PATH=/dify"), "verify should name the build:\n{}", verify.stdout);
}

#[test]
fn dify_1_13_3_runs_from_the_chart_under_dify_in_a_browser() {
    real_dify("1.13.3", &[], FirstSetUp::InBrowser, Egress::Proxy, Files::S3);
}

/// Air-gapped, and set up by the chart's bootstrap Job (the admin, the model plugin's offline bundle from an
/// artifact server of the cluster's network, the models), which the browser then finds done. With collaboration off: its api-websocket listens on 5001 like the api, and the harness keeps every pod in one
/// network namespace, so the two cannot both run yet.
#[test]
fn dify_1_14_2_runs_from_the_chart_under_dify_in_a_browser() {
    real_dify("1.14.2", &["collaboration.enabled=false"], FirstSetUp::Bootstrap, Egress::AirGapped, Files::Volume);
}
