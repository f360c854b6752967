#!/usr/bin/env bats
# The packaged chart (issue 8): `helm package chart/dify` gives a versioned archive without CI scenarios, tests or
# scripts, whose Chart.yaml carries kubeVersion (NKP 2.12's Kubernetes 1.29 and newer), appVersion, maintainers and
# sources; the ARCHIVE (not the folder) installs into the real local kube-apiserver with Helm 4 and Helm 3.
#
# No pod runs in the testbed, so installs pass --no-hooks (the migration Job is a post-install hook that would never
# complete). Namespaces are never deleted (no namespace controller); each install uses its own.
#
# shellcheck disable=SC2154 # status and output are set by bats' run

setup_file() {
  cd "$BATS_TEST_DIRNAME/../.." || return 1
  eval "$(scripts/local-cluster start --watch-pid $$)"
  export KUBECONFIG DIFY_GITOPS_TESTBED_PID DIFY_GITOPS_TESTBED_DIR
  REPO=$PWD
  PKG=$BATS_FILE_TMPDIR/pkg
  mkdir -p "$PKG"
  CHART_VERSION=$(sed -n 's/^version: *//p' chart/dify/Chart.yaml | tr -d '"')
  APP_VERSION=$(sed -n 's/^appVersion: *//p' chart/dify/Chart.yaml | tr -d '"')
  # Packaged once, as the release workflow does, with Helm 4.
  helm package chart/dify --destination "$PKG" >/dev/null
  ARCHIVE=$PKG/dify-$CHART_VERSION.tgz
  export REPO PKG CHART_VERSION APP_VERSION ARCHIVE
}

teardown_file() {
  scripts/local-cluster stop
}

# Installs the archive with HELM into its own namespace: install_archive HELM NAMESPACE
install_archive() {
  "$1" install dify "$ARCHIVE" --namespace "$2" --create-namespace --no-hooks \
    --set expose.ingressClassName=kommander-traefik --set expose.path=/dify \
    --set external.scheme=https --set external.host=192.0.2.10 \
    --set images.dify.repository=langgenius/dify --set images.dify.tag=1.13.3 \
    --set storage.storageClassName=nutanix-volume \
    --set secrets.difySecretKey="pkg-test-$(openssl rand -hex 8)"
}

# The installed release comes from the archive: chart name-version and app version, and its objects are stored.
check_installed() {
  local helm=$1 ns=$2 listed
  listed=$("$helm" list --namespace "$ns" -o json | jq -r '.[] | "\(.name) \(.chart) \(.app_version) \(.status)"')
  [ "$listed" = "dify dify-$CHART_VERSION $APP_VERSION deployed" ] || { echo "helm list: $listed"; return 1; }
  [ -n "$(kubectl -n "$ns" get deployment -l app.kubernetes.io/instance=dify -o name)" ]
  [ -n "$(kubectl -n "$ns" get ingress -l app.kubernetes.io/instance=dify -o name)" ]
  [ -n "$(kubectl -n "$ns" get statefulset -l app.kubernetes.io/instance=dify -o name)" ]
  # The objects' chart label names the packaged version.
  kubectl -n "$ns" get deployment -l app.kubernetes.io/instance=dify -o json |
    jq -e --arg chart "dify-$CHART_VERSION" '[.items[].metadata.labels["helm.sh/chart"]] | all(. == $chart)' >/dev/null
}

@test "helm package gives dify-<version>.tgz named after Chart.yaml's version" {
  [ -f "$ARCHIVE" ]
  [[ $CHART_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]
  # The release workflow stamps the tag's version; the archive is named after it.
  run helm package chart/dify --destination "$BATS_TEST_TMPDIR" --version 9.8.7 --app-version "$APP_VERSION"
  [ "$status" -eq 0 ]
  [ -f "$BATS_TEST_TMPDIR/dify-9.8.7.tgz" ]
  [ "$(tar -xOzf "$BATS_TEST_TMPDIR/dify-9.8.7.tgz" dify/Chart.yaml | sed -n 's/^version: *//p')" = 9.8.7 ]
}

@test "the archive holds the chart and its subcharts, and no CI scenarios, tests, scripts or doc sources" {
  run tar -tzf "$ARCHIVE"
  [ "$status" -eq 0 ]
  local entry
  for entry in dify/Chart.yaml dify/values.yaml dify/values.schema.json dify/README.md dify/templates/NOTES.txt \
    dify/templates/_names.tpl dify/files/bootstrap.py dify/charts/postgresql/Chart.yaml dify/charts/redis/Chart.yaml \
    dify/charts/weaviate/Chart.yaml; do
    grep -qxF "$entry" <<<"$output" || { echo "missing from the archive: $entry"; return 1; }
  done
  # Every template of the folder is in the archive.
  local template
  for template in chart/dify/templates/*; do
    grep -qxF "dify/templates/${template##*/}" <<<"$output" || { echo "template missing: $template"; return 1; }
  done
  ! grep -E '(^|/)(ci|tests?|schema)/|\.(sh|bash|bats|swp|bak|orig|gotmpl)$|(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$|(^|/)\.git/|/\.schema\.yaml$' <<<"$output" ||
    { echo "kept out by .helmignore, yet in the archive (above)"; return 1; }
  # The folder does have CI scenarios: the ignore rule, not their absence, keeps them out.
  compgen -G 'chart/dify/ci/*.yaml' >/dev/null
}

@test "Chart.yaml in the archive: kubeVersion admits NKP 2.12's Kubernetes 1.29 and newer, appVersion, maintainers, sources" {
  run helm show chart "$ARCHIVE"
  [ "$status" -eq 0 ]
  local chart=$output
  [[ $chart == *"appVersion: $APP_VERSION"* ]]
  [[ $chart == *"maintainers:"* ]]
  [[ $chart == *"sources:"* ]]
  [[ $chart == *"https://github.com/dify-gitops/dify-gitops"* ]]
  [[ $chart == *"https://github.com/langgenius/dify"* ]]
  local values=(--set expose.ingressClassName=kommander-traefik --set expose.path=/dify --set external.scheme=https
    --set external.host=192.0.2.10 --set images.dify.repository=langgenius/dify --set images.dify.tag=1.13.3
    --set storage.storageClassName=nutanix-volume --set secrets.difySecretKey=x)
  # NKP 2.12 (1.29, with a vendor suffix as d2iq builds it), later NKP releases, and today's Kubernetes.
  local version
  for version in 1.29.0 1.29.9-d2iq.1 1.31.4 1.33.1 1.36.3; do
    run helm template dify "$ARCHIVE" --kube-version "$version" "${values[@]}"
    [ "$status" -eq 0 ] || { echo "kube $version refused: $output" | head -5; return 1; }
  done
  # Older than preflight supports: refused by kubeVersion.
  run helm template dify "$ARCHIVE" --kube-version 1.27.16 "${values[@]}"
  [ "$status" -ne 0 ]
  [[ $output == *"incompatible with Kubernetes"* ]]
}

@test "helm4: the packaged archive installs into the local kube-apiserver" {
  run install_archive helm pkg-h4
  [ "$status" -eq 0 ] || { echo "$output"; return 1; }
  check_installed helm pkg-h4
}

@test "helm3: the packaged archive installs into the local kube-apiserver" {
  run install_archive helm3 pkg-h3
  [ "$status" -eq 0 ] || { echo "$output"; return 1; }
  check_installed helm3 pkg-h3
}

@test "helm3 packages the chart the same way: same file list" {
  run helm3 package chart/dify --destination "$BATS_TEST_TMPDIR"
  [ "$status" -eq 0 ]
  diff <(tar -tzf "$ARCHIVE" | sort) <(tar -tzf "$BATS_TEST_TMPDIR/dify-$CHART_VERSION.tgz" | sort)
}
