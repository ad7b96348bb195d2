# The README's two commands: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian's interpreter starts in ~15 ms; the CNI plugin is started once per pod.
# gcc + libc6-dev build the plugin's native front end (cni_plugin/native/); clang and its
# runtime (libFuzzer, ASan, UBSan) build its fuzzers and sanitized build (fuzz/).
# prometheus (with promtool) and socat: `overlayd lab up --prometheus` and the alert rules' tests.
BASE_PYTHON ?= /usr/bin/python3
DEB_PACKAGES := etcd-server etcd-client containernetworking-plugins iproute2 nftables iptables \
	iputils-ping iperf3 python3-venv shellcheck procps openssl util-linux binutils gcc libc6-dev \
	containerd runc busybox-static jq \
	clang libclang-rt-14-dev prometheus socat
PYTEST_ARGS ?=
# Test modules run in this many worker processes (pytest-xdist, a module's tests stay together):
# most tests wait on the kernel, daemons and API servers rather than the CPU. 0 runs them serially.
PYTEST_WORKERS ?= 3
FUZZ_SECONDS ?= 300

.PHONY: deps deb venv test test-frontend fuzz demo bench clean kind-e2e netpol netpol-long flannel-bins bench-flannel kube-bins node-bins cluster-e2e

deps: deb venv

# Install only what is missing, so a warm machine does not touch apt at all.
deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# flanneld from its Go module (tools/flannel/), cached by release outside the tree; warm: a stat.
flannel-bins:
	nice -n 10 tools/flannel/build.sh

# The real flanneld and overlayd side by side (docs/benchmarks.md); ~6 min.
bench-flannel: deps flannel-bins
	$(PY) -m bench.flannel_vs

# Without flanneld (no Go, no module proxy) the run goes on and tests/flannel skip, saying why.
# The CNI tests drive an ASan+UBSan build of the native front end; a 60 s fuzz pass follows
# (FUZZ_PASS_SECONDS=0 skips it). See docs/development.md.
test: deps kube-bins node-bins
	@$(MAKE) --no-print-directory flannel-bins || echo "*** flanneld did not build: tests/flannel will SKIP (see the error above) ***" >&2
	bash fuzz/check.sh $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

test-frontend: deps
	bash fuzz/check.sh $(PY) -m pytest tests/cni

# The front end's fuzzers, FUZZ_SECONDS each; `bash fuzz/run.sh --keep N` also grows fuzz/corpus.
fuzz: deps
	bash fuzz/build.sh && bash fuzz/run.sh $(FUZZ_SECONDS)

# kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes at the release
# tools/kube/go.mod pins, and the etcd they store in (tools/etcd/go.mod), cached in
# /var/cache/overlayd-bins/{kube,etcd}/<release>/ (OVERLAYD_BIN_CACHE). Cold: see
# docs/control-plane.md; warm: nothing to do. Needs Go >= 1.26.
kube-bins:
	@tools/etcd/build.sh
	@tools/kube/build.sh

# kubelet, kube-scheduler, kube-proxy for `lab up --kubelet` (same module and release; cold ~12 min here).
node-bins:
	@nice -n 10 tools/kube/build.sh kubelet kube-scheduler kube-proxy

demo: deps
	$(VENV)/bin/overlayd lab demo --nodes 3 --pods-per-node 2

bench: deps
	$(PY) -m bench

# The NetworkPolicy suite on the real control plane lab (tests/netpol: the 48 upstream cases, 5 x 40
# generated steps, dual-stack and same/cross-node variants, lab pod verbs, the demo), and its generated
# cases at length (20 seeds x 60 steps). See docs/network-policy.md, "Tests and figures".
netpol: deps
	NETPOL_LAB=1 $(PY) -m pytest tests/netpol $(PYTEST_ARGS)

netpol-long: deps
	NETPOL_LAB=1 NETPOL_SEEDS=$$(seq -s, 1 20) NETPOL_STEPS=60 $(PY) -m pytest tests/netpol/test_generated.py $(PYTEST_ARGS)

# Every chaos scenario at full length (a 30-min churn soak among them), then their table (docs/chaos.md).
.PHONY: soak
soak: deps
	nice -n 5 $(PY) -m overlayd.lab.chaos_report --soak-minutes $${SOAK_MINUTES:-30}

# Real nodes on this machine: kubelet + containerd per node, overlayd from the manifest, the
# checks e2e/kind/run.sh runs too, then the NetworkPolicy suite on real pods (e2e/netpol_cluster.py;
# NETPOL=0 skips it) (docs/real-node.md). Not part of `make test` (a reduced run is).
cluster-e2e: deps kube-bins node-bins
	bash e2e/lab/run.sh

# Needs Docker and kind; not run by `make test` (static checks of it are).
kind-e2e: deps
	bash e2e/kind/run.sh

clean:
	rm -rf $(VENV) build *.egg-info
