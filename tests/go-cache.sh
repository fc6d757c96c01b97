# Sourced by the scripts that build the tests' tools from Go modules into a cache outside the
# repository (tests/e2e/build-control-plane.sh, tests/oauth2/build.sh).

# go_cache_lock CACHE: one build at a time (tests running in parallel may all ask for the
# binaries), with Go's official tarball directory on PATH (.ci/run puts it there the same way).
go_cache_lock() {
  mkdir -p "$1"
  exec 9>"$1/.build.lock"
  flock 9
  export PATH="$PATH:/usr/local/go/bin"
}

# go_needed WHY FILE...: when a FILE is missing and there is no Go to build it, says
# "needs Go: WHY" and fails.
go_needed() {
  local why=$1 f; shift
  for f in "$@"; do
    if [ ! -x "$f" ] && ! command -v go >/dev/null; then
      echo "needs Go: $why" >&2
      exit 1
    fi
  done
}

# go_build_module DIR MODULE@VERSION PACKAGE OUT: builds PACKAGE of MODULE at VERSION, as a
# dependency of a module of its own in DIR (created if need be), into OUT (static, stripped).
go_build_module() {
  local dir=$1 module=$2 package=$3 out=$4
  mkdir -p "$dir"
  (
    cd "$dir"
    [ -f go.mod ] || go mod init "portico.local/$(basename "$dir")" >/dev/null 2>&1
    go get "$module"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$package"
  )
  mv "$out.tmp" "$out"
}
