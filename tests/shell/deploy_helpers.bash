# Checks of chart/deploy.sh against the real local kube-apiserver with the NKP fixture, shared by deploy.bats
# (Helm 4) and deploy-helm3.bats (Helm 3): each file starts its own control plane, sets HELM and calls these.
#
# No controller runs in the testbed: a LoadBalancer Service gets an address only when a check patches its status,
# and no pod ever runs, so installs pass `-- --no-hooks` (the chart's migration hook Job would never complete).
# Namespaces are never deleted (no namespace controller: deletion hangs); each check uses its own.
#
# shellcheck disable=SC2154 # status and output are set by bats' run
# shellcheck disable=SC2016 # single-quoted bash -c scripts expand in the child, on purpose

deploy_setup_file() {
  cd "$BATS_TEST_DIRNAME/../.." || return 1
  eval "$(scripts/local-cluster start --watch-pid $$)"
  export KUBECONFIG DIFY_GITOPS_TESTBED_PID DIFY_GITOPS_TESTBED_DIR
  export HELM=$1
  # Short tag for names and a distinct cache per major (Helm 3 and 4 share the default cache layout).
  H=h$("$HELM" version --template '{{.Version}}' | sed -E 's/^v([0-9]+).*/\1/')
  export H
  export REPO=$PWD
  # Throwaway secrets, recognisable so that any leak is easy to find.
  TEST_SECRET="dsk-leakcheck-$(openssl rand -hex 16)"
  TEST_OPENAI="sk-leakcheck-$(openssl rand -hex 12)"
  export TEST_SECRET TEST_OPENAI
}

deploy_teardown_file() {
  scripts/local-cluster stop
}

# Runs ./deploy.sh from chart/, as users do, with the throwaway DIFY_SECRET_KEY.
deploy() {
  (cd "$REPO/chart" && DIFY_SECRET_KEY=$TEST_SECRET ./deploy.sh "$@")
}

# A LoadBalancer Service without an address: lb_service NAMESPACE NAME
lb_service() {
  kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null
  kubectl -n "$1" create service loadbalancer "$2" --tcp=443:8443 >/dev/null
}

# Gives a LoadBalancer Service its address, as a cloud controller would: set_lb_ip NAMESPACE NAME IP
set_lb_ip() {
  kubectl -n "$1" patch service "$2" --subresource=status --type=merge \
    -p "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"$3\"}]}}}" >/dev/null
}

# The release's user-supplied values as sorted JSON: release_values RELEASE NAMESPACE [REVISION]
release_values() {
  "$HELM" get values "$1" --namespace "$2" ${3:+--revision "$3"} -o json | jq -S .
}

namespace_exists() { [ -n "$(kubectl get namespace "$1" -o name --ignore-not-found)" ]; }

# Helm 3 lists releases in every status with --all; Helm 4 does by default and has no such flag.
helm_list_all() {
  if [ "$H" = h3 ]; then "$HELM" list --all "$@"; else "$HELM" list "$@"; fi
}

# `$HELM list` finds no release (in any status) in the namespace.
no_release_in() {
  local releases
  releases=$(helm_list_all --namespace "$1" -q)
  [ -z "$releases" ] || { echo "unexpected releases in $1: $releases"; return 1; }
}

# Fails when the last `run` output holds a secret value (the message names which one, not its value).
refute_secrets_in_output() {
  if [[ $output == *"$TEST_SECRET"* ]]; then echo "DIFY_SECRET_KEY leaked into the output"; return 1; fi
  if [[ $output == *"$TEST_OPENAI"* ]]; then echo "the OpenAI key leaked into the output"; return 1; fi
}

check_late_ip() {
  local ns=late-traefik-$H app=late-$H
  lb_service "$ns" traefik-late
  # The address arrives ~3 s after deploy.sh starts waiting. fd 3 closed so bats does not wait on it.
  (sleep 3 && set_lb_ip "$ns" traefik-late 192.0.2.21) >/dev/null 2>&1 3>&- &
  local patcher=$! start=$SECONDS
  run deploy --image-tag 1.13.3 --traefik-service traefik-late --timeout 60 --namespace "$app" --release late -- --no-hooks
  local took=$((SECONDS - start))
  wait "$patcher"
  [ "$status" -eq 0 ]
  [[ $output == *"waiting up to 60 s for the load-balancer address of Service $ns/traefik-late"* ]]
  [[ $output == *"Traefik's address: 192.0.2.21"* ]]
  ((took >= 3))
  [ "$(release_values late "$app" | jq -r .external.host)" = 192.0.2.21 ]
}

check_lb_timeout() {
  local ns=never-traefik-$H app=never-$H
  lb_service "$ns" traefik-never
  run deploy --image-tag 1.13.3 --traefik-service traefik-never --timeout 3s --namespace "$app" --release never
  # 4, the CLI's code for discover's timeout (3 is its "preflight failed").
  [ "$status" -eq 4 ]
  [[ $output == *"Service $ns/traefik-never has no load-balancer address after 3 s"* ]]
  [[ $output == *"kubectl --namespace $ns get service traefik-never -o yaml"* ]]
  # Copy-paste check: the printed command really shows the Service.
  kubectl --namespace "$ns" get service traefik-never -o yaml | grep -q 'type: LoadBalancer'
  ! namespace_exists "$app" || { echo "namespace created"; return 1; }
  no_release_in "$app"
}

check_missing_secret() {
  local app=nosecret-$H
  run env -u DIFY_SECRET_KEY bash -c 'cd "$REPO/chart" && ./deploy.sh "$@"' _ \
    --image-tag 1.13.3 --host 192.0.2.30 --namespace "$app" --release nosecret
  [ "$status" -eq 2 ]
  [[ $output == *"DIFY_SECRET_KEY is not set; nothing was installed"* ]]
  [[ $output == *"openssl rand -hex 32"* ]]
  # An empty value is no better than none.
  run env DIFY_SECRET_KEY= bash -c 'cd "$REPO/chart" && ./deploy.sh "$@"' _ \
    --image-tag 1.13.3 --host 192.0.2.30 --namespace "$app" --release nosecret
  [ "$status" -eq 2 ]
  [[ $output == *"DIFY_SECRET_KEY is not set"* ]]
  ! namespace_exists "$app" || { echo "namespace created"; return 1; }
  no_release_in "$app"
  [ -z "$(helm_list_all --all-namespaces -q --filter '^nosecret$')" ]
}

check_values_and_idempotent_rerun() {
  local app=values-$H
  set_lb_ip kon-workspace-test kommander-traefik 192.0.2.10
  local extra=$BATS_TEST_TMPDIR/extra-values.yaml
  printf 'api:\n  replicas: 1\n' >"$extra"
  # Neither --traefik-service nor --traefik-namespace: the fixture's kommander-traefik is found across namespaces.
  run deploy --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --namespace "$app" --release dify \
    -f "$extra" --set web.replicas=1 -- --no-hooks
  [ "$status" -eq 0 ]
  [[ $output == *"Service kon-workspace-test/kommander-traefik"* ]]
  [[ $output == *"creating namespace $app"* ]]
  namespace_exists "$app"
  local expected
  expected=$(jq -nS --arg secret "$TEST_SECRET" --arg openai "$TEST_OPENAI" '{
    api: {replicas: 1}, web: {replicas: 1},
    expose: {ingressClassName: "kommander-traefik", path: "/dify"},
    external: {scheme: "https", host: "192.0.2.10"},
    images: {dify: {repository: "langgenius/dify", tag: "1.13.3"}},
    storage: {storageClassName: "nutanix-volume"},
    secrets: {difySecretKey: $secret, openaiApiKey: $openai}}')
  [ "$(release_values dify "$app")" = "$expected" ] || { echo "values differ from the expected ones"; return 1; }
  # The release's objects landed in the namespace.
  [ -n "$(kubectl -n "$app" get secret -l app.kubernetes.io/instance=dify -o name)" ]

  # Same command again: a clean upgrade to revision 2 with the same values and the same objects.
  run deploy --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --namespace "$app" --release dify \
    -f "$extra" --set web.replicas=1 -- --no-hooks
  [ "$status" -eq 0 ]
  [[ $output != *"creating namespace"* ]]
  [ "$("$HELM" history dify --namespace "$app" -o json | jq -r '[.[] | "\(.revision):\(.status)"] | join(" ")')" \
    = "1:superseded 2:deployed" ]
  [ "$(release_values dify "$app" 2)" = "$expected" ] || { echo "values changed on the re-run"; return 1; }
  diff <("$HELM" get manifest dify --namespace "$app" --revision 1) \
    <("$HELM" get manifest dify --namespace "$app" --revision 2)
}

check_traefik_discovery_errors() {
  lb_service "dup-a-$H" dup-traefik
  lb_service "dup-b-$H" dup-traefik
  run deploy --image-tag 1.13.3 --traefik-service dup-traefik --namespace "dup-$H" --release dup --timeout 3
  [ "$status" -eq 1 ]
  [[ $output == *"2 Services named 'dup-traefik' found"* ]]
  [[ $output == *""dup-a-$H"/dup-traefik"* ]]
  [[ $output == *""dup-b-$H"/dup-traefik"* ]]
  [[ $output == *"--traefik-namespace"* ]]
  ! namespace_exists "dup-$H" || { echo "namespace created"; return 1; }

  run deploy --image-tag 1.13.3 --traefik-service no-such-traefik --namespace "dup-$H" --release dup --timeout 3
  [ "$status" -eq 1 ]
  [[ $output == *"no Service named 'no-such-traefik' in any namespace"* ]]
  # It lists the LoadBalancer Services it did find.
  [[ $output == *"kon-workspace-test/kommander-traefik"* ]]
  [[ $output == *""dup-a-$H"/dup-traefik"* ]]
  no_release_in "dup-$H"

  # --traefik-namespace picks one.
  set_lb_ip "dup-b-$H" dup-traefik 198.51.100.7
  run deploy --image-tag 1.13.3 --traefik-service dup-traefik --traefik-namespace "dup-b-$H" \
    --namespace "dup-$H" --release dup --timeout 10 -- --no-hooks
  [ "$status" -eq 0 ]
  [ "$(release_values dup "dup-$H" | jq -r .external.host)" = 198.51.100.7 ]
}

check_no_secret_on_screen_or_trace() {
  local app=leak-$H
  set_lb_ip kon-workspace-test kommander-traefik 192.0.2.10
  # The OpenAI key on the command line, under `bash -x`: the trace must not show it.
  run bash -c 'cd "$REPO/chart" && DIFY_SECRET_KEY=$TEST_SECRET bash -x ./deploy.sh "$@"' _ \
    --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --namespace "$app" --release leak \
    --set-string secrets.openaiApiKey="$TEST_OPENAI" --dry-run
  [ "$status" -eq 0 ]
  [[ $output == *"+ "* ]] # the trace was on
  refute_secrets_in_output
  run bash -c 'cd "$REPO/chart" && DIFY_SECRET_KEY=$TEST_SECRET bash -x ./deploy.sh "$@"' _ \
    --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --namespace "$app" --release leak -- --no-hooks
  [ "$status" -eq 0 ]
  [[ $output == *"+ "* ]]
  refute_secrets_in_output
  [ "$(release_values leak "$app" | jq -r .secrets.openaiApiKey)" = "$TEST_OPENAI" ]
  # Trace on through SHELLOPTS, and an error path (a Service that never gets an address).
  lb_service "leak-traefik-$H" traefik-leak
  run bash -c 'cd "$REPO/chart" && DIFY_SECRET_KEY=$TEST_SECRET env SHELLOPTS=xtrace ./deploy.sh "$@"' _ \
    --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --traefik-service traefik-leak --timeout 2 \
    --namespace "$app" --release leak
  [ "$status" -eq 4 ]
  [[ $output == *"+ "* ]]
  refute_secrets_in_output
}

check_no_secret_in_ps_env_or_files() {
  local app=ps-$H spy=$BATS_TEST_TMPDIR/spy
  mkdir -p "$spy"
  printf '%s\n' "$TEST_SECRET" >"$spy/needle"
  set_lb_ip kon-workspace-test kommander-traefik 192.0.2.10
  # A helm that records what others could see while it runs: every command line, its environment, the files
  # it was given (mode, directory mode, and whether they hold the secret), then runs the real helm.
  cat >"$spy/helm" <<'EOF'
#!/usr/bin/env bash
ps -eo args >>"$SPY_DIR/ps.txt"
env >>"$SPY_DIR/env.txt"
for a in "$@"; do
  if [[ -f $a ]]; then
    printf '%s %s %s\n' "$(stat -c %a "$a")" "$(stat -c %a "$(dirname "$a")")" "$a" >>"$SPY_DIR/files.txt"
    if grep -qF -f "$SPY_DIR/needle" "$a"; then echo "$a" >>"$SPY_DIR/secret-files.txt"; fi
  fi
done
exec "$REAL_HELM" "$@"
EOF
  chmod +x "$spy/helm"
  # The secrets reach deploy.sh only as DIFY_SECRET_KEY and OPENAI_API_KEY (not on its command line).
  run env -u TEST_SECRET -u TEST_OPENAI SPY_DIR="$spy" REAL_HELM="$(command -v "$HELM")" HELM="$spy/helm" \
    DIFY_SECRET_KEY="$TEST_SECRET" OPENAI_API_KEY="$TEST_OPENAI" \
    bash -c 'cd "$REPO/chart" && ./deploy.sh "$@"' _ --image-tag 1.13.3 --namespace "$app" --release ps -- --no-hooks
  [ "$status" -eq 0 ]
  refute_secrets_in_output
  [ "$(release_values ps "$app" | jq -r .secrets.openaiApiKey)" = "$TEST_OPENAI" ]
  [ -s "$spy/ps.txt" ]
  ! grep -q -e "$TEST_SECRET" -e "$TEST_OPENAI" "$spy/ps.txt" || { echo "a secret is visible in ps"; return 1; }
  ! grep -q -e "$TEST_SECRET" -e "$TEST_OPENAI" "$spy/env.txt" || { echo "a secret is in helm's environment"; return 1; }
  # No file given to helm holds a secret: they come on its stdin (--values -); the values file is in a 0700 dir.
  [ ! -e "$spy/secret-files.txt" ] || { echo "a file given to helm holds a secret: $(cat "$spy/secret-files.txt")"; return 1; }
  grep -q ' --values - ' "$spy/ps.txt"
  [ "$(grep -c '/values.yaml$' "$spy/files.txt")" -eq 1 ]
  grep -qE '^[0-7]+ 700 .*/values.yaml$' "$spy/files.txt"
}

# Every write(2)-family call of deploy.sh and its children (helm, kubectl, subshells), traced by strace with each fd
# annotated (-y): the secrets are written only into pipes (helm's stdin, command substitutions), never into a file.
check_no_secret_written_to_files() {
  # strace is one of the pinned test tools: without it the check cannot run, which is a failure, not a skip.
  command -v strace >/dev/null || { echo "strace is not installed: scripts/test-tools install, and put it on PATH"; return 1; }
  local app=strace-$H trace=$BATS_TEST_TMPDIR/deploy.strace hits=$BATS_TEST_TMPDIR/hits
  set_lb_ip kon-workspace-test kommander-traefik 192.0.2.10
  run env DIFY_SECRET_KEY="$TEST_SECRET" OPENAI_API_KEY="$TEST_OPENAI" \
    strace -f -qq -y -s 1000000 -o "$trace" \
    -e trace=openat,creat,write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg \
    bash -c 'cd "$REPO/chart" && ./deploy.sh "$@"' _ --image-tag 1.13.3 --namespace "$app" --release traced -- --no-hooks
  [ "$status" -eq 0 ]
  refute_secrets_in_output
  [ "$(release_values traced "$app" | jq -r .secrets.difySecretKey)" = "$TEST_SECRET" ]
  [ "$(release_values traced "$app" | jq -r .secrets.openaiApiKey)" = "$TEST_OPENAI" ]
  # A trace without writes means ptrace was refused (kernel.yama.ptrace_scope, CAP_SYS_PTRACE): it proves nothing.
  grep -qE '^[0-9]+ +write\(' "$trace" || { echo "strace traced no write: is ptrace refused here?"; return 1; }
  # The trace sees the secrets on their way (into helm's stdin), so their absence elsewhere means something...
  grep -F -e "$TEST_SECRET" -e "$TEST_OPENAI" "$trace" >"$hits" || true
  grep -qE '^[0-9]+ +write\([0-9]+<pipe:\[[0-9]+\]>.*'"$TEST_SECRET" "$hits" ||
    { echo "no traced write into a pipe holds DIFY_SECRET_KEY: the trace misses its way to helm"; return 1; }
  # ...and every call that carries one writes into a pipe: none into a file (or a socket, in plain text).
  if grep -vE '^[0-9]+ +(write|writev)\([0-9]+<pipe:\[[0-9]+\]>' "$hits"; then
    echo "a secret was written somewhere other than a pipe (the calls above, fd annotated with its file)"
    return 1
  fi
}

check_dry_run() {
  local app=dryrun-$H
  set_lb_ip kon-workspace-test kommander-traefik 192.0.2.10
  run deploy --image-tag 1.13.3 --openai-api-key "$TEST_OPENAI" --namespace "$app" --release dryrun \
    --set secrets.openaiApiKey="$TEST_OPENAI" --set web.replicas=1 --dry-run
  [ "$status" -eq 0 ]
  refute_secrets_in_output
  [[ $output == *"nothing was created or installed"* ]]
  [[ $output == *"kubectl create namespace $app"* ]]
  [[ $output == *"$HELM upgrade --install dryrun $REPO/chart/dify --namespace $app --values <values.yaml> --values -"* ]]
  [[ $output == *"--set secrets.openaiApiKey=<masked> --set web.replicas=1"* ]]
  [[ $output == *'host: "192.0.2.10"'* ]]
  [[ $output == *'difySecretKey: "<masked>"'* ]]
  [[ $output == *'openaiApiKey: "<masked>"'* ]]
  ! namespace_exists "$app" || { echo "namespace created"; return 1; }
  no_release_in "$app"
}
