#!/usr/bin/env bash
# Direct install of chart/dify on NKP, without GitOps. Run `./deploy.sh --help` for the options.
#
# Secrets (DIFY_SECRET_KEY, the OpenAI key) reach Helm only as values YAML on its stdin (`--values -`, through a
# pipe): never in a file, on a child's command line, in the environment of kubectl or helm, in a shell trace (xtrace
# is off wherever they are handled, even under `bash -x`) or on screen.
#
# Everything runs in main (last line). Only the trace switch stays at the top: it must be off before `main "$@"` is
# traced, since the arguments may carry the OpenAI key.

if [[ $- == *x* ]]; then trace=1; else trace=0; fi
{ set +x; } 2>/dev/null
set -euo pipefail

usage() {
  cat <<EOF
Usage: export DIFY_SECRET_KEY=\$(openssl rand -hex 32)
       ./deploy.sh --image-tag TAG [--openai-api-key KEY] [options] [--set K=V | -f FILE]... [-- HELM-ARGS...]

Installs or upgrades Dify (chart ./dify next to this script) with \`helm upgrade --install\`. It finds Kommander's
Traefik Service, waits for its load-balancer address (.status.loadBalancer.ingress[0].ip, else .hostname) and
serves Dify at <scheme>://<that address><path>. Re-running with the same inputs is a no-op upgrade.

Environment:
  DIFY_SECRET_KEY          required: Dify's SECRET_KEY. Generate it once and keep it: it must never change.
                           deploy.sh never generates it.
  OPENAI_API_KEY           OpenAI key, used when --openai-api-key is not given (keeps it off the command line).
  HELM, KUBECTL            the helm (3.8+ or 4) and kubectl binaries (default: helm, kubectl).

Options (defaults are NKP's):
  --image-tag TAG          Dify image tag, e.g. 1.13.3 (required)
  --image-repo REPO        Dify image prefix: <REPO>-api, <REPO>-web     [langgenius/dify]
  --openai-api-key KEY     OpenAI key, kept in the release Secret (prefer OPENAI_API_KEY: a command line is
                           visible to other users in ps). Leaving it out on an upgrade removes the key.
  --ingress-class NAME     IngressClass                                   [kommander-traefik]
  --path PATH              public path                                    [/dify]
  --scheme http|https      public scheme                                  [https]
  --storage-class NAME     StorageClass of every volume                   [nutanix-volume]
  --namespace NS           release namespace, created when missing        [dify]
  --release NAME           Helm release name                              [dify]
  --traefik-service NAME   Traefik's LoadBalancer Service                 [kommander-traefik]
  --traefik-namespace NS   its namespace            [found: the one namespace holding a Service of that name]
  --host HOST              public host (DNS name or IP) to use instead of waiting for Traefik's address
  --timeout DURATION       how long to wait for the address: 300, 90s, 5m [300s]
  --helm-timeout DURATION  helm --timeout (covers the migration hook Job) [15m]
  --wait                   also pass --wait to helm (wait until every pod is ready)
  --kube-context NAME      kubeconfig context for kubectl and helm        [current context]
  --chart PATH             chart to install                               [$here/dify]
  --dry-run                print the commands (secrets masked); create and install nothing
  -h, --help               this help
Passed through to helm, after deploy.sh's own values (so they override them):
  --set, --set-string, --set-json, --set-file, --set-literal K=V;  -f, --values FILE (a file: not -, helm's stdin
  carries deploy.sh's secrets);  -- ARG... (anything)

Web image (Next.js fixes the base path at build time): at --path / Dify's stock <REPO>-web, at /dify the project's
ghcr.io/dify-gitops/dify-web:<tag> built for /dify. Any other path needs your own build (the web-image workflow,
NEXT_PUBLIC_BASE_PATH=<path>): --set images.web.repository=REPO --set images.web.tag=TAG. deploy.sh names the web
image before installing and warns that your own image under a path must be built for that path.

Exit codes (those of the dify-gitops CLI; deploy.sh uses no others):
  0  installed or upgraded (or, with --dry-run, printed)
  1  error: cluster, Traefik Service not found or ambiguous, helm failed
  2  usage: bad or missing option, DIFY_SECRET_KEY not set
  4  timeout: Traefik's Service got no load-balancer address within --timeout (the CLI's discover timeout)
  130, 143  interrupted (SIGINT, SIGTERM)
EOF
}

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
usage_error() { printf '%s: error: %s (see --help)\n' "$prog" "$*" >&2; exit 2; }

# Duration (300, 300s, 5m, 1h) -> seconds.
to_seconds() {
  local d=$1
  case $d in
    *[!0-9smh]* | '' | [smh]*) return 1 ;;
    *h) [[ ${d%h} =~ ^[0-9]+$ ]] && echo $((10#${d%h} * 3600)) ;;
    *m) [[ ${d%m} =~ ^[0-9]+$ ]] && echo $((10#${d%m} * 60)) ;;
    *s) [[ ${d%s} =~ ^[0-9]+$ ]] && echo $((10#${d%s})) ;;
    *) [[ $d =~ ^[0-9]+$ ]] && echo $((10#$d)) ;;
  esac
}

# A YAML double-quoted scalar (JSON string syntax); control characters are rejected before this is called.
yaml_str() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

has_control_chars() { [[ $1 == *[[:cntrl:]]* ]]; }

# --- arguments (trace is off here) -------------------------------------------------------------------------------
need_value() { (($2 >= 2)) || usage_error "$1 needs a value"; }

# Sets the option globals from the arguments; the rest of the script reads them.
parse_args() {
  image_tag='' image_repo=langgenius/dify openai_key='' openai_given=0
  ingress_class=kommander-traefik path=/dify scheme=https storage_class=nutanix-volume
  namespace=dify release=dify traefik_service=kommander-traefik traefik_namespace='' host=''
  timeout=300s helm_timeout=15m helm_wait=0 kube_context='' chart="$here/dify" dry_run=0
  extra=()
  local opt val
  while (($#)); do
    opt=$1
    case $opt in
      --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
    esac
    case $opt in
      -h | --help) usage; exit 0 ;;
      --dry-run) dry_run=1; shift ;;
      --wait) helm_wait=1; shift ;;
      --) shift; extra+=("$@"); break ;;
      --image-tag | --image-repo | --openai-api-key | --ingress-class | --path | --scheme | --storage-class | \
        --namespace | --release | --traefik-service | --traefik-namespace | --host | --timeout | --helm-timeout | \
        --kube-context | --chart | --set | --set-string | --set-json | --set-file | --set-literal | -f | --values)
        need_value "$opt" $#
        val=$2
        shift 2
        case $opt in
          --image-tag) image_tag=$val ;;
          --image-repo) image_repo=$val ;;
          --openai-api-key) openai_key=$val openai_given=1 ;;
          --ingress-class) ingress_class=$val ;;
          --path) path=$val ;;
          --scheme) scheme=$val ;;
          --storage-class) storage_class=$val ;;
          --namespace) namespace=$val ;;
          --release) release=$val ;;
          --traefik-service) traefik_service=$val ;;
          --traefik-namespace) traefik_namespace=$val ;;
          --host) host=$val ;;
          --timeout) timeout=$val ;;
          --helm-timeout) helm_timeout=$val ;;
          --kube-context) kube_context=$val ;;
          --chart) chart=$val ;;
          *) extra+=("$opt" "$val") ;;
        esac
        ;;
      *) usage_error "unknown option '$opt'" ;;
    esac
  done
}

# Usage errors in the option values (exit 2) before anything runs.
check_args() {
  local pair
  [[ -n $image_tag ]] || usage_error "--image-tag is required (the Dify release, e.g. 1.13.3)"
  [[ $scheme == http || $scheme == https ]] || usage_error "--scheme must be http or https, not '$scheme'"
  [[ $path == /* ]] || usage_error "--path must start with '/', e.g. /dify or /"
  [[ $path == / || $path != */ ]] || usage_error "--path must have no trailing slash, e.g. /dify"
  timeout_s=$(to_seconds "$timeout") || usage_error "--timeout '$timeout' is not a duration (300, 90s, 5m)"
  helm_timeout_s=$(to_seconds "$helm_timeout") || usage_error "--helm-timeout '$helm_timeout' is not a duration (600, 15m)"
  for pair in "--image-tag=$image_tag" "--image-repo=$image_repo" "--ingress-class=$ingress_class" "--path=$path" \
    "--storage-class=$storage_class" "--namespace=$namespace" "--release=$release" "--host=$host" \
    "--traefik-service=$traefik_service" "--traefik-namespace=$traefik_namespace"; do
    ! has_control_chars "$pair" || usage_error "${pair%%=*} contains a control character"
    [[ ${pair#*=} != *[[:space:]]* ]] || usage_error "${pair%%=*} contains whitespace"
  done
  [[ -d $chart || $chart == oci://* ]] || usage_error "--chart '$chart' is not a directory"
  # helm reads deploy.sh's secrets from its stdin (--values -): a user's `--values -` would get nothing.
  local i
  for ((i = 0; i < ${#extra[@]}; i++)); do
    if [[ ${extra[i]} == --values=- || ((${extra[i]} == -f || ${extra[i]} == --values) && ${extra[i + 1]:-} == -) ]]; then
      usage_error "'${extra[i]}': helm's stdin carries deploy.sh's secrets; pass those values as a file"
    fi
  done
}

# --- the web image for the path (trace is still off: the --set values may hold secrets) ---------------------------
# Next.js fixes the base path at build time. The chart's default web image per path, when images.web.repository is
# empty: "/" Dify's stock <repo>-web, /dify the project's build for /dify (choose_web_image); any other path needs
# the user's own.

# images.web.repository of a values file, block or flow style ("" when it sets none).
web_repo_in_file() {
  awk '
    function indent(s) { match(s, /^ */); return RLENGTH }
    function clean(v) {
      sub(/^[^:]*:[[:space:]]*/, "", v); sub(/[[:space:]]+#.*$/, "", v); sub(/[,}].*$/, "", v)
      gsub(/^[[:space:]"\047]+|[[:space:]"\047]+$/, "", v); return v
    }
    /^[[:space:]]*(#.*)?$/ { next }
    { i = indent($0); line = substr($0, i + 1) }
    i == 0 {
      images = (line ~ /^images:[[:space:]]*(#.*)?$/); web = 0
      if (match(line, /^images:.*web:[[:space:]]*\{[^}]*repository:[^,}]*/)) {
        v = substr(line, RSTART, RLENGTH); sub(/^.*repository:/, "repository:", v); repo = clean(v)
      }
      next
    }
    images && !web && line ~ /^web:/ {
      if (match(line, /repository:[^,}]*/)) { repo = clean(substr(line, RSTART, RLENGTH)) } else { web = 1; web_indent = i }
      next
    }
    web && i <= web_indent { web = 0 }
    web && line ~ /^repository:/ { repo = clean(line) }
    END { print repo }
  ' "$1"
}

# The web image the user names (helm takes the last one given): --set family pairs and -f files.
# Sets web_info or web_warning: which web image serves the path. A path no published image serves is a usage error.
choose_web_image() {
  local i opt val pairs pair user_web_repo
  local project_web=ghcr.io/dify-gitops/dify-web project_web_path=/dify
  user_web_repo=''
  for ((i = 0; i < ${#extra[@]}; i++)); do
    opt=${extra[i]} val=''
    case $opt in
      --set=* | --set-string=* | --set-literal=* | --set-json=* | -f=* | --values=*) val=${opt#*=} opt=${opt%%=*} ;;
      --set | --set-string | --set-literal | --set-json | -f | --values) val=${extra[i + 1]:-} i=$((i + 1)) ;;
      *) continue ;;
    esac
    case $opt in
      -f | --values) [[ ! -f $val ]] || user_web_repo=$(web_repo_in_file "$val") ;;
      *)
        IFS=, read -ra pairs <<<"$val"
        for pair in "${pairs[@]}"; do
          if [[ ${pair%%=*} == images.web.repository ]]; then
            user_web_repo=${pair#*=} user_web_repo=${user_web_repo//\"/}
          fi
        done
        ;;
    esac
  done
  web_warning='' web_info=''
  if [[ -n $user_web_repo ]]; then
    if [[ $path == / ]]; then
      web_info="web image: $user_web_repo (yours, images.web.repository) serves /"
    else
      web_warning="web image: $user_web_repo (yours, images.web.repository) serves $path: it must be Dify's web \
${image_tag#v} built with NEXT_PUBLIC_BASE_PATH=$path (the web-image workflow), or pages under $path do not load"
    fi
  elif [[ $path == / ]]; then
    web_info="web image: $image_repo-web:$image_tag serves / (Dify's stock web image)"
  elif [[ $path == "$project_web_path" ]]; then
    web_info="web image: $project_web:${image_tag#v} serves $path (Dify's web built for $path by the dify-gitops \
project; the stock image serves / only)"
  else
    usage_error "--path $path needs a web image built for it and none is published (Dify's stock web image serves /, \
$project_web serves $project_web_path). Build one with the web-image workflow (NEXT_PUBLIC_BASE_PATH=$path), then pass \
--set images.web.repository=REPO --set images.web.tag=TAG; or use --path $project_web_path"
  fi
}

# --- secrets: checked, kept in memory and dropped from the environment, all with trace off -------------------------
# Sets secrets_yaml (the secrets as values YAML, for helm's stdin: never written to a file) and secrets_masked.
read_secrets() {
  if [[ -z ${DIFY_SECRET_KEY:-} ]]; then
    # shellcheck disable=SC2016 # the $(...) is the command the user should run, printed verbatim
    printf '%s: error: DIFY_SECRET_KEY is not set; nothing was installed. Generate it once and keep it (it must never\n  change between runs):  export DIFY_SECRET_KEY=$(openssl rand -hex 32)\n' "$prog" >&2
    exit 2
  fi
  if ((!openai_given)) && [[ -n ${OPENAI_API_KEY:-} ]]; then openai_key=$OPENAI_API_KEY; fi
  has_control_chars "$DIFY_SECRET_KEY" && usage_error "DIFY_SECRET_KEY contains a control character (a newline?)"
  has_control_chars "$openai_key" && usage_error "the OpenAI key contains a control character (a newline?)"
  secrets_yaml=$(
    printf 'secrets:\n  difySecretKey: %s\n' "$(yaml_str "$DIFY_SECRET_KEY")"
    if [[ -n $openai_key ]]; then printf '  openaiApiKey: %s\n' "$(yaml_str "$openai_key")"; fi
  )
  secrets_masked="secrets:
  difySecretKey: \"<masked>\""
  [[ -z $openai_key ]] || secrets_masked+="
  openaiApiKey: \"<masked>\""
  unset DIFY_SECRET_KEY OPENAI_API_KEY openai_key
}

# A private temp dir for the (secret-free) values file and kubectl's errors, removed on exit.
make_tmp() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/dify-deploy.XXXXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  chmod 700 "$tmp"
  values_file=$tmp/values.yaml
}
cleanup() { rm -rf "$tmp"; }

# masked_extra: the user's helm arguments, with values passed with --set that look like secrets masked, for printing.
mask_extra() {
  local arg key mask_next
  masked_extra=()
  mask_next=0
  for arg in "${extra[@]}"; do
    key=${arg%%=*}
    if ((mask_next)) && [[ $arg == *=* && ${key,,} =~ secret|password|token|key ]]; then
      arg="${arg%%=*}=<masked>"
    fi
    mask_next=0
    case $arg in --set | --set-string | --set-json | --set-literal) mask_next=1 ;; esac
    masked_extra+=("$arg")
  done
}

# --- tools ---------------------------------------------------------------------------------------------------------
# helm_bin, kubectl (an array, with the context): present, and Helm 3.8+ or 4.
find_tools() {
  local helm_version major minor
  helm_bin=${HELM:-helm}
  kubectl=("${KUBECTL:-kubectl}")
  [[ -z $kube_context ]] || kubectl+=(--context "$kube_context")
  command -v "$helm_bin" >/dev/null || die "helm not found (HELM=$helm_bin); install Helm 3.8+ or 4"
  command -v "${kubectl[0]}" >/dev/null || die "kubectl not found (KUBECTL=${kubectl[0]})"
  helm_version=$("$helm_bin" version --template '{{.Version}}' 2>/dev/null) || die "'$helm_bin version' failed"
  if [[ $helm_version =~ ^v([0-9]+)\.([0-9]+) ]]; then
    major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
    ((major > 3 || (major == 3 && minor >= 8))) || die "Helm $helm_version is too old: deploy.sh needs Helm 3.8+ or 4"
  else
    die "cannot read the Helm version from '$helm_version'"
  fi
}

# Shell-quoted command line, for messages; <placeholders> stay as they are.
quoted() {
  local out='' a
  for a in "$@"; do
    if [[ $a =~ ^([A-Za-z0-9._-]+=)?\<[A-Za-z0-9._/-]+\>$ ]]; then out+="$a "; else out+="$(printf '%q' "$a") "; fi
  done
  printf '%s' "${out% }"
}

# --- Traefik's Service and its address -----------------------------------------------------------------------------
find_traefik_namespace() {
  local found err
  err=$tmp/kubectl.err
  if ! found=$("${kubectl[@]}" get services --all-namespaces --field-selector "metadata.name=$traefik_service" \
    -o jsonpath='{range .items[*]}{.metadata.namespace}{"\n"}{end}' 2>"$err"); then
    die "cannot list Services across namespaces to find '$traefik_service': $(cat "$err")
  Pass its namespace with --traefik-namespace (on NKP: the workspace namespace, 'kommander' on the management cluster)"
  fi
  local -a namespaces=()
  mapfile -t namespaces < <(printf '%s' "$found" | sed '/^$/d')
  case ${#namespaces[@]} in
    1) traefik_namespace=${namespaces[0]} ;;
    0)
      local lbs
      lbs=$("${kubectl[@]}" get services --all-namespaces \
        -o jsonpath='{range .items[?(@.spec.type=="LoadBalancer")]}  {.metadata.namespace}/{.metadata.name}{"\n"}{end}' \
        2>/dev/null || true)
      die "no Service named '$traefik_service' in any namespace. LoadBalancer Services found:
${lbs:-  (none)}
  Pass the right one with --traefik-service NAME [--traefik-namespace NS], or the public host with --host"
      ;;
    *)
      die "${#namespaces[@]} Services named '$traefik_service' found:
$(printf '  %s/'"$traefik_service"'\n' "${namespaces[@]}")
  Choose one with --traefik-namespace NS"
      ;;
  esac
}

wait_for_address() {
  local ref="$traefik_namespace/$traefik_service" inspect type out err=$tmp/kubectl.err
  inspect="$(quoted "${kubectl[@]}" --namespace "$traefik_namespace" get service "$traefik_service" -o yaml)"
  type=$("${kubectl[@]}" --namespace "$traefik_namespace" get service "$traefik_service" \
    -o jsonpath='{.spec.type}' 2>"$err") || die "cannot read Service $ref: $(cat "$err")"
  [[ $type == LoadBalancer ]] ||
    die "Service $ref is of type $type, not LoadBalancer: it gets no load-balancer address. Pass the public host with --host"
  local start=$SECONDS elapsed=0 last_report=0 ip hostname
  say "waiting up to ${timeout_s} s for the load-balancer address of Service $ref"
  while :; do
    out=$("${kubectl[@]}" --namespace "$traefik_namespace" get service "$traefik_service" \
      -o jsonpath='{.status.loadBalancer.ingress[0].ip}{" "}{.status.loadBalancer.ingress[0].hostname}' 2>"$err") ||
      say "reading Service $ref failed (retrying): $(cat "$err")"
    ip=${out%% *} hostname=${out#* }
    if [[ -n $ip ]]; then host=$ip; break; fi
    if [[ -n $hostname ]]; then host=$hostname; break; fi
    elapsed=$((SECONDS - start))
    if ((elapsed >= timeout_s)); then
      # The timeout asked for, not the seconds counted: a slow kubectl call must not change the message.
      printf '%s: error: Service %s has no load-balancer address after %d s (.status.loadBalancer.ingress is empty).\n  Inspect it with:\n    %s\n  Then re-run with a larger --timeout, or pass the public host with --host\n' \
        "$prog" "$ref" "$timeout_s" "$inspect" >&2
      exit 4
    fi
    if ((elapsed - last_report >= 10)); then
      say "  still no address after ${elapsed} s"
      last_report=$elapsed
    fi
    sleep $((timeout_s - elapsed < 2 ? timeout_s - elapsed : 2))
  done
  say "Traefik's address: $host (after $((SECONDS - start)) s)"
}

# Sets host (unless --host gave it): Traefik's address, waited for; a dry run reads it once (address_note says
# when it has none yet).
resolve_host() {
  address_note=''
  [[ -z $host ]] || return 0
  [[ -n $traefik_namespace ]] || find_traefik_namespace
  if ((dry_run)); then
    # Read the address once; a dry run never waits.
    host=$("${kubectl[@]}" --namespace "$traefik_namespace" get service "$traefik_service" \
      -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)
    [[ -n $host ]] || host=$("${kubectl[@]}" --namespace "$traefik_namespace" get service "$traefik_service" \
      -o jsonpath='{.status.loadBalancer.ingress[0].hostname}' 2>/dev/null || true)
    if [[ -z $host ]]; then
      host="<address of $traefik_namespace/$traefik_service>"
      address_note=" (Service $traefik_namespace/$traefik_service has no address yet: a real run waits for it)"
    fi
  else
    wait_for_address
  fi
}

# --- values and the helm command ----------------------------------------------------------------------------------
# deploy.sh's values but the secrets, in values_file; helm_args, the helm command without the user's arguments.
write_values() {
  cat >"$values_file" <<EOF
# Written by deploy.sh; the secrets go to helm on its stdin (--values -).
expose:
  ingressClassName: $(yaml_str "$ingress_class")
  path: $(yaml_str "$path")
external:
  scheme: $(yaml_str "$scheme")
  host: $(yaml_str "$host")
images:
  dify:
    repository: $(yaml_str "$image_repo")
    tag: $(yaml_str "$image_tag")
storage:
  storageClassName: $(yaml_str "$storage_class")
EOF
  helm_args=(upgrade --install "$release" "$chart" --namespace "$namespace"
    --values "$values_file" --values - --timeout "${helm_timeout_s}s")
  ((!helm_wait)) || helm_args+=(--wait)
  [[ -z $kube_context ]] || helm_args+=(--kube-context "$kube_context")
}

print_dry_run() {
  local helm_shown=("${helm_args[@]/#"$values_file"/<values.yaml>}")
  printf '# deploy.sh --dry-run: nothing was created or installed%s. A real run would run:\n' "$address_note"
  if [[ -z $("${kubectl[@]}" get namespace "$namespace" -o name --ignore-not-found 2>/dev/null) ]]; then
    printf '%s\n' "$(quoted "${kubectl[@]}" create namespace "$namespace")"
  fi
  printf '%s' "$(quoted "$helm_bin" "${helm_shown[@]}")"
  ((${#masked_extra[@]} == 0)) || printf ' %s' "$(quoted "${masked_extra[@]}")"
  printf '\n# <values.yaml>:\n'
  sed -n '2,$p' "$values_file"
  printf '# helm'\''s stdin (--values -; never written to a file; values masked here):\n%s\n' "$secrets_masked"
}

install_release() {
  local ns_err=$tmp/kubectl.err existing rc=0
  if ! existing=$("${kubectl[@]}" get namespace "$namespace" -o name --ignore-not-found 2>"$ns_err"); then
    die "cannot read namespace '$namespace': $(cat "$ns_err")"
  fi
  if [[ -z $existing ]]; then
    say "creating namespace $namespace"
    "${kubectl[@]}" create namespace "$namespace" >/dev/null 2>"$ns_err" ||
      grep -q AlreadyExists "$ns_err" || die "cannot create namespace '$namespace': $(cat "$ns_err")"
  fi

  say "running: $(quoted "$helm_bin" "${helm_args[@]}" "${masked_extra[@]}")"
  # The secrets go through a pipe to helm's stdin, with trace off in the writer: never a file, argument or trace line.
  "$helm_bin" "${helm_args[@]}" "${extra[@]}" < <({ set +x; } 2>/dev/null; printf '%s\n' "$secrets_yaml") || rc=$?
  ((rc == 0)) || die "helm upgrade --install failed (exit $rc); inspect the release with: $(quoted "$helm_bin" status "$release" --namespace "$namespace")"
  say "release $release in namespace $namespace is deployed: $scheme://$host${path%/}/"
}

main() {
  prog=deploy.sh
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  # Trace (if asked for) stays off while the arguments and the secrets are handled.
  parse_args "$@"
  check_args
  choose_web_image
  read_secrets
  make_tmp
  mask_extra
  if ((trace)); then set -x; fi

  find_tools
  resolve_host
  write_values
  # Before installing: which web image serves the path.
  [[ -z $web_info ]] || say "$web_info"
  [[ -z $web_warning ]] || printf '%s: warning: %s\n' "$prog" "$web_warning" >&2
  if ((dry_run)); then
    print_dry_run
    exit 0
  fi
  install_release
}

main "$@"
