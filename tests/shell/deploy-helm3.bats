#!/usr/bin/env bats
# The checks of deploy.bats with Helm 3 (helm3 on PATH from scripts/test-tools): deploy.sh supports 3.8+ and 4.

load deploy_helpers

setup_file() { deploy_setup_file helm3; }
teardown_file() { deploy_teardown_file; }

@test "helm3: an IP assigned a few seconds late is picked up" { check_late_ip; }
@test "helm3: an IP never assigned fails after --timeout with exit 4 (the CLI's discover timeout) and the kubectl command to inspect it" { check_lb_timeout; }
@test "helm3: without DIFY_SECRET_KEY it fails with exit 2 and installs nothing" { check_missing_secret; }
@test "helm3: the release holds the expected values and a second run is a no-op upgrade" { check_values_and_idempotent_rerun; }
@test "helm3: Traefik's Service: several or none found is an error listing them; --traefik-namespace picks one" { check_traefik_discovery_errors; }
@test "helm3: no secret on stdout/stderr, also under bash -x and on errors" { check_no_secret_on_screen_or_trace; }
@test "helm3: no secret in ps, helm's environment or a file given to helm: they reach helm on its stdin" { check_no_secret_in_ps_env_or_files; }
@test "helm3: strace: deploy.sh and its children write the secrets into pipes only, never into a file" { check_no_secret_written_to_files; }
@test "helm3: --dry-run prints the commands with secrets masked and creates nothing" { check_dry_run; }
