#!/usr/bin/env bash
# make kind-e2e: overlayd on a real Kubernetes cluster (kind: a control plane and two workers).
#
#   1. creates the cluster from manifests/kind-config.yaml (no default CNI, pods in 10.244.0.0/16)
#   2. builds the image from the Dockerfile and loads it into every node
#   3. applies manifests/overlayd.yaml and waits for the DaemonSet rollout and Ready nodes
#   4. runs the checks shared with e2e/lab/run.sh (e2e/checks.sh): the brief's checks (ls
#      /opt/cni/bin, cat /etc/cni/net.d/*, kubectl exec ip a / ping), one test pod per node wired
#      by overlayd's CNI service, pod<->pod ping and TCP between every pair, a ClusterIP Service
#   5. restarts the DaemonSet (kubectl rollout restart) and checks that every node kept its
#      subnet (podCIDR, subnet.env, VTEP annotation) and that the pods still reach each other
#   6. deletes the cluster (also on failure or Ctrl-C; KEEP_CLUSTER=1 keeps it for debugging)
#
# Needs docker, kind and kubectl on PATH. Settings (environment):
#   CLUSTER_NAME   kind cluster name (default overlayd-e2e-<pid>)
#   IMAGE          image tag to build and load (default: the one manifests/overlayd.yaml uses)
#   TEST_IMAGE     image for the test pods, needs ping, httpd and wget (default busybox:1.36)
#   KEEP_CLUSTER   1 = do not delete the cluster at the end
#   TIMEOUT        seconds for each wait (default 300)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
manifest=$repo/manifests/overlayd.yaml
kind_config=$repo/manifests/kind-config.yaml
cluster=${CLUSTER_NAME:-overlayd-e2e-$$}
image=${IMAGE:-$(awk '$1 == "image:" { print $2; exit }' "$manifest")}
test_image=${TEST_IMAGE:-busybox:1.36}
timeout=${TIMEOUT:-300}
namespace=kube-overlayd
test_namespace=overlayd-e2e
kubeconfig=""
say() { printf '\n=== %s\n' "$*"; }
die() { printf 'ERROR %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH; the kind e2e needs docker, kind and kubectl"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (docker info failed)"
[[ -n $image ]] || die "no image: found in $manifest; set IMAGE"

cleanup() {
    local rc=$?
    if [[ -n $kubeconfig ]]; then
        if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
            echo "KEEP_CLUSTER=1: kept cluster $cluster (kubeconfig $kubeconfig); delete it with: kind delete cluster --name $cluster"
        else
            say "deleting cluster $cluster"
            kind delete cluster --name "$cluster" >/dev/null 2>&1 || echo "could not delete kind cluster $cluster" >&2
            rm -f "$kubeconfig"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

say "creating kind cluster $cluster"
kubeconfig=$(mktemp "${TMPDIR:-/tmp}/overlayd-e2e-kubeconfig.XXXXXX")
kind create cluster --name "$cluster" --config "$kind_config" --kubeconfig "$kubeconfig" --wait 0s

say "building $image and loading it into the nodes"
docker build -t "$image" "$repo"
kind load docker-image "$image" --name "$cluster"
docker pull -q "$test_image" >/dev/null
kind load docker-image "$test_image" --name "$cluster"

say "applying $manifest"
k apply -f "$manifest"

mapfile -t nodes < <(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[[ ${#nodes[@]} -ge 3 ]] || die "expected 3 nodes, got ${#nodes[@]}: ${nodes[*]}"
node_exec() { docker exec "$1" "${@:2}"; }
test_pull_policy=IfNotPresent
# shellcheck source=e2e/checks.sh
source "$repo/e2e/checks.sh"
run_checks
