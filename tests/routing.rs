//! The chart's routing on a real Traefik v3 (NKP main's v3.6.12), and `dify-gitops verify` through it.
//!
//! A front door: the testbed kube-apiserver with the NKP fixture and Traefik's CRDs, a Traefik
//! process watching it as NKP configures Kommander's Traefik, and the chart installed twice with `helm install`:
//! - namespace `dify` at `/dify` (Dify 1.17.1, collaboration on when the chart has it), its web stub answering like
//!   a web image built with `NEXT_PUBLIC_BASE_PATH=/dify`;
//! - namespace `dify-stock` at `/stock`, its web stub answering like the stock web image (assets at `/_next/`);
//! - namespace `dify-broken` at `/broken`, whose api Ingress is then given another IngressClass.
//!
//! A second front door serves the chart's root-path scenario (`ci/root-path-values.yaml`) at `/`.
//!
//! Every Service an Ingress routes to is backed by a stub (see `support/traefik.rs` for why they live in a network
//! namespace behind EndpointSlices) that answers like its Dify component and reports, in `X-Stub-*` headers, which
//! component it is and the path it saw. Requests go over HTTPS to the websecure entrypoint with `Host: 192.0.2.10`.
//!
//! Needs root (network namespace, veth) and the pinned tools including Traefik:
//! `scripts/test-tools install traefik && export PATH="$(scripts/test-tools path):$PATH"`, then
//! `cargo test --test routing -- --nocapture` (prints the timings). `DIFY_GITOPS_TRAEFIK=<binary>` runs the same
//! tests on another Traefik, e.g. v2.11.9 as NKP 2.12–2.13 ship it (all pass; it only differs in not cleaning `//`).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::traefik::{Handler, StubNet, StubRequest, StubResponse, Traefik, traefik_crds};
use support::{Testbed, nkp_fixture};

const HOST: &str = "192.0.2.10";

/// How the web stub answers: like a web image built for a base path, or like the stock image.
#[derive(Clone, Copy, Debug)]
enum WebBuild {
    BasePath(&'static str),
    Stock,
}

struct FrontDoor {
    testbed: Testbed,
    traefik: Traefik,
    /// Whether the chart rendered the api-websocket component (Dify >= 1.15 with collaboration on).
    websocket: bool,
    setup: Duration,
}

/// Which releases a front door serves.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `/dify` (base-path web), `/stock` (stock web), `/broken` (api Ingress of another class): Dify 1.17.1.
    SubPaths,
    /// The chart's root-path scenario (`ci/root-path-values.yaml`: Dify 1.13.3, stock images, `external.scheme`
    /// http) at `/`, which would shadow the sub-path tests' "not Dify" rows, hence a door of its own.
    Root,
}

/// The shared front doors; each is set up once (a failed setup fails its tests with its message, no retry).
fn front_door() -> &'static FrontDoor {
    static DOOR: OnceLock<Result<FrontDoor, String>> = OnceLock::new();
    shared(&DOOR, Layout::SubPaths)
}

fn root_front_door() -> &'static FrontDoor {
    static DOOR: OnceLock<Result<FrontDoor, String>> = OnceLock::new();
    shared(&DOOR, Layout::Root)
}

fn shared(door: &'static OnceLock<Result<FrontDoor, String>>, layout: Layout) -> &'static FrontDoor {
    let door = door.get_or_init(|| {
        std::panic::catch_unwind(|| set_up(layout)).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    door.as_ref().unwrap_or_else(|message| panic!("setting up the {layout:?} front door failed: {message}"))
}

fn set_up(layout: Layout) -> FrontDoor {
    let started = Instant::now();
    // Fails first, with the install command, when Traefik is missing.
    let version = support::traefik::traefik_version(&support::traefik::traefik_binary());
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    let crds = tempfile::Builder::new().suffix(".yaml").tempfile().expect("CRD file");
    std::fs::write(crds.path(), traefik_crds(major)).expect("writing Traefik's CRDs");
    let testbed = Testbed::start(&[nkp_fixture(), crds.path().to_path_buf()]);
    let traefik = Traefik::start(&testbed);
    let net = StubNet::create();
    let v2 = major == 2;
    let (websocket, ready) = match layout {
        Layout::SubPaths => {
            let websocket = install(&testbed, &net, "dify", "v1.17.1", Some("/dify"), WebBuild::BasePath("/dify"), v2);
            install(&testbed, &net, "dify-stock", "v1.17.1", Some("/stock"), WebBuild::Stock, v2);
            install(&testbed, &net, "dify-broken", "v1.17.1", Some("/broken"), WebBuild::BasePath("/broken"), v2);
            let class = r#"{"spec": {"ingressClassName": "nginx"}}"#;
            testbed.kubectl(&["patch", "ingress", "dify-api", "-n", "dify-broken", "--type", "merge", "-p", class]);
            let ready = vec![
                ("/dify/", "web"),
                ("/stock/", "web"),
                ("/dify/console/api/setup", "api"),
                ("/broken/e/x", "plugin-daemon"),
                ("/broken/console/api/setup", "web"),
            ];
            (websocket, ready)
        }
        Layout::Root => {
            let websocket = install(&testbed, &net, "dify", "root-path", None, WebBuild::Stock, v2);
            (websocket, vec![("/apps", "web"), ("/console/api/setup", "api"), ("/e/x", "plugin-daemon")])
        }
    };
    let door = FrontDoor { testbed, traefik, websocket, setup: Duration::ZERO };
    for (path, component) in ready {
        door.traefik.wait_until(Duration::from_secs(60), &format!("routed {path} to {component}"), || {
            door.https(path).component.as_deref() == Some(component)
        });
    }
    eprintln!(
        "{layout:?} front door ready in {:.1} s (kube-apiserver {:.1} s, Traefik {} {:.1} s)",
        started.elapsed().as_secs_f64(),
        door.testbed.startup_seconds,
        door.traefik.version,
        door.traefik.startup.as_secs_f64(),
    );
    std::mem::forget(net); // its threads hold the namespace until the process ends
    FrontDoor { setup: started.elapsed(), ..door }
}

/// `helm install` of the chart into `namespace` at `path`, then a stub and an EndpointSlice for every Service an
/// Ingress routes to. Returns whether the release has an api-websocket Service.
fn install(
    testbed: &Testbed,
    net: &StubNet,
    namespace: &str,
    scenario: &str,
    path: Option<&str>,
    web: WebBuild,
    legacy_endpoints: bool,
) -> bool {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/dify");
    testbed.kubectl(&["create", "namespace", namespace]);
    let values = chart.join(format!("ci/{scenario}-values.yaml"));
    let mut args: Vec<String> = ["install", "dify", &chart.display().to_string(), "--namespace", namespace]
        .into_iter()
        .chain(["--no-hooks", "--timeout", "60s", "--values", &values.display().to_string()])
        .map(str::to_string)
        .collect();
    if let Some(path) = path {
        args.extend(["--set".into(), format!("expose.path={path}")]);
    }
    // Collaboration (api-websocket at <path>/socket.io/) where the chart has it and the scenario's Dify can run it.
    let chart_values = std::fs::read_to_string(chart.join("values.yaml")).expect("reading values.yaml");
    if chart_values.lines().any(|l| l.starts_with("collaboration:")) && scenario == "v1.17.1" {
        args.extend(["--set".into(), "collaboration.enabled=true".into()]);
    }
    let output = Command::new("helm")
        .args(&args)
        .env("KUBECONFIG", &testbed.kubeconfig)
        .output()
        .expect("running helm (is it on PATH?)");
    assert!(output.status.success(), "helm {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));

    let get = |kind: &str| -> Vec<Value> {
        let list: Value =
            serde_json::from_str(&testbed.kubectl(&["get", kind, "-n", namespace, "-o", "json"])).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    };
    // Container ports by component, from the Deployments (what a Service's named targetPort resolves to).
    let mut container_ports: BTreeMap<String, BTreeMap<String, u16>> = BTreeMap::new();
    for deployment in get("deployments") {
        let component = deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"].as_str();
        let ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"].as_array().cloned();
        if let (Some(component), Some(ports)) = (component, ports) {
            let by_name = ports
                .iter()
                .map(|p| (p["name"].as_str().unwrap_or("").to_string(), p["containerPort"].as_u64().unwrap() as u16));
            container_ports.insert(component.to_string(), by_name.collect());
        }
    }
    let routed: std::collections::BTreeSet<String> = get("ingresses")
        .iter()
        .flat_map(|i| i["spec"]["rules"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["http"]["paths"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["backend"]["service"]["name"].as_str().map(str::to_string))
        .collect();
    let mut slices = String::new();
    for service in get("services") {
        let name = service["metadata"]["name"].as_str().unwrap().to_string();
        if !routed.contains(&name) {
            continue;
        }
        let component = service["spec"]["selector"]["app.kubernetes.io/component"].as_str().unwrap().to_string();
        let ip = net.new_address();
        let mut ports = Vec::new();
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = match &port["targetPort"] {
                Value::Number(n) => n.as_u64().unwrap() as u16,
                Value::String(name) => *container_ports
                    .get(&component)
                    .and_then(|p| p.get(name))
                    .unwrap_or_else(|| panic!("{component} has no container port named {name}")),
                other => panic!("unexpected targetPort {other}"),
            };
            net.serve(ip, target, &component, stub(&component, web));
            ports.push(json!({"name": port["name"], "port": target, "protocol": "TCP"}));
        }
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-stub"), "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true, "serving": true}}],
        });
        slices.push_str(&format!("---\n{slice}\n"));
        if legacy_endpoints {
            // Traefik 2.x reads Endpoints, not EndpointSlices.
            let endpoints = json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace},
                "subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": ports}],
            });
            slices.push_str(&format!("---\n{endpoints}\n"));
        }
    }
    let file = testbed.dir.join(format!("endpointslices-{namespace}.yaml"));
    std::fs::write(&file, slices).unwrap();
    testbed.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    routed.iter().any(|s| s.ends_with("api-websocket"))
}

/// A stub that answers like Dify's `component` would (see `src/verify.rs` for the shapes).
fn stub(component: &str, web: WebBuild) -> Handler {
    let component = component.to_string();
    Arc::new(move |request: &StubRequest| {
        let path = request.path.split('?').next().unwrap_or_default().to_string();
        match component.as_str() {
            "web" => web_page(web, &path),
            "api" if path == "/console/api/setup" => {
                StubResponse::json(200, json!({"step": "finished", "setup_at": "2026-11-25T08:00:00", "path": path}))
            }
            "api" => StubResponse::json(
                401,
                json!({"code": "unauthorized", "message": "Authorization header must be provided", "status": 401, "path": path}),
            ),
            "plugin-daemon" => StubResponse::json(
                404,
                json!({"code": -404, "message": "{\"message\":\"endpoint not found\"}", "data": null, "path": path}),
            ),
            "api-websocket" if path.starts_with("/socket.io/") => StubResponse {
                status: 200,
                content_type: "text/plain; charset=UTF-8",
                headers: vec![],
                body: r#"0{"sid":"stub","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}"#.into(),
            },
            _ => StubResponse::json(200, json!({"component": component, "path": path})),
        }
    })
}

/// Next.js as Dify's web image answers: the base path itself redirects to `/apps`; Dify's pages and its 404 page
/// reference the assets under the build's base path, and the assets are served under it. A stock build (no base
/// path) sees `/stock/...` as an unknown page.
fn web_page(build: WebBuild, path: &str) -> StubResponse {
    const PAGES: [&str; 7] = ["/apps", "/explore", "/signin", "/install", "/datasets", "/tools", "/plugins"];
    let base = match build {
        WebBuild::BasePath(base) => base,
        WebBuild::Stock => "",
    };
    let page = |status| {
        StubResponse::html(
            status,
            format!(
                "<!DOCTYPE html><html><head><link rel=\"stylesheet\" href=\"{base}/_next/static/css/app.css\"/>\
                 </head><body><script src=\"{base}/_next/static/chunks/main-app.js\" async=\"\"></script>\
                 <script>self.__next_f.push([1,\"HL[\\\"{base}/_next/static/media/font.woff2\\\",\\\"font\\\"]\"])\
                 </script></body></html>"
            ),
        )
    };
    let Some(rest) = path.strip_prefix(base) else { return page(404) };
    if rest.is_empty() || rest == "/" {
        let mut redirect = StubResponse::html(307, "");
        redirect.headers.push(("Location".into(), format!("{base}/apps")));
        return redirect;
    }
    if rest.starts_with("/_next/") {
        return StubResponse {
            status: 200,
            content_type: "application/javascript",
            headers: vec![],
            body: "//".into(),
        };
    }
    if PAGES.iter().any(|p| rest.starts_with(p)) { page(200) } else { page(404) }
}

/// One answer through the front door.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    component: Option<String>,
    seen_path: Option<String>,
    prefix: Option<String>,
    body: String,
}

impl FrontDoor {
    fn https(&self, path: &str) -> Reply {
        self.curl(&format!("https://127.0.0.1:{}{path}", self.traefik.websecure))
    }

    fn http(&self, path: &str) -> Reply {
        self.curl(&format!("http://127.0.0.1:{}{path}", self.traefik.web))
    }

    fn curl(&self, url: &str) -> Reply {
        let output = Command::new("curl")
            .args(["-sSk", "-i", "--path-as-is", "--max-time", "10", "-H", &format!("Host: {HOST}"), url])
            .output()
            .expect("running curl");
        assert!(output.status.success(), "curl {url}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            component: headers.get("x-stub-component").cloned(),
            seen_path: headers.get("x-stub-path").cloned(),
            prefix: headers.get("x-stub-forwarded-prefix").cloned(),
            headers,
            body: body.to_string(),
        }
    }

    fn verify(&self, path: &str, extra: &[&str]) -> support::CliOutput {
        let url = format!("https://127.0.0.1:{}{path}", self.traefik.websecure);
        let mut args = vec!["verify", "--url", &url];
        args.extend_from_slice(extra);
        self.testbed.dify_gitops(&args)
    }
}

#[test]
fn every_dify_path_reaches_its_component_through_nkp_traefik() {
    let door = front_door();
    // (request path, Some((component, path the component sees))) or None for "not Dify" (Traefik's 404).
    let mut rows: Vec<(&str, Option<(&str, &str)>)> = vec![
        ("/dify/", Some(("web", "/dify/"))),
        ("/dify", Some(("web", "/dify"))),
        ("/dify/apps", Some(("web", "/dify/apps"))),
        ("/dify/explore/apps", Some(("web", "/dify/explore/apps"))),
        ("/dify/signin?redirect=%2Fapps", Some(("web", "/dify/signin?redirect=%2Fapps"))),
        ("/dify/_next/static/chunks/main-app.js", Some(("web", "/dify/_next/static/chunks/main-app.js"))),
        ("/dify/console/api/setup", Some(("api", "/console/api/setup"))),
        ("/dify/api/meta", Some(("api", "/api/meta"))),
        ("/dify/v1/chat-messages", Some(("api", "/v1/chat-messages"))),
        ("/dify/files/x", Some(("api", "/files/x"))),
        ("/dify/mcp/x", Some(("api", "/mcp/x"))),
        ("/dify/triggers/x", Some(("api", "/triggers/x"))),
        ("/dify/e/hook", Some(("plugin-daemon", "/e/hook"))),
        ("/dify/e/hook/path/x?y=1", Some(("plugin-daemon", "/e/hook/path/x?y=1"))),
        ("/difyx", None),
        ("/dify-x/apps", None),
        ("/", None),
        ("/console/api/setup", None),
        ("/e/hook", None),
    ];
    if door.websocket {
        rows.push((
            "/dify/socket.io/?EIO=4&transport=polling",
            Some(("api-websocket", "/socket.io/?EIO=4&transport=polling")),
        ));
    }
    let started = Instant::now();
    let mut failures = Vec::new();
    for (path, expected) in &rows {
        let reply = door.https(path);
        let got = reply.component.as_deref().zip(reply.seen_path.as_deref());
        let ok = match expected {
            Some((component, seen)) => {
                let prefix = if *component == "web" { "" } else { "/dify" };
                got == Some((component, seen)) && reply.prefix.as_deref() == Some(prefix)
            }
            None => reply.status == 404 && reply.component.is_none() && reply.body.trim() == "404 page not found",
        };
        if !ok {
            failures.push(format!(
                "{path}: expected {expected:?}, got HTTP {} from {:?} seeing {:?} (X-Forwarded-Prefix {:?})",
                reply.status, reply.component, reply.seen_path, reply.prefix
            ));
        }
    }
    eprintln!(
        "routing table: {} requests over HTTPS to websecure, {} failed, in {:.2} s (front door setup {:.1} s)",
        rows.len(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        door.setup.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "routing failures:\n{}\nTraefik log:\n{}",
        failures.join("\n"),
        door.traefik.log_tail(30)
    );
}

#[test]
fn prefixes_match_by_characters_as_in_difys_own_nginx() {
    // NKP's Traefik has no strictPrefixMatching: an Ingress Prefix path is a character prefix, like the
    // `location /api` blocks of Dify's nginx the chart mirrors. Dify's web has no page under these names.
    let door = front_door();
    let double_slash = if door.traefik.version.starts_with("2.") {
        Some(("web", "/dify//console/api/setup"))
    } else {
        Some(("api", "/console/api/setup"))
    };
    let rows = [
        ("/dify/apix", Some(("api", "/apix"))),
        ("/dify/v1beta/x", Some(("api", "/v1beta/x"))),
        ("/dify/filesystem", Some(("api", "/filesystem"))),
        ("/dify/e", Some(("web", "/dify/e"))), // only /e/ is the plugin daemon's, as nginx's `location /e/`
        ("/dify/console", Some(("web", "/dify/console"))),
        ("/dify//console/api/setup", double_slash), // Traefik 3 cleans the path before matching; 2.11 does not
        ("/DIFY/apps", None),                       // paths are case-sensitive
    ];
    for (path, expected) in rows {
        let reply = door.https(path);
        let got = reply.component.as_deref().zip(reply.seen_path.as_deref());
        assert_eq!(got, expected, "{path}: {reply:?}");
    }
}

#[test]
fn plain_http_is_redirected_to_https_as_on_nkp() {
    let door = front_door();
    let reply = door.http("/dify/apps");
    assert!(matches!(reply.status, 301 | 308), "{reply:?}");
    let location = reply.headers.get("location").expect("a Location header");
    assert_eq!(location, &format!("https://{HOST}:{}/dify/apps", door.traefik.websecure));
    assert_eq!(reply.component, None, "no backend answers on the web entrypoint");
}

#[test]
fn the_stock_web_image_under_a_path_is_served_but_its_assets_miss() {
    // The routing is the same; what breaks is the page: its /_next/ assets are outside /stock.
    let door = front_door();
    let page = door.https("/stock/");
    assert_eq!((page.component.as_deref(), page.status), (Some("web"), 404), "{page:?}");
    assert!(page.body.contains("src=\"/_next/static/chunks/main-app.js\""));
    assert_eq!(door.https("/_next/static/chunks/main-app.js").status, 404, "no route outside the base paths");
}

#[test]
fn verify_passes_on_a_base_path_install() {
    let door = front_door();
    let ca = door.traefik.ca_file.to_str().unwrap();
    let out = door.verify("/dify", &["--ca-file", ca, "--output", "json"]);
    let report = out.json();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(report["passed"], true);
    let checks: BTreeMap<&str, &Value> =
        report["checks"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c)).collect();
    assert_eq!(
        checks.keys().copied().collect::<Vec<_>>(),
        ["console-api", "plugin-hook", "service-api", "web", "web-assets", "websocket"]
    );
    for (name, check) in &checks {
        let expected = if *name == "websocket" && !door.websocket { "skip" } else { "pass" };
        assert_eq!(check["status"], expected, "{name}: {check}");
    }
    assert_eq!(
        checks["web"]["url"],
        format!("https://127.0.0.1:{}/dify/apps", door.traefik.websecure),
        "redirect followed"
    );
    assert_eq!(checks["console-api"]["reason"], "HTTP 200, setup step 'finished'");
    assert_eq!(checks["service-api"]["http_status"], 401);
    assert_eq!(checks["plugin-hook"]["reason"], "HTTP 404 from the plugin daemon");

    let text = door.verify("/dify/", &["--ca-file", ca]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.lines().skip(1).all(|l| l.starts_with("PASS") || l.starts_with("SKIP  websocket")),
        "{}",
        text.stdout
    );
}

#[test]
fn verify_detects_the_stock_web_image_and_names_the_build_argument() {
    let door = front_door();
    let out = door.verify("/stock", &["--insecure", "--output", "json"]);
    assert_eq!(out.code, 5, "{out:?}");
    let report = out.json();
    let status: BTreeMap<&str, &str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        BTreeMap::from([
            ("web", "fail"),
            ("web-assets", "skip"),
            ("console-api", "pass"),
            ("service-api", "pass"),
            ("plugin-hook", "pass"),
            ("websocket", if door.websocket { "pass" } else { "skip" }),
        ])
    );
    let web = &report["checks"][0];
    assert!(web["reason"].as_str().unwrap().contains("/_next/ (outside /stock)"), "{web}");
    assert!(web["fix"].as_str().unwrap().contains("NEXT_PUBLIC_BASE_PATH=/stock"), "{web}");
    assert!(out.stderr.contains("verify failed: web"), "{}", out.stderr);
}

#[test]
fn verify_names_the_trust_fix_for_an_untrusted_certificate() {
    let door = front_door();
    let out = door.verify("/dify", &["--output", "json"]);
    assert_eq!(out.code, 5, "{out:?}");
    let report = out.json();
    let console = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "console-api").unwrap();
    assert!(console["reason"].as_str().unwrap().contains("certificate"), "{console}");
    assert!(console["fix"].as_str().unwrap().contains("--ca-file"), "{console}");
}

#[test]
fn verify_fails_every_route_of_a_path_nothing_serves() {
    let door = front_door();
    let out = door.verify("/nothing", &["--insecure", "--output", "json"]);
    assert_eq!(out.code, 5, "{out:?}");
    for check in out.json()["checks"].as_array().unwrap() {
        if check["name"] == "web-assets" || check["name"] == "websocket" {
            assert_eq!(check["status"], "skip", "{check}");
            continue;
        }
        assert_eq!(check["status"], "fail", "{check}");
        assert!(check["reason"].as_str().unwrap().contains("no route for it (404 page not found)"), "{check}");
        assert!(check["fix"].as_str().unwrap().contains("ingressClassName"), "{check}");
    }
}

#[test]
fn verify_shows_api_paths_falling_to_web_when_the_api_ingress_has_another_class() {
    // /broken's api Ingress was switched to class `nginx`: NKP's Traefik ignores it, so web's catch-all takes
    // /broken/console/api and /broken/v1, while web and the plugin daemon still work.
    let door = front_door();
    let out = door.verify("/broken", &["--insecure", "--output", "json"]);
    assert_eq!(out.code, 5, "{out:?}");
    let report = out.json();
    let checks: BTreeMap<&str, &Value> =
        report["checks"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c)).collect();
    for name in ["web", "web-assets", "plugin-hook"] {
        assert_eq!(checks[name]["status"], "pass", "{name}: {}", checks[name]);
    }
    for name in ["console-api", "service-api"] {
        let check = checks[name];
        assert_eq!(check["status"], "fail", "{name}: {check}");
        assert_eq!(check["reason"], "answered by web (HTML) with HTTP 404, expected api", "{name}");
        assert!(check["fix"].as_str().unwrap().contains("same ingressClassName"), "{name}: {check}");
    }
    assert!(out.stderr.contains("verify failed: console-api, service-api"), "{}", out.stderr);
}

#[test]
fn verify_over_plain_http_names_the_https_url() {
    // NKP's Traefik redirects web to websecure: the page follows the redirect, the API probes report it.
    let door = front_door();
    let url = format!("http://127.0.0.1:{}/dify", door.traefik.web);
    let out = door.testbed.dify_gitops(&["verify", "--url", &url, "--insecure", "--output", "json"]);
    assert_eq!(out.code, 5, "{out:?}");
    let report = out.json();
    let checks: BTreeMap<&str, &Value> =
        report["checks"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c)).collect();
    assert_eq!(checks["web"]["status"], "pass", "{}", checks["web"]);
    assert_eq!(checks["web"]["url"], format!("https://127.0.0.1:{}/dify/apps", door.traefik.websecure));
    let console = checks["console-api"];
    assert_eq!(console["status"], "fail");
    assert!(console["reason"].as_str().unwrap().starts_with("redirected to https://"), "{console}");
    assert!(console["fix"].as_str().unwrap().contains("verify the https:// URL"), "{console}");
}

#[test]
fn at_the_root_path_every_route_reaches_its_component_without_stripping() {
    let door = root_front_door();
    let rows = [
        ("/", "web", "/"),
        ("/apps", "web", "/apps"),
        ("/explore/apps", "web", "/explore/apps"),
        ("/_next/static/chunks/main-app.js", "web", "/_next/static/chunks/main-app.js"),
        ("/console/api/setup", "api", "/console/api/setup"),
        ("/api/meta", "api", "/api/meta"),
        ("/v1/chat-messages", "api", "/v1/chat-messages"),
        ("/files/x", "api", "/files/x"),
        ("/mcp/x", "api", "/mcp/x"),
        ("/triggers/x", "api", "/triggers/x"),
        ("/e/hook", "plugin-daemon", "/e/hook"),
    ];
    let started = Instant::now();
    let mut failures = Vec::new();
    for (path, component, seen) in rows {
        let reply = door.https(path);
        let got = (reply.component.as_deref(), reply.seen_path.as_deref(), reply.prefix.as_deref());
        if got != (Some(component), Some(seen), Some("")) {
            failures.push(format!("{path}: expected {component} seeing {seen}, got {reply:?}"));
        }
    }
    eprintln!(
        "root routing table: {} requests, {} failed, in {:.2} s (front door setup {:.1} s)",
        rows.len(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        door.setup.as_secs_f64()
    );
    assert!(failures.is_empty(), "routing failures:\n{}", failures.join("\n"));
}

#[test]
fn an_http_scheme_install_is_still_redirected_to_https_on_nkp() {
    // The root-path scenario has external.scheme=http, so its routers carry no entrypoint annotation and sit on
    // both entrypoints; NKP's web entrypoint redirects every request to websecure all the same. On NKP the
    // browser therefore always lands on https, while Dify's URLs (CONSOLE_API_URL …) would say http.
    let door = root_front_door();
    let reply = door.http("/console/api/setup");
    assert!(matches!(reply.status, 301 | 308), "{reply:?}");
    assert_eq!(reply.component, None, "{reply:?}");
    assert_eq!(door.https("/console/api/setup").component.as_deref(), Some("api"));
}

#[test]
fn verify_passes_at_the_root_path_with_the_stock_web_image() {
    let door = root_front_door();
    let url = format!("https://127.0.0.1:{}", door.traefik.websecure);
    let ca = door.traefik.ca_file.to_str().unwrap();
    let out = door.testbed.dify_gitops(&["verify", "--url", &url, "--ca-file", ca, "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["base_path"], "/");
    for check in report["checks"].as_array().unwrap() {
        let expected = if check["name"] == "websocket" { "skip" } else { "pass" }; // Dify 1.13.3: no collaboration
        assert_eq!(check["status"], expected, "{check}");
    }
}
