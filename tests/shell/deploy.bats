#!/usr/bin/env bats
# chart/deploy.sh, the direct install path, against the real local kube-apiserver with the NKP fixture and Helm 4.
# deploy-helm3.bats runs the same checks (deploy_helpers.bash) with Helm 3.

load deploy_helpers

setup_file() { deploy_setup_file helm; }
teardown_file() { deploy_teardown_file; }

@test "helm4: an IP assigned a few seconds late is picked up" { check_late_ip; }
@test "helm4: an IP never assigned fails after --timeout with exit 4 (the CLI's discover timeout) and the kubectl command to inspect it" { check_lb_timeout; }
@test "helm4: without DIFY_SECRET_KEY it fails with exit 2 and installs nothing" { check_missing_secret; }
@test "helm4: the release holds the expected values and a second run is a no-op upgrade" { check_values_and_idempotent_rerun; }
@test "helm4: Traefik's Service: several or none found is an error listing them; --traefik-namespace picks one" { check_traefik_discovery_errors; }
@test "helm4: no secret on stdout/stderr, also under bash -x and on errors" { check_no_secret_on_screen_or_trace; }
@test "helm4: no secret in ps, helm's environment or a file given to helm: they reach helm on its stdin" { check_no_secret_in_ps_env_or_files; }
@test "helm4: strace: deploy.sh and its children write the secrets into pipes only, never into a file" { check_no_secret_written_to_files; }
@test "helm4: --dry-run prints the commands with secrets masked and creates nothing" { check_dry_run; }

# Usage: neither a cluster nor helm is needed.

@test "--help documents the options, their NKP defaults and the exit codes" {
  run chart/deploy.sh --help
  [ "$status" -eq 0 ]
  local word
  for word in --image-tag --image-repo langgenius/dify --openai-api-key OPENAI_API_KEY --ingress-class \
    kommander-traefik --path /dify --scheme https --storage-class nutanix-volume --namespace --release \
    --traefik-service --traefik-namespace --host --timeout --helm-timeout --dry-run --wait --set --values \
    DIFY_SECRET_KEY HELM "0  installed" "1  error" "2  usage" "4  timeout"; do
    [[ $output == *"$word"* ]] || { echo "--help does not mention '$word'"; return 1; }
  done
  # 3 is the CLI's "preflight failed": deploy.sh has no preflight and never exits 3.
  [[ $output != *"  3  "* ]]
}

@test "usage errors exit 2 and name the problem" {
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag 1.13.3 --bogus
  [ "$status" -eq 2 ]
  [[ $output == *"unknown option '--bogus'"* ]]
  run env DIFY_SECRET_KEY=x chart/deploy.sh
  [ "$status" -eq 2 ]
  [[ $output == *"--image-tag is required"* ]]
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag 1.13.3 --scheme ftp
  [ "$status" -eq 2 ]
  [[ $output == *"--scheme must be http or https"* ]]
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag 1.13.3 --timeout soon
  [ "$status" -eq 2 ]
  [[ $output == *"--timeout 'soon' is not a duration"* ]]
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag
  [ "$status" -eq 2 ]
  [[ $output == *"--image-tag needs a value"* ]]
  # helm's stdin carries the secrets: the user's values come as files.
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag 1.13.3 -f -
  [ "$status" -eq 2 ]
  [[ $output == *"helm's stdin carries deploy.sh's secrets"* ]]
  run env DIFY_SECRET_KEY=x chart/deploy.sh --image-tag 1.13.3 -- --values=-
  [ "$status" -eq 2 ]
  [[ $output == *"'--values=-'"* ]]
}

@test "deploy.sh is shellcheck clean" {
  shellcheck chart/deploy.sh
}
