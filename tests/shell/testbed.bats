#!/usr/bin/env bats
# The shell side of the local control plane: scripts/local-cluster starts it, kubectl works against it,
# and stop leaves nothing behind.

setup_file() {
  cd "$BATS_TEST_DIRNAME/../.."
  eval "$(scripts/local-cluster start --watch-pid $$)"
  export KUBECONFIG DIFY_GITOPS_TESTBED_PID DIFY_GITOPS_TESTBED_DIR
}

teardown_file() {
  scripts/local-cluster stop
}

@test "kubectl sees the NKP fixture's Traefik Service as a LoadBalancer without an address" {
  run kubectl -n kon-workspace-test get service kommander-traefik -o jsonpath='{.spec.type}/{.status.loadBalancer.ingress}'
  [ "$status" -eq 0 ]
  [ "$output" = "LoadBalancer/" ]
}

@test "kubectl creates and reads back a ConfigMap" {
  kubectl create namespace bats-store
  kubectl -n bats-store create configmap probe --from-literal=greeting=hello
  run kubectl -n bats-store get configmap probe -o jsonpath='{.data.greeting}'
  [ "$status" -eq 0 ]
  [ "$output" = "hello" ]
}

@test "the default StorageClass is nutanix-volume and the IngressClass is Traefik's" {
  run kubectl get storageclass -o jsonpath='{range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.metadata.name}{end}'
  [ "$output" = "nutanix-volume" ]
  run kubectl get ingressclass kommander-traefik -o jsonpath='{.spec.controller}'
  [ "$output" = "traefik.io/ingress-controller" ]
}

@test "stop removes the processes and the directory of a second testbed" {
  local second
  second=$(scripts/local-cluster start --no-fixture --watch-pid $$)
  eval "$second"
  local dir=$DIFY_GITOPS_TESTBED_DIR pid=$DIFY_GITOPS_TESTBED_PID
  [ -d "$dir" ]
  scripts/local-cluster stop "$pid"
  ! kill -0 "$pid" 2>/dev/null
  [ ! -e "$dir" ]
}
