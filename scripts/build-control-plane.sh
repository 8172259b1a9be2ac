#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into
# .cache/bin/<release>/, pinned by the tools modules in controlplane/tools/.
# Skips whatever is already built. Prints the folder holding the binaries.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/controlplane/tools"
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$tools/kubernetes/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$tools/etcd/go.mod")
# Bump when the way the binaries are built changes, so stale ones are rebuilt.
recipe=2
out="${FNTC_CACHE_DIR:-$root/.cache}/bin/k8s-$k8s_version-etcd-$etcd_version-r$recipe"
mkdir -p "$out"

# kubectl refuses to talk to a server whose version it cannot parse, and both
# report the version stamped here at link time.
minor=${k8s_version#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean"
done

build() {  # build <tools module> <package> <binary name> [extra ldflags]
  local module=$1 package=$2 name=$3 extra=${4:-}
  if [ -x "$out/$name" ]; then
    return
  fi
  echo "building $name from $package (minutes the first time; later builds reuse Go's cache)" >&2
  local started=$SECONDS
  (cd "$tools/$module" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $extra" \
      -o "$out/$name.partial" "$package")
  mv "$out/$name.partial" "$out/$name"
  echo "built $name in $((SECONDS - started))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 etcd
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$stamp"
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$stamp"
echo "$out"
