#!/usr/bin/env bash
# make cluster-e2e: overlayd on real Kubernetes nodes on this machine, without Docker or a registry.
#
#   1. `overlayd lab up --kubelet --nodes 3`: a real control plane (kube-apiserver, controller-manager,
#      kube-scheduler), and per node its own network and mount namespace, containerd, kubelet and
#      kube-proxy; images built here and imported with ctr; `kubectl apply -f manifests/overlayd.yaml`
#   2. the checks shared with e2e/kind/run.sh (e2e/checks.sh): the brief's checks verbatim
#      (ls /opt/cni/bin, cat /etc/cni/net.d/* on a node; kubectl exec <pod> -- ip a / ping -c 1
#      <pod on another node>), pod<->pod ping and TCP, a ClusterIP Service across nodes,
#      a DaemonSet restart that keeps every node's subnet
#   3. the NetworkPolicy suite on the same cluster (e2e/netpol_cluster.py, as the checks'
#      EXTRA_CHECKS): --network-policy added to the DaemonSet, the upstream cases on real pods,
#      the patch reverted
#   4. `overlayd lab down` (also on failure or Ctrl-C; KEEP_CLUSTER=1 keeps it for debugging)
#
# Settings (environment): NODES (default 3), TIMEOUT (seconds per wait, default 300),
# OVERLAYD (the overlayd command, default .venv/bin/overlayd), KEEP_CLUSTER, SKIP_RESTART=1,
# NETPOL=0 (no NetworkPolicy suite), NETPOL_ARGS (more arguments for it, e.g. --cases REGEX),
# PYTHON (for the suite; default: the python next to OVERLAYD),
# EXTRA_CHECKS (a command run against the cluster after the checks, with KUBECONFIG set; when set,
# it runs instead of the NetworkPolicy suite).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
overlayd=${OVERLAYD:-$repo/.venv/bin/overlayd}
lab=${LAB_NAME:-ke$$}
timeout=${TIMEOUT:-300}
namespace=kube-overlayd
test_namespace="overlayd-e2e"
test_pull_policy=Never
up=0

die() { printf 'ERROR %s\n' "$*" >&2; exit 1; }
[[ -x $overlayd ]] || die "$overlayd is not there; run make venv (or set OVERLAYD)"
command -v jq >/dev/null || die "jq is not on PATH (apt-get install jq)"

cleanup() {
    local rc=$?
    if [[ $up == 1 ]]; then
        if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
            echo "KEEP_CLUSTER=1: kept lab $lab; remove it with: $overlayd lab down --name $lab"
        else
            printf '\n=== removing lab %s\n' "$lab"
            "$overlayd" lab down --name "$lab" || echo "could not remove lab $lab" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '=== overlayd lab up --kubelet --nodes %s --name %s\n' "${NODES:-3}" "$lab"
up=1
started=$SECONDS
"$overlayd" lab up --kubelet --nodes "${NODES:-3}" --name "$lab"
echo "lab $lab up in $((SECONDS - started)) s"
status=$("$overlayd" lab status --name "$lab" --json)
kubeconfig=$(jq -r .kube_api.kubeconfig <<<"$status")
kubectl_bin=$(jq -r .kubelet.kubectl <<<"$status")
test_image=$(jq -r .images.test <<<"$status")
export KUBECONFIG=$kubeconfig
mapfile -t nodes < <(jq -r '.kubelet.nodes[].name' <<<"$status")

k() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }
if [[ ${NETPOL:-1} != 0 && -z ${EXTRA_CHECKS:-} ]]; then
    python=${PYTHON:-$(dirname "$overlayd")/python}
    EXTRA_CHECKS="cd $(printf %q "$repo") && $(printf %q "$python") -m e2e.netpol_cluster"
    EXTRA_CHECKS+=" --kubectl $(printf %q "$kubectl_bin") --image $(printf %q "$test_image") --wait $timeout"
    EXTRA_CHECKS+=" ${NETPOL_ARGS:-}"
fi
# A node's host: the command runs in the node's mount and network namespaces.
node_exec() {
    local node=$1 enter
    shift
    mapfile -t enter < <(jq -r --arg n "$node" '.kubelet.nodes[] | select(.name == $n) | .enter[]' <<<"$status")
    [[ ${#enter[@]} -gt 0 ]] || die "no node $node in lab $lab"
    "${enter[@]}" "$@"
}

# shellcheck source=e2e/checks.sh
source "$repo/e2e/checks.sh"
run_checks
echo "cluster e2e took $((SECONDS - started)) s (bring-up included)"
