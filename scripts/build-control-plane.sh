#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into
# .cache/bin/<release>/, pinned by the tools modules in controlplane/tools/.
# Skips whatever is already built. Prints the folder holding the binaries.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/controlplane/tools"
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$tools/kubernetes/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$tools/etcd/go.mod")
out="${FNTC_CACHE_DIR:-$root/.cache}/bin/k8s-$k8s_version-etcd-$etcd_version"
mkdir -p "$out"

build() {  # build <tools module> <package> <binary name>
  local module=$1 package=$2 name=$3
  if [ -x "$out/$name" ]; then
    return
  fi
  echo "building $name from $package (first build takes several minutes on 2 cores)" >&2
  local started=$SECONDS
  (cd "$tools/$module" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" \
      -o "$out/$name.partial" "$package")
  mv "$out/$name.partial" "$out/$name"
  echo "built $name in $((SECONDS - started))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 etcd
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl
echo "$out"
