#!/bin/bash
# cryo volume create/ls/inspect/rm/prune/exists: output and Podman exit codes, on a private root.
set -u
CRYO=${CRYO:?path of the cryo binary}
tmp=$(mktemp -d /tmp/cryo-volume-it-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
c() { "$CRYO" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
failures=0
check() {  # check DESCRIPTION EXPECTED ACTUAL
  if [[ "$2" != "$3" ]]; then
    echo "FAIL: $1: expected [$2], got [$3]"
    failures=$((failures + 1))
  else
    echo "ok: $1"
  fi
}

check "create prints the name" "data" "$(c volume create data)"
c volume create data 2>"$tmp/err" >/dev/null
check "duplicate create exits 125" 125 $?
grep -q "already exists" "$tmp/err" || { echo "FAIL: duplicate message: $(cat "$tmp/err")"; failures=$((failures + 1)); }
check "create --ignore on an existing volume" "data" "$(c volume create --ignore data)"
anon=$(c volume create --label tier=cache)
check "anonymous volume has a 64-hex name" 1 "$([[ $anon =~ ^[0-9a-f]{64}$ ]] && echo 1 || echo 0)"

check "ls header" "DRIVER      VOLUME NAME" "$(c volume ls | head -1)"
# Rows come sorted by name; the random name may sort either side of "data".
check "ls rows" "$(printf 'local       %s\nlocal       data\n' "$anon" | sort)" "$(c volume ls | tail -n +2)"
check "ls -q" "$(printf '%s\ndata\n' "$anon" | sort)" "$(c volume ls -q)"
check "ls --filter label" "$anon" "$(c volume ls -q --filter label=tier=cache)"
check "ls --format template" "data:local" "$(c volume ls --format '{{.Name}}:{{.Driver}}' --filter name=^data$)"
check "ls --format json names" "$(printf '%s\ndata\n' "$anon" | sort)" "$(c volume ls --format json | python3 -c 'import json,sys; print("\n".join(v["Name"] for v in json.load(sys.stdin)))')"

mountpoint=$(c volume inspect data | python3 -c 'import json,sys; a=json.load(sys.stdin); assert len(a)==1; print(a[0]["Mountpoint"])')
check "inspect mountpoint" "$tmp/root/volumes/data/_data" "$mountpoint"
[[ -d $mountpoint ]] || { echo "FAIL: mountpoint is not a directory"; failures=$((failures + 1)); }
check "inspect --format" "local" "$(c volume inspect --format '{{.Driver}}' data)"
c volume inspect nosuch >/dev/null 2>&1
check "inspect of a missing volume exits 125" 125 $?
c volume exists data
check "exists" 0 $?
c volume exists nosuch
check "exists of a missing volume" 1 $?

# A container that uses the volume (the runtime's container.json "volumes" array).
mkdir -p "$tmp/root/containers/c0ffee"
echo '{"volumes":[{"name":"data","destination":"/data","rw":true}]}' >"$tmp/root/containers/c0ffee/container.json"
c volume rm data 2>"$tmp/err"
check "rm of a volume in use exits 2" 2 $?
grep -q "c0ffee" "$tmp/err" || { echo "FAIL: in-use message names no container: $(cat "$tmp/err")"; failures=$((failures + 1)); }
c volume rm nosuch 2>/dev/null
check "rm of a missing volume exits 1" 1 $?
check "prune removes only unused volumes" "$anon" "$(c volume prune -f)"
check "ls after prune" "data" "$(c volume ls -q)"
rm -rf "$tmp/root/containers/c0ffee"
echo marker >"$mountpoint/file"
check "rm prints the name" "data" "$(c volume rm data)"
[[ ! -e $tmp/root/volumes/data ]] || { echo "FAIL: volume directory left behind"; failures=$((failures + 1)); }
check "ls empty" "" "$(c volume ls -q)"

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "volume: all passed"
