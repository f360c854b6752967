//! A proxied site's locked-down egress on Dify 1.13.3: the plugin daemon leaves through the release's SSRF proxy
//! only (`pluginDaemon.egressThroughSsrfProxy`), and the SSRF proxy forwards all but the allow-listed model server to
//! the corporate proxy (`ssrfProxy.upstream`). The chart's bootstrap Job installs the signed model plugin from a
//! ConfigMap and adds its models. No browser: the Job's log and the two proxies' logs say what happened.

use std::time::Instant;

use crate::install::{Egress, Files, FirstSetUp, bring_up};

#[test]
fn dify_1_13_3_bootstraps_through_the_ssrf_proxy_and_a_corporate_proxy() {
    let started = Instant::now();
    // bring_up runs the bootstrap Job to its success: the plugin installed, the models added and checked.
    let mut install =
        bring_up("1.13.3", &[], "1.13.3-proxy-chain", FirstSetUp::Bootstrap, Egress::ProxyThroughSsrf, Files::Volume);
    let logs = install.cluster.dir.join("logs");
    install.check_bootstrap_set_up_the_provider();

    // PyPI came through the corporate proxy (its log kept beside the pods'). The pods share one network namespace,
    // so the proxies see its first address as every client's: the SSRF proxy's log below ties the two together.
    let _ = std::fs::copy(&install.egress.access_log, install.output.join("corporate-proxy-access.log"));
    let corporate: Vec<String> =
        install.egress.log().into_iter().filter(|l| l.contains("pypi.org") || l.contains("pythonhosted.org")).collect();
    assert!(!corporate.is_empty(), "the plugin install fetched nothing from PyPI through the corporate proxy");

    // The SSRF proxy forwarded those same requests to its parent, the corporate proxy, and never went direct.
    let parent = format!("_PARENT/{}", install.address);
    let ssrf_log = std::fs::read_to_string(logs.join("dify-ssrf-proxy-0.log")).unwrap_or_default();
    let ssrf_pypi: Vec<&str> =
        ssrf_log.lines().filter(|l| l.contains("pypi.org") || l.contains("pythonhosted.org")).collect();
    let not_to_parent: Vec<&&str> = ssrf_pypi.iter().filter(|l| !field(l, 8).ends_with(&parent)).collect();
    assert!(
        not_to_parent.is_empty() && ssrf_pypi.len() == corporate.len(),
        "each PyPI request should pass through the SSRF proxy to its parent (*{parent}): the corporate proxy saw {}, \
         the SSRF proxy logged {} (not to the parent: {not_to_parent:?})",
        corporate.len(),
        ssrf_pypi.len()
    );
    let hierarchy = ssrf_pypi.first().map(|l| field(l, 8)).unwrap_or_default();
    // The SSRF proxy resolves each destination's name for its private-destination rule before it forwards. The
    // cluster's DNS answers PyPI's names NXDOMAIN at once, so the request goes on to the parent at once; a lookup
    // nobody answered would hold it for squid's 30 s dns_timeout (37 s here before the harness had a DNS).
    let first_seen = |lines: &[&str]| lines.iter().map(|l| began(l)).fold(f64::INFINITY, f64::min);
    let corporate_lines: Vec<&str> = corporate.iter().map(String::as_str).collect();
    let waited = first_seen(&corporate_lines) - first_seen(&ssrf_pypi);
    assert!(
        waited < 10.0,
        "the first PyPI request reached the corporate proxy {waited:.1} s after the SSRF proxy got it: its lookup of \
         the name was not answered promptly (the cluster DNS's log: {})",
        install.cluster.dns.log.display()
    );
    install.figure(format!(
        "PyPI requests: {} through the SSRF proxy to its parent ({hierarchy}), the same {} in the corporate proxy's \
         log; the first reached the corporate proxy {waited:.1} s after the SSRF proxy got it",
        ssrf_pypi.len(),
        corporate.len()
    ));

    // The models' checks reached the allow-listed model server through the SSRF proxy, directly from there.
    let direct = |l: &str| field(l, 8).starts_with("HIER_DIRECT/");
    let through = install.model_requests_through_ssrf_proxy(&ssrf_log, direct, "should have passed each on directly");
    let model_url = install.model.url.trim_end_matches("/v1").to_string();
    let to_parent: Vec<String> = install.egress.log().into_iter().filter(|l| l.contains(&model_url)).collect();
    assert!(to_parent.is_empty(), "requests to the model server went to the corporate proxy: {to_parent:?}");
    install.figure(format!("model server: {through} requests (the models' checks), each through the SSRF proxy"));
    install.check_no_connection_refused(&[]);
    install.figure(format!("whole run: {:.1} s", started.elapsed().as_secs_f64()));
}

/// When squid got the request of an access log line: its time (the end) less its elapsed milliseconds.
fn began(line: &str) -> f64 {
    let number = |n| field(line, n).parse::<f64>().unwrap_or(f64::NAN);
    number(0) - number(1) / 1000.0
}

/// The `n`th whitespace-separated field of a squid access log line (2: client, 8: hierarchy/peer).
fn field(line: &str, n: usize) -> &str {
    line.split_whitespace().nth(n).unwrap_or_default()
}
