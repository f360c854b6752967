#!/usr/bin/env bats
# chart/deploy.sh says which web image serves the path before installing (Next.js fixes the base path at build
# time): the project's /dify build, Dify's stock image at /, a warning for the user's own image under a path, and an
# early usage error for a path no published image serves. No cluster: kubectl and helm are stubs that log their calls.
#
# shellcheck disable=SC2154 # status, output and stderr are set by bats' run
# shellcheck disable=SC2016 # the stubs are written with single-quoted scripts that expand when they run

bats_require_minimum_version 1.5.0

setup() {
  cd "$BATS_TEST_DIRNAME/../.." || return 1
  bin=$BATS_TEST_TMPDIR/bin
  mkdir -p "$bin"
  export CALLS=$BATS_TEST_TMPDIR/calls
  # kubectl: the namespace exists. helm: a version, then every other call logged and successful.
  printf '#!/bin/sh\necho "kubectl $*" >>"$CALLS"\ncase "$*" in *"get namespace"*) echo namespace/dify ;; esac\n' >"$bin/kubectl"
  printf '#!/bin/sh\nif [ "$1" = version ]; then echo v4.0.0; exit 0; fi\necho "helm $*" >>"$CALLS"\n' >"$bin/helm"
  chmod +x "$bin/kubectl" "$bin/helm"
}

# deploy.sh against the stubs, at a given host (no Traefik lookup); stderr separate from stdout.
deploy() {
  run --separate-stderr env DIFY_SECRET_KEY=x HELM="$bin/helm" KUBECTL="$bin/kubectl" \
    chart/deploy.sh --image-tag 1.13.3 --host 192.0.2.10 "$@"
}

@test "default /dify: an info line names the project's /dify web image, before helm runs" {
  deploy
  [ "$status" -eq 0 ]
  [[ $stderr == *"deploy.sh: web image: ghcr.io/dify-gitops/dify-web:1.13.3 serves /dify (Dify's web built for /dify by the dify-gitops project"* ]]
  [[ $stderr != *warning* ]]
  # Said before installing: the line comes before "running: helm upgrade".
  [[ ${stderr%%running:*} == *"web image: ghcr.io/dify-gitops/dify-web:1.13.3"* ]]
  grep -q '^helm upgrade --install dify' "$CALLS"
}

@test "the /dify image is tagged with the Dify version, without a leading v" {
  deploy --image-tag v1.14.2 --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"web image: ghcr.io/dify-gitops/dify-web:1.14.2 serves /dify"* ]]
}

@test "root path: an info line names Dify's stock web image from --image-repo" {
  deploy --path / --image-repo mirror.example.com/langgenius/dify --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"web image: mirror.example.com/langgenius/dify-web:1.13.3 serves / (Dify's stock web image)"* ]]
  [[ $stderr != *warning* ]]
}

@test "own web image under a path, with --set: a warning that it must be built with NEXT_PUBLIC_BASE_PATH" {
  deploy --set images.web.repository=registry.example.com/team/dify-web,images.web.tag=1.13.3 --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"deploy.sh: warning: web image: registry.example.com/team/dify-web (yours, images.web.repository) serves /dify: it must be Dify's web 1.13.3 built with NEXT_PUBLIC_BASE_PATH=/dify"* ]]
  [[ $stderr != *ghcr.io/dify-gitops* ]]
}

@test "own web image under another path, from a values file (block or flow style): a warning, no error" {
  local f=$BATS_TEST_TMPDIR/web.yaml
  printf 'images:\n  web:\n    repository: "registry.example.com:5000/team/dify-web-ai"  # built for /ai\n    tag: "1.13.3"\n' >"$f"
  deploy --path /ai -f "$f" --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"warning: web image: registry.example.com:5000/team/dify-web-ai (yours, images.web.repository) serves /ai: it must be Dify's web 1.13.3 built with NEXT_PUBLIC_BASE_PATH=/ai"* ]]
  printf 'images: {web: {repository: registry.example.com/flow, tag: "1"}}\n' >"$f"
  deploy --path /ai -- --values "$f" --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"warning: web image: registry.example.com/flow (yours"* ]]
}

@test "own web image at the root path: an info line, no warning" {
  deploy --path / --set-string images.web.repository=registry.example.com/team/dify-web --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"web image: registry.example.com/team/dify-web (yours, images.web.repository) serves /"* ]]
  [[ $stderr != *warning* ]]
}

@test "a values file that sets no web repository leaves the default" {
  local f=$BATS_TEST_TMPDIR/other.yaml
  printf 'images:\n  web:\n    tag: "1.13.3"\nweb:\n  repository: not-an-image-key\n' >"$f"
  deploy -f "$f" --dry-run
  [ "$status" -eq 0 ]
  [[ $stderr == *"web image: ghcr.io/dify-gitops/dify-web:1.13.3 serves /dify"* ]]
}

@test "another path without a web image: exit 2 before anything runs, naming the values and the fix" {
  deploy --path /ai
  [ "$status" -eq 2 ]
  [[ $stderr == *"--path /ai needs a web image built for it"* ]]
  [[ $stderr == *"web-image workflow (NEXT_PUBLIC_BASE_PATH=/ai)"* ]]
  [[ $stderr == *"--set images.web.repository=REPO --set images.web.tag=TAG"* ]]
  [ ! -e "$CALLS" ] || ! grep -q . "$CALLS"
}

@test "a path with a trailing slash is a usage error, not a missing web image" {
  deploy --path /dify/
  [ "$status" -eq 2 ]
  [[ $stderr == *"--path must have no trailing slash, e.g. /dify"* ]]
}
