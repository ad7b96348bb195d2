#!/usr/bin/env bash
# make kind-e2e: overlayd on a real Kubernetes cluster (kind: a control plane and two workers).
#
#   1. creates the cluster from manifests/kind-config.yaml (no default CNI, pods in 10.244.0.0/16)
#   2. builds the image from the Dockerfile and loads it into every node
#   3. applies manifests/overlayd.yaml and waits for the DaemonSet rollout and Ready nodes
#   4. runs one test pod per node, checks that overlayd's CNI service wired them, and pod<->pod
#      ping and TCP between every pair
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
failures=0
checks=0

say() { printf '\n=== %s\n' "$*"; }
pass() { checks=$((checks + 1)); printf 'PASS  %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL  %s\n' "$*"; }
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
k -n "$namespace" rollout status daemonset/overlayd --timeout "${timeout}s"
k wait node --all --for=condition=Ready --timeout "${timeout}s"
pass "DaemonSet rolled out and every node is Ready"

mapfile -t nodes < <(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[[ ${#nodes[@]} -ge 3 ]] || die "expected 3 nodes, got ${#nodes[@]}: ${nodes[*]}"

# What each node holds: podCIDR, FLANNEL_SUBNET from subnet.env, and the VTEP MAC annotation.
node_state() {
    local node=$1 cidr subnet mac
    cidr=$(k get node "$node" -o jsonpath='{.spec.podCIDR}')
    subnet=$(docker exec "$node" sh -c '. /run/flannel/subnet.env && echo "$FLANNEL_SUBNET"')
    mac=$(k get node "$node" -o jsonpath='{.metadata.annotations.flannel\.alpha\.coreos\.com/backend-data}')
    printf '%s podCIDR=%s subnet.env=%s backend-data=%s' "$node" "$cidr" "$subnet" "$mac"
}

declare -A before=()
say "node subnets"
for node in "${nodes[@]}"; do
    before[$node]=$(node_state "$node")
    echo "${before[$node]}"
    cidr=$(k get node "$node" -o jsonpath='{.spec.podCIDR}')
    subnet=$(docker exec "$node" sh -c '. /run/flannel/subnet.env && echo "$FLANNEL_SUBNET"')
    # subnet.env holds the gateway address of the node's podCIDR (10.244.1.1/24 for 10.244.1.0/24).
    if [[ -n $cidr && ${subnet%.*} == "${cidr%.*}" && ${subnet#*/} == "${cidr#*/}" ]]; then
        pass "$node: subnet.env FLANNEL_SUBNET=$subnet lies in its podCIDR $cidr"
    else
        fail "$node: subnet.env FLANNEL_SUBNET=$subnet does not match its podCIDR $cidr"
    fi
done

say "CNI health on each node (ls /opt/cni/bin, cat /etc/cni/net.d/*)"
for node in "${nodes[@]}"; do
    bins=$(docker exec "$node" ls /opt/cni/bin | tr '\n' ' ')
    echo "$node /opt/cni/bin: $bins"
    missing=""
    for p in overlay bridge host-local portmap; do
        [[ " $bins " == *" $p "* ]] || missing+=" $p"
    done
    if [[ -z $missing ]]; then pass "$node: overlay, bridge, host-local and portmap installed"; else fail "$node: missing in /opt/cni/bin:$missing"; fi
    if docker exec "$node" grep -q '"type": *"overlay"' /etc/cni/net.d/10-overlay.conflist; then
        pass "$node: /etc/cni/net.d/10-overlay.conflist names the overlay plugin"
    else
        fail "$node: /etc/cni/net.d/10-overlay.conflist is missing or does not name the overlay plugin"
    fi
done

say "starting one test pod per node"
k create namespace "$test_namespace" >/dev/null
pods=()
for node in "${nodes[@]}"; do
    pod=net-${node#"$cluster"-}
    pods+=("$pod")
    k -n "$test_namespace" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  labels: {app: overlayd-e2e}
spec:
  nodeName: $node
  tolerations: [{operator: Exists}]
  containers:
    - name: net
      image: $test_image
      imagePullPolicy: IfNotPresent
      command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
EOF
done
k -n "$test_namespace" wait pod --all --for=condition=Ready --timeout "${timeout}s"

declare -A pod_ip=()
for pod in "${pods[@]}"; do
    pod_ip[$pod]=$(k -n "$test_namespace" get pod "$pod" -o jsonpath='{.status.podIP}')
    echo "$pod on $(k -n "$test_namespace" get pod "$pod" -o jsonpath='{.spec.nodeName}'): ${pod_ip[$pod]}"
    if [[ ${pod_ip[$pod]} == 10.244.* ]]; then pass "$pod got an address in 10.244.0.0/16"; else fail "$pod got ${pod_ip[$pod]}, not an address in 10.244.0.0/16"; fi
done

say "the pods were wired by each node's overlayd CNI service (native front end, no interpreter per pod)"
for node in "${nodes[@]}"; do
    if docker exec "$node" test -S /run/flannel/cni.sock; then
        pass "$node: /run/flannel/cni.sock is there"
    else
        fail "$node: /run/flannel/cni.sock is missing"
    fi
    served=$(docker exec "$node" curl -s http://127.0.0.1:8471/metrics \
        | awk '/^overlayd_cni_requests_total\{/ && /command="ADD"/ && /result="ok"/ {print int($2)}')
    if [[ ${served:-0} -ge 1 ]]; then
        pass "$node: overlayd served ${served} ADD(s)"
    else
        fail "$node: overlayd served no ADD (overlayd_cni_requests_total{command=\"ADD\",result=\"ok\"} is ${served:-absent})"
    fi
done

check_pairs() {
    local label=$1 from to ip answer
    for from in "${pods[@]}"; do
        for to in "${pods[@]}"; do
            [[ $from == "$to" ]] && continue
            ip=${pod_ip[$to]}
            if k -n "$test_namespace" exec "$from" -- ping -c 3 -W 2 "$ip" >/dev/null 2>&1; then
                pass "$label: $from -> $to ($ip): ping"
            else
                fail "$label: $from -> $to ($ip): ping"
            fi
            answer=$(k -n "$test_namespace" exec "$from" -- wget -q -T 5 -O - "http://$ip:8080/" 2>/dev/null || true)
            if [[ $answer == "$to" ]]; then
                pass "$label: $from -> $to ($ip): TCP 8080 answered \"$answer\""
            else
                fail "$label: $from -> $to ($ip): TCP 8080 answered \"$answer\", expected \"$to\""
            fi
        done
    done
}

say "pod <-> pod across nodes"
check_pairs "before restart"

say "kubectl rollout restart daemonset/overlayd"
k -n "$namespace" rollout restart daemonset/overlayd
k -n "$namespace" rollout status daemonset/overlayd --timeout "${timeout}s"
pass "DaemonSet restarted and rolled out"

say "every node kept its subnet"
for node in "${nodes[@]}"; do
    after=$(node_state "$node")
    if [[ $after == "${before[$node]}" ]]; then
        pass "$node kept its subnet: $after"
    else
        fail "$node changed: before ${before[$node]} / after $after"
    fi
done

say "pod <-> pod after the restart"
check_pairs "after restart"

say "summary"
echo "$checks checks, $((checks - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
