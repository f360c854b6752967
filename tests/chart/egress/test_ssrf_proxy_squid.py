"""Egress > SSRF proxy: the rendered squid.conf, read by the real squid (Debian's 5.7 here; the chart's image runs
squid 6.6), and served on loopback: an allow-listed private address is reached, another private one is refused, and
with an upstream proxy everything else goes through it; a plugin of a daemon sent through it
(pluginDaemon.egressThroughSsrfProxy) meets the same allow-list."""

import http.server
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import env_of, free_port, get, merge, pod_spec, render_chart, render_error, scenario

BASE = scenario("v1.13.3")
BLOCKED = {"ssrfProxy": {"allowPrivateNetworks": False}}
ALLOW = {"ssrfProxy": {"allowPrivateNetworks": False,
                       "allowList": {"cidrs": ["127.0.0.2/32", "10.20.0.0/24", "fd00:20::/64"],
                                     "domains": ["vllm.models.corp", ".ollama.corp"]}}}
UPSTREAM = {"ssrfProxy": {"upstream": {"host": "127.0.0.4", "port": 3129}}}
VARIANTS = {
    "open-below-1.15": BASE,
    "blocked-from-1.15": scenario("v1.17.1"),
    "blocked-by-value": merge(BASE, BLOCKED),
    "allow-list": merge(BASE, ALLOW),
    "allow-list-and-upstream": merge(merge(BASE, ALLOW), UPSTREAM),
    "upstream-only": merge(BASE, UPSTREAM),
}


def squid_binary():
    path = shutil.which("squid") or next((p for p in ("/usr/sbin/squid", "/sbin/squid") if Path(p).is_file()), None)
    if path is None:
        pytest.fail("squid is not installed: `apt-get install squid` (Debian's squid 5.7; scripts/test-tools install)")
    return path


def squid_conf(values):
    return get(render_chart(values), "ConfigMap", "ssrf-proxy")["data"]["squid.conf"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_squid_accepts_the_rendered_configuration(variant, tmp_path):
    conf = tmp_path / "squid.conf"
    conf.write_text(squid_conf(VARIANTS[variant]))
    proc = subprocess.run([squid_binary(), "-k", "parse", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if "ERROR" in line or "FATAL" in line or "WARNING" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@pytest.mark.parametrize("values, message", [
    ({"ssrfProxy": {"allowList": {"cidrs": ["10.20.0.0/24"]}}}, "set ssrfProxy.allowPrivateNetworks=false"),
    ({"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"cidrs": ["10.20.0.0/33"]}}}, "is not an IPv4 or IPv6"),
    ({"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"cidrs": ["300.1.1.1"]}}}, "is not an IPv4 or IPv6"),
    ({"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"cidrs": ["10.0.0.0/8 all"]}}}, "is not an IPv4 or IPv6"),
    ({"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"domains": ["models.corp all"]}}}, "is not a domain name"),
    ({"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"domains": ["*.models.corp"]}}}, "is not a domain name"),
], ids=["open-networks", "prefix-too-long", "bad-octet", "injected-acl", "injected-domain", "wildcard"])
def test_refuses_an_allow_list_squid_would_misread(values, message):
    assert message in render_error(merge(BASE, values))


def test_upstream_must_be_a_host_and_port():
    assert render_error(merge(BASE, {"ssrfProxy": {"upstream": {"host": "http://proxy.corp:3128"}}}))
    assert render_error(merge(BASE, {"ssrfProxy": {"upstream": {"host": "proxy.corp", "port": 0}}}))


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append(self.path)
        body = self.server.answer.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(address, port, answer):
    server = http.server.ThreadingHTTPServer((address, port), _Recorder)
    server.seen, server.answer = [], answer
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _ask(proxy_port, line):
    """The status code squid answers to one request line sent to it."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as s:
        host = line.split()[1].split("/")[2] if "://" in line else line.split()[1]
        s.sendall(f"{line} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1]), head


@pytest.fixture
def squid_with():
    """Starts squid on loopback with a rendered squid.conf (its listening line moved to a free port) as the proxy
    user when run as root, as the image's uid 13 does; stops it by its process group. With `resolv_conf`, squid runs
    in a mount namespace of its own where that text is /etc/resolv.conf, as a pod's is (root only)."""
    started = []
    # Not pytest's tmp_path: its parent is private to the user running the tests, and squid runs as proxy.
    tmp_path = Path(tempfile.mkdtemp(prefix="dify-squid-"))

    def start(values, resolv_conf=None):
        port = free_port()
        conf = squid_conf(values)
        assert "\nhttp_port 3128\n" in conf
        path = tmp_path / "squid.conf"
        path.write_text(conf.replace("\nhttp_port 3128\n", f"\nhttp_port 127.0.0.1:{port}\n"))
        log = open(tmp_path / "squid.log", "w")
        user = {}
        if os.geteuid() == 0:
            proxy = pwd.getpwnam("proxy")
            os.chown(tmp_path, proxy.pw_uid, proxy.pw_gid)
            os.chown(path, proxy.pw_uid, proxy.pw_gid)
            os.chown(log.name, proxy.pw_uid, proxy.pw_gid)
            user = {"user": proxy.pw_uid, "group": proxy.pw_gid, "extra_groups": []}
        command = [squid_binary(), "-N", "-f", str(path)]
        if resolv_conf is not None:
            if os.geteuid() != 0:
                pytest.fail("squid with a pod's resolv.conf needs root (a mount namespace of its own): run as root")
            (tmp_path / "resolv.conf").write_text(resolv_conf)
            proxy = pwd.getpwnam("proxy")
            # unshare makes the namespace, mount binds the file there, and setpriv takes the proxy user, as above.
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /etc/resolv.conf && exec setpriv --reuid="$1" --regid="$2" --clear-groups '
                       '"$3" -N -f "$4"', str(tmp_path / "resolv.conf"), str(proxy.pw_uid), str(proxy.pw_gid),
                       squid_binary(), str(path)]
            user = {}
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **user)
        started.append((proc, log))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, f"squid exited: {Path(log.name).read_text()}"
                assert time.monotonic() < deadline, f"squid never listened: {Path(log.name).read_text()}"
                time.sleep(0.2)
        return port, Path(log.name)

    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    shutil.rmtree(tmp_path)


@pytest.fixture
def cluster_dns():
    """Starts Debian's dnsmasq as a cluster's DNS on 127.0.0.153:53 (root): the given Services' full names, and
    NXDOMAIN for every other name; returns the resolv.conf a kubelet writes for a pod of namespace `dify`. Stops it
    by its pid."""
    started = []
    tmp_path = Path(tempfile.mkdtemp(prefix="dify-dns-"))

    def start(records):
        binary = Path("/usr/sbin/dnsmasq")
        if not binary.is_file():
            pytest.fail("dnsmasq is not installed: `apt-get install dnsmasq-base` (scripts/test-tools install)")
        if os.geteuid() != 0:
            pytest.fail("a DNS server on port 53 needs root: run as root")
        (tmp_path / "records").write_text("".join(f"{ip} {name}\n" for name, ip in records.items()))
        log = tmp_path / "dnsmasq.log"
        proc = subprocess.Popen([str(binary), "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
                                 "--user=root", "--group=root", "--no-hosts", "--no-resolv", "--local=/#/",
                                 f"--addn-hosts={tmp_path / 'records'}", "--bind-interfaces",
                                 "--listen-address=127.0.0.153", "--port=53", "--log-queries",
                                 f"--log-facility={log}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        started.append(proc)
        deadline = time.monotonic() + 10
        while "read " + str(tmp_path / "records") not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "dnsmasq never started"
            time.sleep(0.1)
        return ("nameserver 127.0.0.153\nsearch dify.svc.cluster.local svc.cluster.local cluster.local\n"
                "options ndots:5\n")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("name", ["vllm.models", "vllm.models.svc", "vllm.models.svc.cluster.local"])
def test_a_service_is_reached_by_the_names_pods_give_it(squid_with, cluster_dns, name):
    # A private model as a Service of another namespace, on an allow-listed address. squid looks a name up as a pod
    # does (dns_defnames): through the search list, which `vllm.models` needs. Without it the request fails (502).
    port = free_port()
    model = _serve("127.0.0.2", port, "model")
    try:
        resolv_conf = cluster_dns({"vllm.models.svc.cluster.local": "127.0.0.2"})
        proxy_port, log = squid_with(merge(BASE, ALLOW), resolv_conf=resolv_conf)
        status, head = _ask(proxy_port, f"GET http://{name}:{port}/v1/models")
        assert status == 200 and model.seen == ["/v1/models"], head + log.read_text()
        # A name no Service has fails at once (squid 5.7 answers 502), after the same search-list lookups.
        started = time.monotonic()
        status, head = _ask(proxy_port, f"GET http://missing.models:{port}/v1/models")
        assert status in (502, 503) and time.monotonic() - started < 10 and model.seen == ["/v1/models"], head
    finally:
        model.shutdown()


def test_an_allow_listed_domain_matches_the_host_as_the_request_names_it(squid_with, cluster_dns):
    port = free_port()
    model = _serve("127.0.0.2", port, "model")
    try:
        resolv_conf = cluster_dns({"vllm.models.svc.cluster.local": "127.0.0.2"})
        values = merge(BASE, {"ssrfProxy": {"allowPrivateNetworks": False, "allowList": {"domains": ["vllm.models"]}}})
        proxy_port, log = squid_with(values, resolv_conf=resolv_conf)
        status, head = _ask(proxy_port, f"GET http://vllm.models:{port}/v1/models")
        assert status == 200 and model.seen == ["/v1/models"], head + log.read_text()
        # The same Service by its full name is another host to the list: a private address, refused.
        assert _ask(proxy_port, f"GET http://vllm.models.svc.cluster.local:{port}/v1/models")[0] == 403
        assert model.seen == ["/v1/models"]
    finally:
        model.shutdown()


def test_only_the_allow_listed_private_address_is_reached(squid_with):
    port = free_port()
    allowed, other = _serve("127.0.0.2", port, "model"), _serve("127.0.0.3", port, "secret")
    try:
        proxy_port, log = squid_with(merge(BASE, ALLOW))
        status, _ = _ask(proxy_port, f"GET http://127.0.0.2:{port}/v1/models")
        assert status == 200 and allowed.seen == ["/v1/models"], log.read_text()
        status, _ = _ask(proxy_port, f"GET http://127.0.0.3:{port}/")
        assert status == 403 and other.seen == []
        # HTTPS (CONNECT) to the allowed address on its own port; not to the other one.
        assert _ask(proxy_port, f"CONNECT 127.0.0.2:{port}")[0] == 200
        assert _ask(proxy_port, f"CONNECT 127.0.0.3:{port}")[0] == 403
    finally:
        allowed.shutdown(), other.shutdown()


def test_everything_but_the_allowed_private_destinations_goes_through_the_upstream_proxy(squid_with):
    port = free_port()
    parent_port = free_port()
    allowed = _serve("127.0.0.2", port, "model")
    parent = _serve("127.0.0.4", parent_port, "from the corporate proxy")
    try:
        upstream = {"ssrfProxy": {"upstream": {"host": "127.0.0.4", "port": parent_port}}}
        proxy_port, log = squid_with(merge(merge(BASE, ALLOW), upstream))
        # A public address (TEST-NET-1, unroutable here) is asked of the parent, never dialled.
        status, _ = _ask(proxy_port, "GET http://192.0.2.10/simple/requests/")
        assert status == 200 and parent.seen == ["http://192.0.2.10/simple/requests/"], log.read_text()
        status, _ = _ask(proxy_port, f"GET http://127.0.0.2:{port}/v1/models")
        assert status == 200 and allowed.seen == ["/v1/models"] and len(parent.seen) == 1
        assert _ask(proxy_port, f"GET http://127.0.0.3:{port}/")[0] == 403
        # A name goes to the parent too, once squid's own lookup of it (for private_dst) is answered: here NXDOMAIN
        # (RFC 6761's .invalid), as a proxied site's DNS answers for the internet's names. A name that resolves to
        # a private address (localhost, from /etc/hosts) is refused before any parent sees it.
        started = time.monotonic()
        status, _ = _ask(proxy_port, "GET http://files.pythonhosted.invalid/packages/")
        took = time.monotonic() - started
        assert status == 200 and parent.seen[-1] == "http://files.pythonhosted.invalid/packages/", log.read_text()
        assert took < 10, f"squid held a request for a name its DNS answered NXDOMAIN for {took:.1f} s"
        assert _ask(proxy_port, f"GET http://localhost:{port}/")[0] == 403 and len(parent.seen) == 2
    finally:
        allowed.shutdown(), parent.shutdown()


# A plugin's HTTP client, as the daemon starts it: Python with the daemon's proxy variables and nothing else.
# Python's urllib here; requests (the OpenAI-API-compatible plugin's) takes its proxies and NO_PROXY matching from
# the same urllib functions.
PLUGIN_CLIENT = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def test_a_plugin_of_a_daemon_through_the_ssrf_proxy_reaches_the_allow_listed_model_and_no_other(squid_with):
    port = free_port()
    allowed, other = _serve("127.0.0.2", port, "model"), _serve("127.0.0.3", port, "secret")
    try:
        values = merge(merge(BASE, ALLOW), {"pluginDaemon": {"egressThroughSsrfProxy": True}})
        proxy_port, log = squid_with(values)
        daemon = pod_spec(get(render_chart(values), "Deployment", "plugin-daemon"))["containers"][0]
        env = {k: v["value"] for k, v in env_of(daemon).items() if k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")}
        # The SSRF proxy's Service name resolves in the cluster; here squid listens on loopback.
        service = env["HTTP_PROXY"]
        env = {k: v.replace(service, f"http://127.0.0.1:{proxy_port}") for k, v in env.items()}

        def plugin_asks(url):
            out = subprocess.run([sys.executable, "-c", PLUGIN_CLIENT, url], env={**env, "PATH": os.environ["PATH"]},
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return int(out.stdout.strip())

        allowed_url, other_url = f"http://127.0.0.2:{port}/v1/models", f"http://127.0.0.3:{port}/v1/chat/completions"
        assert plugin_asks(allowed_url) == 200 and allowed.seen == ["/v1/models"]
        assert plugin_asks(other_url) == 403 and other.seen == []
        # Both went through squid (the allowed one too: not around it), which refused the second.
        access = [line for line in log.read_text().splitlines() if "127.0.0." in line]
        assert any(allowed_url in line and "/200 " in line for line in access), access
        assert any(other_url in line and "TCP_DENIED/403" in line for line in access), access
    finally:
        allowed.shutdown(), other.shutdown()
