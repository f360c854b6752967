//! `dify-gitops verify`: probes a live install through its front door (NKP's Traefik) as a browser, an API client
//! and a plugin webhook would, and says for each route whether the right component answered and, when not, how to
//! fix it. Each probe fetches, then a pure function judges the answer, so the judgement is testable without a server.
//!
//! Who answered is told by the shape of the answer, as Dify's own components give it:
//! - web (Next.js): HTML referencing its assets under `<base path>/_next/`;
//! - api (Flask): JSON objects, errors as `{"code": "unauthorized", "message": …, "status": 401}`;
//! - plugin daemon (Gin): JSON `{"code": <negative number>, "message": …, "data": …}`;
//! - Traefik itself: `404 page not found` (no route) or a bare 502/503/504 (a route without a ready backend).
//!
//! Files: `model.rs` (the target, the trust, a check), `judge.rs` (what an answer means: who answered, pass or
//! fail and the fix; pure), `prober.rs` (the HTTP client that fetches, following redirects), `tls.rs` (the trust
//! roots and `--insecure`'s verifier); here the probes in order and the table.

mod judge;
mod model;
mod prober;
mod tls;

use serde::Serialize;

pub use judge::{
    Answer, Origin, judge_asset, judge_console_api, judge_plugin_hook, judge_service_api, judge_web, judge_websocket,
    next_assets, origin,
};
pub use model::{Check, Status, Target, Trust};
pub use prober::Prober;

/// A made-up hook id: the plugin daemon answers "not found" for it, which proves the route reaches the daemon.
const PROBE_HOOK: &str = "dify-gitops-verify";

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub base_path: String,
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// The probes, in order; the report passes when none fails.
pub async fn run(target: &Target, prober: &Prober) -> Report {
    let mut checks = Vec::new();
    let page = prober.get(&target.url("/"), true).await;
    let web = judge_web(target, &page);
    let asset = match &page {
        Answer::Response { body, .. } if web.status == Status::Pass => next_assets(body).into_iter().next(),
        _ => None,
    };
    checks.push(web);
    checks.push(match asset {
        Some(path) => judge_asset(&prober.get(&format!("{}{path}", target.origin), false).await),
        None => Check {
            name: "web-assets",
            status: Status::Skip,
            url: target.url("/_next/"),
            http_status: None,
            reason: "skipped: the web page did not pass".to_string(),
            fix: None,
        },
    });
    checks.push(judge_console_api(target, &prober.get(&target.url("/console/api/setup"), false).await));
    checks.push(judge_service_api(target, &prober.get(&target.url("/v1/info"), false).await));
    let hook = target.url(&format!("/e/{PROBE_HOOK}/ping"));
    checks.push(judge_plugin_hook(target, &prober.get(&hook, false).await));
    let socket = target.url("/socket.io/?EIO=4&transport=polling");
    checks.push(judge_websocket(target, &prober.get(&socket, false).await));
    let passed = checks.iter().all(|c| c.status != Status::Fail);
    Report {
        url: format!("{}{}", target.origin, target.base),
        base_path: target.shown_base().to_string(),
        passed,
        checks,
    }
}

/// The text table: one line per check with the URL probed, the fix under a failing one.
pub fn table(report: &Report) -> String {
    let rows = report.checks.iter().map(|c| crate::report::Row {
        status: c.status,
        name: c.name,
        reason: format!("{}  ({})", c.reason, c.url),
        fix: c.fix.as_deref(),
    });
    format!("verify {}\n{}", report.url, crate::report::table(rows))
}

#[cfg(test)]
mod tests {
    use super::prober::resolve;
    use super::*;

    fn response(status: u16, content_type: &str, body: &str) -> Answer {
        Answer::Response {
            url: "https://192.0.2.10/dify/x".into(),
            status,
            content_type: content_type.into(),
            location: None,
            body: body.into(),
        }
    }

    fn target() -> Target {
        Target::parse("https://192.0.2.10/dify/").unwrap()
    }

    #[test]
    fn targets_keep_the_origin_and_the_base_path_without_its_trailing_slash() {
        assert_eq!(target(), Target { origin: "https://192.0.2.10".into(), base: "/dify".into() });
        assert_eq!(Target::parse("http://10.0.0.5:8080").unwrap().base, "");
        assert!(Target::parse("ftp://x/dify").unwrap_err().to_string().contains("https://"));
        assert!(Target::parse("/dify").unwrap_err().to_string().contains("e.g. https://192.0.2.10/dify"));
    }

    #[test]
    fn origins_are_told_by_the_shape_of_the_answer() {
        let api_error =
            r#"{"code": "unauthorized", "message": "Authorization header must be provided", "status": 401}"#;
        assert_eq!(origin(&response(401, "application/json", api_error)), Origin::Api);
        assert_eq!(origin(&response(200, "application/json", r#"{"step": "finished"}"#)), Origin::Api);
        let daemon = r#"{"code": -404, "message": "{\"message\":\"endpoint not found\"}", "data": null}"#;
        assert_eq!(origin(&response(404, "application/json; charset=utf-8", daemon)), Origin::PluginDaemon);
        assert_eq!(origin(&response(200, "text/html; charset=utf-8", "<!DOCTYPE html><html>")), Origin::Web);
        assert_eq!(origin(&response(404, "text/plain; charset=utf-8", "404 page not found\n")), Origin::NoRoute);
        assert_eq!(origin(&response(503, "text/plain", "Service Unavailable")), Origin::NoBackend);
        assert_eq!(origin(&response(200, "application/json", r#"{"ok": true}"#)), Origin::OtherJson);
        let handshake = r#"0{"sid":"x","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}"#;
        assert_eq!(origin(&response(200, "text/plain; charset=UTF-8", handshake)), Origin::EngineIo);
    }

    #[test]
    fn next_assets_are_found_in_attributes_and_inline_flight_data() {
        let html = r#"<link rel="stylesheet" href="/dify/_next/static/css/app.css"/><script src="https://192.0.2.10/dify/_next/static/chunks/main.js" async></script><script>self.__next_f.push([1,"HL[\"/dify/_next/static/media/font.woff2\",\"font\"]"])</script>"#;
        assert_eq!(
            next_assets(html),
            [
                "/dify/_next/static/css/app.css",
                "/dify/_next/static/chunks/main.js",
                "/dify/_next/static/media/font.woff2"
            ]
        );
    }

    #[test]
    fn a_base_path_build_passes_and_a_stock_build_fails_naming_the_build_argument() {
        let built = r#"<!DOCTYPE html><html><script src="/dify/_next/static/chunks/main.js"></script></html>"#;
        assert_eq!(judge_web(&target(), &response(200, "text/html", built)).status, Status::Pass);

        let stock = r#"<!DOCTYPE html><html><script src="/_next/static/chunks/main.js"></script></html>"#;
        let check = judge_web(&target(), &response(404, "text/html", stock));
        assert_eq!(check.status, Status::Fail);
        assert!(check.reason.contains("/_next/ (outside /dify)"), "{}", check.reason);
        assert!(check.fix.unwrap().contains("NEXT_PUBLIC_BASE_PATH=/dify"));

        let other = r#"<!DOCTYPE html><script src="/ai/_next/static/chunks/main.js"></script>"#;
        let check = judge_web(&target(), &response(404, "text/html", other));
        assert!(check.reason.contains("built for /ai, served at /dify"), "{}", check.reason);

        let root = Target::parse("https://192.0.2.10").unwrap();
        assert_eq!(judge_web(&root, &response(200, "text/html", stock)).status, Status::Pass);
    }

    #[test]
    fn misrouted_answers_name_the_component_that_answered_and_the_route_to_fix() {
        let html = response(200, "text/html", "<!DOCTYPE html><html></html>");
        let check = judge_console_api(&target(), &html);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.reason, "answered by web (HTML) with HTTP 200, expected api");
        assert!(check.fix.unwrap().contains("/dify/console/api must go to api"));

        let check = judge_plugin_hook(&target(), &html);
        assert!(check.fix.unwrap().contains("plugin-daemon Ingress"));

        let api = response(404, "application/json", r#"{"code": "not_found", "message": "x", "status": 404}"#);
        assert_eq!(
            judge_plugin_hook(&target(), &api).reason,
            "answered by api (JSON) with HTTP 404, expected plugin-daemon"
        );

        let redirect = Answer::Response {
            url: "http://192.0.2.10/dify/v1/info".into(),
            status: 308,
            content_type: "text/plain".into(),
            location: Some("https://192.0.2.10/dify/v1/info".into()),
            body: "Permanent Redirect".into(),
        };
        let check = judge_service_api(&target(), &redirect);
        assert_eq!(check.reason, "redirected to https://192.0.2.10/dify/v1/info (HTTP 308), expected api");
        assert!(check.fix.unwrap().contains("verify the https:// URL"));

        let none = response(404, "text/plain", "404 page not found");
        assert!(judge_service_api(&target(), &none).fix.unwrap().contains("ingressClassName"));

        let tls = Answer::Unreachable {
            url: "https://x/dify/v1/info".into(),
            error: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(judge_service_api(&target(), &tls).fix.unwrap().contains("--ca-file"));
    }

    #[test]
    fn the_websocket_check_passes_on_a_handshake_and_is_skipped_when_web_answers() {
        let handshake = response(200, "text/plain", r#"0{"sid":"x","upgrades":["websocket"]}"#);
        assert_eq!(judge_websocket(&target(), &handshake).status, Status::Pass);
        let web = response(404, "text/html", "<!DOCTYPE html><html></html>");
        let check = judge_websocket(&target(), &web);
        assert_eq!(check.status, Status::Skip);
        assert!(check.reason.contains("collaboration is off"), "{}", check.reason);
        // Real Dify's web (Next.js) redirects `/socket.io/` to `/socket.io`: the web answered, as above.
        let trailing_slash = Answer::Response {
            url: "https://192.0.2.10/dify/socket.io/?EIO=4&transport=polling".into(),
            status: 308,
            content_type: "text/plain".into(),
            location: Some("/dify/socket.io?EIO=4&transport=polling".into()),
            body: "/dify/socket.io?EIO=4&transport=polling".into(),
        };
        assert_eq!(judge_websocket(&target(), &trailing_slash).status, Status::Skip);
        let elsewhere = Answer::Response {
            url: "https://192.0.2.10/dify/socket.io/?EIO=4&transport=polling".into(),
            status: 308,
            content_type: "text/plain".into(),
            location: Some("/dify/signin".into()),
            body: String::new(),
        };
        assert_eq!(judge_websocket(&target(), &elsewhere).status, Status::Fail);
        let down = response(503, "text/plain", "Service Unavailable");
        let check = judge_websocket(&target(), &down);
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.unwrap().contains("app.kubernetes.io/component=api-websocket"));
    }

    #[test]
    fn redirects_resolve_against_the_url_that_sent_them() {
        assert_eq!(resolve("https://h:8443/dify/", "/dify/apps"), "https://h:8443/dify/apps");
        assert_eq!(resolve("https://h/dify/x/y", "z"), "https://h/dify/x/z");
        assert_eq!(resolve("http://h/dify/", "https://h/dify/"), "https://h/dify/");
    }
}
