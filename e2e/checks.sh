# shellcheck shell=bash disable=SC2154,SC2016
# (SC2154: the caller sets nodes, test_image, ...; SC2016: the quoted scripts run on the node)
# The end-to-end checks on a real cluster running manifests/overlayd.yaml, shared by
# e2e/kind/run.sh (kind, Docker) and e2e/lab/run.sh (`overlayd lab up --kubelet`, this machine).
#
# The caller sources this file, then calls run_checks. It provides:
#   k ARGS...               kubectl for the cluster
#   node_exec NODE CMD...   runs CMD on NODE's host (its filesystem and network namespace)
#   nodes=(...)             the node names (3 or more)
#   test_image              an image with sh, ip, ping, sleep, httpd, nc (busybox)
#   test_pull_policy        imagePullPolicy for it (IfNotPresent, or Never for a preloaded image)
#   namespace               where the DaemonSet runs (kube-overlayd)
#   test_namespace          a namespace the checks create for their pods
#   timeout                 seconds for each wait
# It counts with pass/fail (checks, failures) and prints the brief's own checks verbatim.
# HTTP is fetched with nc, not wget: Debian 12's busybox-static wget segfaults (exit 139) on any URL.

checks=${checks:-0}
failures=${failures:-0}
say() { printf '\n=== %s\n' "$*"; }
pass() { checks=$((checks + 1)); printf 'PASS  %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL  %s\n' "$*"; }
# The command as a user would type it, then its output.
show() { printf '$ %s\n' "$*"; }
# The body's last line of http://IP:PORT/ fetched from inside POD (namespace test_namespace).
http_get() {
    local pod=$1 ip=$2 port=$3
    k -n "$test_namespace" exec "$pod" -- sh -c "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip $port | tail -n 1" 2>/dev/null || true
}

# What each node holds: podCIDR, FLANNEL_SUBNET from subnet.env, and the VTEP MAC annotation.
node_state() {
    local node=$1 cidr subnet mac
    cidr=$(k get node "$node" -o jsonpath='{.spec.podCIDR}')
    subnet=$(node_exec "$node" sh -c '. /run/flannel/subnet.env && echo "$FLANNEL_SUBNET"')
    mac=$(k get node "$node" -o jsonpath='{.metadata.annotations.flannel\.alpha\.coreos\.com/backend-data}')
    printf '%s podCIDR=%s subnet.env=%s backend-data=%s' "$node" "$cidr" "$subnet" "$mac"
}

check_subnets() {
    local node cidr subnet
    declare -gA before=()
    say "node subnets"
    for node in "${nodes[@]}"; do
        before[$node]=$(node_state "$node")
        echo "${before[$node]}"
        cidr=$(k get node "$node" -o jsonpath='{.spec.podCIDR}')
        subnet=$(node_exec "$node" sh -c '. /run/flannel/subnet.env && echo "$FLANNEL_SUBNET"')
        # subnet.env holds the gateway address of the node's podCIDR (10.244.1.1/24 for 10.244.1.0/24).
        if [[ -n $cidr && ${subnet%.*} == "${cidr%.*}" && ${subnet#*/} == "${cidr#*/}" ]]; then
            pass "$node: subnet.env FLANNEL_SUBNET=$subnet lies in its podCIDR $cidr"
        else
            fail "$node: subnet.env FLANNEL_SUBNET=$subnet does not match its podCIDR $cidr"
        fi
    done
}

check_cni_files() {
    local node bins missing p
    say "CNI health on each node (the brief's: ls /opt/cni/bin, cat /etc/cni/net.d/*)"
    for node in "${nodes[@]}"; do
        echo "--- on node $node"
        show "ls /opt/cni/bin"
        node_exec "$node" ls /opt/cni/bin
        show "cat /etc/cni/net.d/*"
        node_exec "$node" sh -c 'cat /etc/cni/net.d/*'
        bins=$(node_exec "$node" ls /opt/cni/bin | tr '\n' ' ')
        missing=""
        for p in overlay bridge host-local portmap; do
            [[ " $bins " == *" $p "* ]] || missing+=" $p"
        done
        if [[ -z $missing ]]; then pass "$node: overlay, bridge, host-local and portmap installed"; else fail "$node: missing in /opt/cni/bin:$missing"; fi
        if node_exec "$node" grep -q '"type": *"overlay"' /etc/cni/net.d/10-overlay.conflist; then
            pass "$node: /etc/cni/net.d/10-overlay.conflist names the overlay plugin"
        else
            fail "$node: /etc/cni/net.d/10-overlay.conflist is missing or does not name the overlay plugin"
        fi
    done
}

start_test_pods() {
    local node pod
    say "starting one test pod per node"
    k create namespace "$test_namespace" >/dev/null
    pods=()
    for node in "${nodes[@]}"; do
        pod=net-${node##*-}
        pods+=("$pod")
        k -n "$test_namespace" apply -f - >/dev/null <<EOT
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  labels: {app: overlayd-e2e}
spec:
  nodeName: $node
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 1
  containers:
    - name: net
      image: $test_image
      imagePullPolicy: $test_pull_policy
      command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
      ports: [{containerPort: 8080}]
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
EOT
    done
    k -n "$test_namespace" wait pod --all --for=condition=Ready --timeout "${timeout}s"
    declare -gA pod_ip=()
    for pod in "${pods[@]}"; do
        pod_ip[$pod]=$(k -n "$test_namespace" get pod "$pod" -o jsonpath='{.status.podIP}')
        echo "$pod on $(k -n "$test_namespace" get pod "$pod" -o jsonpath='{.spec.nodeName}'): ${pod_ip[$pod]}"
        if [[ ${pod_ip[$pod]} == 10.244.* ]]; then pass "$pod got an address in 10.244.0.0/16"; else fail "$pod got ${pod_ip[$pod]}, not an address in 10.244.0.0/16"; fi
    done
}

check_cni_service() {
    local node served
    say "the pods were wired by each node's overlayd CNI service (native front end, no interpreter per pod)"
    for node in "${nodes[@]}"; do
        if node_exec "$node" test -S /run/flannel/cni.sock; then
            pass "$node: /run/flannel/cni.sock is there"
        else
            fail "$node: /run/flannel/cni.sock is missing"
        fi
        served=$(node_exec "$node" curl -s http://127.0.0.1:8471/metrics \
            | awk '/^overlayd_cni_requests_total\{/ && /command="ADD"/ && /result="ok"/ {print int($2)}')
        if [[ ${served:-0} -ge 1 ]]; then
            pass "$node: overlayd served ${served} ADD(s)"
        else
            fail "$node: overlayd served no ADD (overlayd_cni_requests_total{command=\"ADD\",result=\"ok\"} is ${served:-absent})"
        fi
    done
}

# The brief's own checks, as a user types them: ip a in a pod, ping a pod on another node.
check_brief_exec() {
    local from=${pods[0]} to=${pods[1]}
    say "the brief's checks through kubectl"
    show "kubectl exec $from -- ip a"
    if k -n "$test_namespace" exec "$from" -- ip a; then pass "kubectl exec $from -- ip a"; else fail "kubectl exec $from -- ip a"; fi
    show "kubectl exec $from -- ping -c 1 ${pod_ip[$to]}    # $to, on another node"
    if k -n "$test_namespace" exec "$from" -- ping -c 1 "${pod_ip[$to]}"; then
        pass "kubectl exec $from -- ping -c 1 ${pod_ip[$to]} ($to on another node)"
    else
        fail "kubectl exec $from -- ping -c 1 ${pod_ip[$to]} ($to on another node)"
    fi
}

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
            answer=$(http_get "$from" "$ip" 8080)
            if [[ $answer == "$to" ]]; then
                pass "$label: $from -> $to ($ip): TCP 8080 answered \"$answer\""
            else
                fail "$label: $from -> $to ($ip): TCP 8080 answered \"$answer\", expected \"$to\""
            fi
        done
    done
}

# A ClusterIP Service whose only endpoint is the last node's pod, reached from the first node's
# pod: kube-proxy's DNAT on the client's node, then the overlay to the other node.
check_service() {
    local backend=${pods[${#pods[@]}-1]} client=${pods[0]} cip answer
    say "a ClusterIP Service (kube-proxy) reaches a pod on another node"
    k -n "$test_namespace" label pod "$backend" role=backend --overwrite >/dev/null
    k -n "$test_namespace" apply -f - >/dev/null <<EOT
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {role: backend}
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
EOT
    cip=$(k -n "$test_namespace" get service backend -o jsonpath='{.spec.clusterIP}')
    answer=""
    for _ in $(seq 1 "$timeout"); do
        answer=$(http_get "$client" "$cip" 80)
        [[ $answer == "$backend" ]] && break
        sleep 1
    done
    show "kubectl exec $client -- sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $cip 80\"    # Service backend -> $backend"
    echo "$answer"
    if [[ $answer == "$backend" ]]; then
        pass "$client -> Service backend ($cip:80) answered by $backend on another node"
    else
        fail "$client -> Service backend ($cip:80) answered \"$answer\", expected \"$backend\""
    fi
}

check_restart() {
    local node after
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
}

# Hook for suites that run on the same cluster (the NetworkPolicy suite): a command named by
# EXTRA_CHECKS runs with KUBECONFIG set, after the checks above; its exit status counts as a check.
run_extra_checks() {
    [[ -n ${EXTRA_CHECKS:-} ]] || return 0
    say "extra checks: $EXTRA_CHECKS"
    if bash -c "$EXTRA_CHECKS"; then pass "extra checks: $EXTRA_CHECKS"; else fail "extra checks: $EXTRA_CHECKS"; fi
}

run_checks() {
    k -n "$namespace" rollout status daemonset/overlayd --timeout "${timeout}s"
    k wait node --all --for=condition=Ready --timeout "${timeout}s"
    pass "DaemonSet rolled out and every node is Ready"
    check_subnets
    check_cni_files
    start_test_pods
    check_cni_service
    check_brief_exec
    say "pod <-> pod across nodes"
    check_pairs "before restart"
    check_service
    if [[ ${SKIP_RESTART:-0} != 1 ]]; then
        check_restart
        say "pod <-> pod after the restart"
        check_pairs "after restart"
    fi
    run_extra_checks
    say "summary"
    echo "$((checks - failures)) passed, $failures failed"
    [[ $failures -eq 0 ]]
}
