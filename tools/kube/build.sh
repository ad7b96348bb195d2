#!/usr/bin/env bash
# make kube-bins: kube-apiserver, kube-controller-manager and kubectl (and, with arguments, any
# other command of k8s.io/kubernetes listed as a tool in go.mod) at the release go.mod pins.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
release=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/go.mod")
minor=$(echo "$release" | cut -d. -f2)
bins=${*:-kube-apiserver kube-controller-manager kubectl}
v=k8s.io/component-base/version
cv=k8s.io/client-go/pkg/version
ld="-s -w"
for p in $v $cv; do
	ld="$ld -X $p.gitVersion=$release -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
pkgs=()
for b in $bins; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
exec "$here/../gobuild/build.sh" "$here" "$release" "$ld" "${pkgs[@]}"
