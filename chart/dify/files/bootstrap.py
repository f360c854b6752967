"""Declarative first set-up of Dify, run by the chart's bootstrap hook Job (templates/bootstrap-job.yaml).

Every step first asks Dify whether it is already done, so the Job is safe on every install and upgrade:
1. the first admin, through the set-up flow that needs no login (GET /setup, POST /init, POST /setup);
2. with a model provider asked for: one login as that admin, the model plugin (from a local package or the
   marketplace), each model's credentials (added, or updated when they differ), and the workspace's default models.

Only the Python standard library: the Job runs in the api image of whichever Dify version the chart deploys.
Secrets arrive in the environment from the release's Secrets and leave only in request bodies: this script prints
step names, HTTP statuses and Dify's error codes, never a response body (Dify echoes part of a model key in its
errors, and its credential reads return a masked key).

Exit codes: 0 done (or nothing to do), 1 a step failed (its line says which and what to fix).
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

API = os.environ["DIFY_API_URL"].rstrip("/")
TIMEOUT = int(os.environ.get("BOOTSTRAP_TIMEOUT_SECONDS", "900"))
# The name under which this Job keeps the credentials it adds, so that a later run finds and updates them.
CREDENTIAL_NAME = "dify-gitops"
# Dify's placeholder for "keep the stored secret" in a credential update.
HIDDEN = "[__HIDDEN__]"


def log(message):
    print(f"bootstrap: {message}", flush=True)


def fail(message):
    log(f"failed: {message}")
    sys.exit(1)


class Failed(Exception):
    """An answer the step cannot go on from: the status and Dify's error code, never the body."""

    def __init__(self, method, path, status, code):
        super().__init__(f"{method} {path} answered {status}" + (f" ({code})" if code else ""))
        self.status = status


class Console:
    """Dify's console API at the api Service, with the cookies it sets kept by hand: with https public URLs Dify
    marks them Secure (and names them __Host-...), which a cookie jar would never send over the in-cluster http."""

    def __init__(self):
        self.cookies = {}
        self.headers = {}

    def call(self, method, path, body=None, form=None, ok=(200, 201)):
        url = f"{API}/console/api{path}"
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data, headers["Content-Type"] = multipart(form)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw, set_cookies = response.status, response.read(), response.headers.get_all("Set-Cookie")
        except urllib.error.HTTPError as error:
            status, raw, set_cookies = error.code, error.read(), error.headers.get_all("Set-Cookie")
        for cookie in set_cookies or []:
            name, _, value = cookie.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        if status not in ok:
            code = answer.get("code") if isinstance(answer, dict) else None
            raise Failed(method, path, status, code)
        return status, answer

    def cookie(self, name):
        """A cookie Dify set, under its plain or __Host- name."""
        return self.cookies.get(name) or self.cookies.get(f"__Host-{name}")


def multipart(fields):
    """A multipart/form-data body: fields maps a name to (filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, (filename, content) in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_for_api():
    deadline = time.time() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{API}/health", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline:
            fail(f"the api at {API} did not answer /health within {TIMEOUT} s")
        time.sleep(3)


def set_up_admin(console, email, name, password):
    _, setup = console.call("GET", "/setup")
    if setup.get("step") == "finished":
        log("admin: already set up")
        return
    init_password = os.environ.get("INIT_PASSWORD", "")
    if init_password:
        # Validating INIT_PASSWORD marks this client's session (a cookie) as allowed to set up.
        console.call("POST", "/init", body={"password": init_password})
    try:
        console.call("POST", "/setup", body={"email": email, "name": name, "password": password})
    except Failed as error:
        if error.status == 403:
            log("admin: already set up (by someone else meanwhile)")
            return
        raise
    log(f"admin: set up ({email})")


def sign_in(console, email, password):
    # Dify takes the password base64-encoded here. One attempt only: each failure counts towards Dify's lock-out of
    # the account (five within a day), which would lock the person out too.
    encoded = base64.b64encode(password.encode()).decode()
    try:
        _, answer = console.call("POST", "/login", body={"email": email, "password": encoded, "remember_me": False})
    except Failed as error:
        if error.status == 401:
            fail(
                "admin: Dify refused the admin password of the release Secret (key admin-password): it was changed "
                "in Dify. Set it back in Dify, or put the current one in the Secret; the Job does not retry, so that "
                "Dify does not lock the account"
            )
        if error.status == 429:
            fail("admin: Dify has locked the admin account after failed sign-ins; wait for the lock to expire")
        raise
    if answer.get("result") != "success":
        fail("admin: sign-in did not succeed (the admin has no workspace)")
    access, csrf = console.cookie("access_token"), console.cookie("csrf_token")
    if not access or not csrf:
        fail("admin: Dify set no access_token/csrf_token cookies on sign-in")
    # Dify checks the CSRF token (header against cookie) on every console request, reads included.
    console.headers = {"Authorization": f"Bearer {access}", "X-CSRF-Token": csrf}
    log("admin: signed in")


def install_plugin(console, spec):
    """Installs the model plugin unless a plugin with its id is there. Returns the plugin id."""
    package, package_url = os.environ.get("MODEL_PLUGIN_PACKAGE"), os.environ.get("MODEL_PLUGIN_URL")
    if package or package_url:
        if package:
            with open(package, "rb") as f:
                content = f.read()
        else:
            content = download(package_url)
        _, decoded = console.call("POST", "/workspaces/current/plugin/upload/pkg", form={"pkg": ("plugin.difypkg", content)})
        identifier = decoded["unique_identifier"]
        route = "/workspaces/current/plugin/install/pkg"
    else:
        identifier = spec["marketplaceIdentifier"]
        route = "/workspaces/current/plugin/install/marketplace"
    plugin_id = identifier.split(":", 1)[0]
    _, listed = console.call("GET", "/workspaces/current/plugin/list?page=1&page_size=256")
    if any(p.get("plugin_id") == plugin_id for p in listed.get("plugins", [])):
        log(f"plugin: {plugin_id} already installed")
        return plugin_id
    started = time.time()
    _, task = console.call("POST", route, body={"plugin_unique_identifiers": [identifier]})
    task_id = task.get("task_id")
    while task_id and not task.get("all_installed"):
        _, polled = console.call("GET", f"/workspaces/current/plugin/tasks/{task_id}")
        status = polled.get("task", {}).get("status")
        if status == "success":
            break
        if status == "failed":
            fail(f"plugin: the plugin daemon failed to install {plugin_id}; its log says why")
        if time.time() - started > TIMEOUT:
            fail(f"plugin: {plugin_id} was still installing after {TIMEOUT} s")
        time.sleep(3)
    log(f"plugin: {plugin_id} installed in {time.time() - started:.0f} s")
    return plugin_id


def download(url):
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        fail(f"plugin: downloading bootstrap.modelProvider.packageUrl {url} failed: {error}")


def masked(secret):
    """The masked form in which Dify returns a stored secret (its first 6 and last 2 characters around 12 stars)."""
    if len(secret) <= 8:
        return "*" * 20
    return secret[:6] + "*" * 12 + secret[-2:]


def form_defaults(console, provider, model_type):
    """The defaults of the required fields of the provider's model form for `model_type` (Dify refuses a model
    without them): the form is the plugin's, so it is read from Dify rather than known here."""
    _, listed = console.call("GET", f"/workspaces/current/model-providers?model_type={model_type}")
    for entry in listed.get("data") or []:
        if entry.get("provider") != provider:
            continue
        fields = (entry.get("model_credential_schema") or {}).get("credential_form_schemas") or []
        defaults = {}
        for field in fields:
            conditions = field.get("show_on") or []
            shown = all(c.get("variable") != "__model_type" or c.get("value") == model_type for c in conditions)
            if shown and field.get("required") and field.get("default") not in (None, ""):
                defaults[field["variable"]] = str(field["default"])
        return defaults
    fail(f"model: Dify lists no provider {provider} for {model_type} models; check bootstrap.modelProvider.provider")


def set_model(console, provider, model, endpoint, api_key):
    name, model_type = model["name"], model.get("type", "llm")
    desired = form_defaults(console, provider, model_type)
    desired["endpoint_url"] = endpoint
    desired.update({k: str(v) for k, v in (model.get("credentials") or {}).items()})
    if api_key:
        desired["api_key"] = api_key
    base = f"/workspaces/current/model-providers/{provider}/models/credentials"
    query = urllib.parse.urlencode({"model": name, "model_type": model_type})
    _, current = console.call("GET", f"{base}?{query}")
    ours = [c for c in current.get("available_credentials") or [] if c.get("credential_name") == CREDENTIAL_NAME]
    if not ours:
        console.call("POST", base, body={"model": name, "model_type": model_type, "name": CREDENTIAL_NAME, "credentials": desired})
        log(f"model: {name} ({model_type}) added")
        return
    credential_id = ours[0]["credential_id"]
    query = urllib.parse.urlencode({"model": name, "model_type": model_type, "credential_id": credential_id})
    _, stored = console.call("GET", f"{base}?{query}")
    stored = stored.get("credentials") or {}
    # Dify drops the keys a model's form does not have, so only the stored ones can differ; a key is compared in
    # the masked form Dify returns it in.
    differs = [k for k, v in desired.items() if k in stored and stored[k] != (masked(v) if k == "api_key" else v)]
    if not differs and bool(api_key) == bool(stored.get("api_key")):
        log(f"model: {name} ({model_type}) unchanged")
        return
    body = {"model": name, "model_type": model_type, "name": CREDENTIAL_NAME, "credential_id": credential_id}
    console.call("PUT", base, body={**body, "credentials": desired})
    log(f"model: {name} ({model_type}) updated")


def set_default_models(console, provider, models):
    for model_type in ("llm", "text-embedding"):
        first = next((m["name"] for m in models if m.get("type", "llm") == model_type), None)
        if first is None:
            continue
        _, current = console.call("GET", f"/workspaces/current/default-model?model_type={model_type}")
        data = current.get("data") or {}
        if data.get("model") == first and (data.get("provider") or {}).get("provider") == provider:
            continue
        setting = {"model_type": model_type, "provider": provider, "model": first}
        console.call("POST", "/workspaces/current/default-model", body={"model_settings": [setting]})
        log(f"default {model_type} model: {first}")


def main():
    email, name = os.environ["ADMIN_EMAIL"], os.environ.get("ADMIN_NAME", "Admin")
    password = os.environ["ADMIN_PASSWORD"]
    provider_spec = json.loads(os.environ.get("MODEL_PROVIDER") or "null")
    wait_for_api()
    console = Console()
    try:
        set_up_admin(console, email, name, password)
        if not provider_spec:
            return
        console = Console()
        sign_in(console, email, password)
        install_plugin(console, provider_spec)
        provider = provider_spec["provider"]
        for model in provider_spec["models"]:
            set_model(console, provider, model, provider_spec["endpointUrl"], os.environ.get("MODEL_API_KEY", ""))
        set_default_models(console, provider, provider_spec["models"])
    except Failed as error:
        fail(str(error))
    log("done")


if __name__ == "__main__":
    main()
