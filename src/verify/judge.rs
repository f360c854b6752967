//! What an answer means: which component gave it (told by its shape), and for each probe whether it passes and,
//! when not, the fix. Pure functions over [`Answer`]s, tested without a server.

use super::model::{Check, Status, Target};

/// What a server answered, or why there was no answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Response { url: String, status: u16, content_type: String, location: Option<String>, body: String },
    Unreachable { url: String, error: String },
}

impl Answer {
    fn url(&self) -> &str {
        match self {
            Answer::Response { url, .. } | Answer::Unreachable { url, .. } => url,
        }
    }
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            Answer::Unreachable { .. } => None,
        }
    }
}

/// Which component an answer came from, told by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Web,
    Api,
    PluginDaemon,
    /// An Engine.IO (Socket.IO) handshake: Dify's api-websocket (collaboration, Dify 1.15+).
    EngineIo,
    OtherJson,
    /// Traefik's own `404 page not found`: no router matched.
    NoRoute,
    /// Traefik's bare 502/503/504: a router matched but no backend answered.
    NoBackend,
    Other,
    Unreachable,
}

pub fn origin(answer: &Answer) -> Origin {
    let Answer::Response { status, content_type, body, .. } = answer else {
        return Origin::Unreachable;
    };
    if let Ok(serde_json::Value::Object(json)) = serde_json::from_str::<serde_json::Value>(body) {
        return match json.get("code") {
            Some(serde_json::Value::Number(_)) if json.contains_key("message") => Origin::PluginDaemon,
            Some(serde_json::Value::String(_)) => Origin::Api,
            _ if json.contains_key("step") || json.get("status").is_some_and(|s| s.is_number()) => Origin::Api,
            _ => Origin::OtherJson,
        };
    }
    if body.starts_with("0{") && body.contains("\"sid\"") {
        return Origin::EngineIo;
    }
    let start = body.trim_start().get(..15).unwrap_or_default().to_ascii_lowercase();
    if content_type.starts_with("text/html") || start.starts_with("<!doctype html") || start.starts_with("<html") {
        return Origin::Web;
    }
    match status {
        404 if body.trim() == "404 page not found" => Origin::NoRoute,
        502..=504 => Origin::NoBackend,
        _ => Origin::Other,
    }
}

/// A redirect from `<path>/` to `<path>`: Next.js normalising the trailing slash, so the web answered the path
/// (real Dify's web does this for `/socket.io/` when no api-websocket route takes it first).
fn drops_the_trailing_slash(answer: &Answer, path: &str) -> bool {
    matches!(answer, Answer::Response { status: 301 | 308, location: Some(location), .. }
        if location.split('?').next().is_some_and(|p| p.ends_with(path)))
}

fn describe(origin: &Origin) -> &'static str {
    match origin {
        Origin::Web => "web (HTML)",
        Origin::Api => "api (JSON)",
        Origin::PluginDaemon => "the plugin daemon",
        Origin::EngineIo => "a Socket.IO server",
        Origin::OtherJson => "something answering JSON that is neither Dify's api nor its plugin daemon",
        Origin::NoRoute => "Traefik, with no route for it (404 page not found)",
        Origin::NoBackend => "Traefik, with no ready backend behind the route",
        Origin::Other => "something that is not Dify",
        Origin::Unreachable => "nobody",
    }
}

/// The `/_next/` asset references of an HTML page, as paths (scheme and host dropped), in order of appearance.
pub fn next_assets(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"["'(]((?:https?://[^"'()\s/]+)?[^"'()\s<>]*?/_next/[^"'()\s<>\\]+)"#)
        .expect("valid asset regex");
    re.captures_iter(html)
        .map(|c| c[1].to_string())
        .map(|r| match r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")) {
            Some(rest) => rest.find('/').map_or_else(String::new, |i| rest[i..].to_string()),
            None => r,
        })
        .filter(|r| r.starts_with('/'))
        .collect()
}

fn fail(name: &'static str, answer: &Answer, reason: String, fix: String) -> Check {
    Check {
        name,
        status: Status::Fail,
        url: answer.url().to_string(),
        http_status: answer.status(),
        reason,
        fix: Some(fix),
    }
}

fn pass(name: &'static str, answer: &Answer, reason: String) -> Check {
    Check { name, status: Status::Pass, url: answer.url().to_string(), http_status: answer.status(), reason, fix: None }
}

/// The failure for an answer from the wrong place; `expected` names the component and `route` the Ingress.
fn misrouted(
    name: &'static str,
    answer: &Answer,
    origin: &Origin,
    expected: &str,
    route: &str,
    trust_fix: bool,
) -> Check {
    if let Answer::Response { url, status: status @ 300..=399, location: Some(location), .. } = answer {
        let fix = if url.starts_with("http://") && location.starts_with("https://") {
            "Traefik redirects HTTP to HTTPS (NKP's does): verify the https:// URL".to_string()
        } else {
            format!("{route} must be answered by {expected}, not redirected: check the Ingresses and middlewares")
        };
        return fail(name, answer, format!("redirected to {location} (HTTP {status}), expected {expected}"), fix);
    }
    let fix = match origin {
        Origin::Unreachable if trust_fix => "the server's certificate is not trusted: pass --ca-file with the CA that \
             signed it (on NKP the kommander-ca certificate: kubectl get secret -n cert-manager kommander-ca -o \
             jsonpath='{.data.tls\\.crt}' | base64 -d > ca.crt), or --insecure"
            .to_string(),
        Origin::Unreachable => "check the address (dify-gitops discover prints Traefik's load-balancer address) and \
             that this machine can reach it"
            .to_string(),
        Origin::NoRoute => format!(
            "no Ingress claims {route}: check `kubectl get ingress -n <namespace>` for the {expected} Ingress, its \
             ingressClassName (NKP's Traefik ignores every other class) and, over https, its router.entrypoints \
             (websecure) and router.tls annotations"
        ),
        Origin::NoBackend => format!(
            "the route exists but {expected} has no ready pod: kubectl get pods -n <namespace> -l \
             app.kubernetes.io/component={expected}"
        ),
        _ => format!(
            "{route} must go to {expected}: check that the {expected} Ingress exists with the same ingressClassName \
             and entrypoints as the others (a missing one lets the web catch-all take its paths)"
        ),
    };
    let answered = match (origin, answer) {
        (Origin::Unreachable, Answer::Unreachable { error, .. }) => format!("no answer: {error}"),
        _ => format!("answered by {} with HTTP {}", describe(origin), answer.status().unwrap_or_default()),
    };
    fail(name, answer, format!("{answered}, expected {expected}"), fix)
}

fn is_tls_error(answer: &Answer) -> bool {
    matches!(answer, Answer::Unreachable { error, .. } if error.contains("certificate") || error.contains("Certificate"))
}

/// The web page at the base path: served by web, and built for this base path.
pub fn judge_web(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "web";
    let origin = origin(answer);
    let Answer::Response { body, status, .. } = answer else {
        return misrouted(NAME, answer, &origin, "web", target.shown_base(), is_tls_error(answer));
    };
    if origin != Origin::Web {
        return misrouted(NAME, answer, &origin, "web", &format!("{}/", target.base), false);
    }
    let assets = next_assets(body);
    let prefix = |asset: &str| asset[..asset.find("/_next/").unwrap_or(0)].to_string();
    let mut prefixes: Vec<String> = assets.iter().map(|a| prefix(a)).collect();
    prefixes.dedup();
    let build_fix = |what: &str| {
        format!(
            "{what}: build the web image with NEXT_PUBLIC_BASE_PATH={base} (dify-gitops' web-image workflow, or by \
             hand `scripts/dify-web-build <Dify checkout at the same tag> {base} out/` and \
             .github/docker/dify-web.Dockerfile) and set images.web.repository and images.web.tag to it",
            base = target.base
        )
    };
    if assets.is_empty() {
        return fail(
            NAME,
            answer,
            format!("HTML with HTTP {status} but no /_next/ assets: not Dify's web page"),
            "check what serves this path: the web Ingress should send it to the web Service".to_string(),
        );
    }
    if prefixes.iter().all(|p| *p == target.base) {
        return pass(NAME, answer, format!("HTTP {status}, {} assets under {}/_next/", assets.len(), target.base));
    }
    let other = prefixes.iter().find(|p| **p != target.base).cloned().unwrap_or_default();
    if other.is_empty() {
        fail(
            NAME,
            answer,
            format!(
                "the page asks for its assets at /_next/ (outside {}): a web image built without a base path, \
                 so the browser's requests for them reach no Dify route",
                target.base
            ),
            build_fix("the stock web image only works at the root path"),
        )
    } else {
        fail(
            NAME,
            answer,
            format!(
                "the page asks for its assets at {other}/_next/: a web image built for {other}, served at {}",
                target.shown_base()
            ),
            build_fix("the web image's base path must be the path it is served at"),
        )
    }
}

/// One asset the page references: web serves it under the base path too.
pub fn judge_asset(answer: &Answer) -> Check {
    const NAME: &str = "web-assets";
    let origin = origin(answer);
    match answer {
        Answer::Response { status, .. } if (200..300).contains(status) => {
            pass(NAME, answer, format!("HTTP {status}: the page's scripts and styles load"))
        }
        _ if matches!(origin, Origin::NoRoute | Origin::NoBackend | Origin::Unreachable) => {
            misrouted(NAME, answer, &origin, "web", "the asset path", false)
        }
        _ => fail(
            NAME,
            answer,
            format!("HTTP {}: the page's own asset does not load", answer.status().unwrap_or_default()),
            "check the web pods' logs; the asset path must reach web unstripped".to_string(),
        ),
    }
}

/// `<base>/console/api/setup` answers JSON from api (the console's first call).
pub fn judge_console_api(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "console-api";
    let origin = origin(answer);
    if origin != Origin::Api {
        let route = format!("{}/console/api", target.base);
        return misrouted(NAME, answer, &origin, "api", &route, is_tls_error(answer));
    }
    let Answer::Response { status, body, .. } = answer else { unreachable!("an api origin has a response") };
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match json.get("step").and_then(|s| s.as_str()) {
        Some(step) => pass(NAME, answer, format!("HTTP {status}, setup step '{step}'")),
        None => Check {
            status: Status::Warn,
            fix: Some("api answers but not as Dify's setup endpoint does: check the api pods' logs".to_string()),
            ..pass(NAME, answer, format!("HTTP {status}: JSON from api without a setup step"))
        },
    }
}

/// `<base>/v1/...` (the service API) answers from api; 401 without an app key is the expected answer.
pub fn judge_service_api(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "service-api";
    let origin = origin(answer);
    if origin != Origin::Api {
        return misrouted(NAME, answer, &origin, "api", &format!("{}/v1", target.base), is_tls_error(answer));
    }
    let status = answer.status().unwrap_or_default();
    if status >= 500 {
        return fail(
            NAME,
            answer,
            format!("api answered HTTP {status}"),
            "api is reachable but failing: check the api pods' logs".to_string(),
        );
    }
    pass(NAME, answer, format!("HTTP {status} from api"))
}

/// `<base>/e/<hook>/...` reaches the plugin daemon (plugin endpoints, webhooks).
pub fn judge_plugin_hook(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "plugin-hook";
    let origin = origin(answer);
    if origin == Origin::PluginDaemon {
        let status = answer.status().unwrap_or_default();
        return pass(NAME, answer, format!("HTTP {status} from the plugin daemon"));
    }
    let mut check =
        misrouted(NAME, answer, &origin, "plugin-daemon", &format!("{}/e/", target.base), is_tls_error(answer));
    if origin == Origin::Web {
        check.fix = Some(format!(
            "{}/e/ must go to the plugin daemon with the base path stripped: Dify 1.x needs the plugin-daemon \
             Ingress (Dify before 1.0 has no plugin daemon, and no plugin endpoints)",
            target.base
        ));
    }
    check
}

/// `<base>/socket.io/` reaches api-websocket (collaboration): an Engine.IO handshake. Skipped when web answers,
/// as it does when collaboration is off (the path then falls to the web catch-all).
pub fn judge_websocket(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "websocket";
    let origin = if drops_the_trailing_slash(answer, "/socket.io") { Origin::Web } else { origin(answer) };
    match origin {
        Origin::EngineIo => pass(NAME, answer, "Socket.IO handshake from api-websocket".to_string()),
        Origin::Web | Origin::NoRoute => Check {
            status: Status::Skip,
            ..pass(
                NAME,
                answer,
                format!(
                    "no Socket.IO server behind {}/socket.io/ ({} answered): collaboration is off, or its Ingress is \
                     missing",
                    target.base,
                    describe(&origin)
                ),
            )
        },
        _ => misrouted(NAME, answer, &origin, "api-websocket", &format!("{}/socket.io/", target.base), false),
    }
}
