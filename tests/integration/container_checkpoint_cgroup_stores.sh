#!/usr/bin/env bash
# Two engines on one machine with their own --root/--runroot never share a cgroup: each store's
# containers live under a parent of its own (cryo-<hash of the runroot>/<id>; the default store
# keeps Podman-like cryo/<id>), even for the same container ID, which an export of a running
# container (checkpoint -R -e) imported by the other engine (restore -i) gives. Removing the
# container in one store leaves the other's running, and a store's parent cgroup goes with its
# last container.
source "${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib/common.bash"
cryo_test_setup cryo-cgroup-stores

cryoA() { "$cryo_bin" --root "$tmp/A/root" --runroot "$tmp/A/run" "$@"; }
cryoB() { "$cryo_bin" --root "$tmp/B/root" --runroot "$tmp/B/run" "$@"; }
monitor_cwd_under=$tmp/
extra_cleanup() {
  cryoA rm -f -t 0 -a >/dev/null 2>&1 || true
  cryoB rm -f -t 0 -a >/dev/null 2>&1 || true
}
import_busybox "$tmp/A/root" "$tmp/A/run"
import_busybox "$tmp/B/root" "$tmp/B/run"

v2=false
[[ -f /sys/fs/cgroup/cgroup.controllers ]] && v2=true
# The cgroup of process $1 (the pids hierarchy on a hybrid host), e.g. /cryo-0123456789ab/ID.
cgroup_of() {
  if $v2; then awk -F: '$1 == "0" {print $3}' /proc/"$1"/cgroup; else awk -F: '$2 == "pids" {print $3}' /proc/"$1"/cgroup; fi
}
cgroup_dir() { if $v2; then echo "/sys/fs/cgroup$1"; else echo "/sys/fs/cgroup/pids$1"; fi; }
# Every directory of cgroup $1 in every hierarchy.
cgroup_dirs() {
  local d
  for d in /sys/fs/cgroup"$1" /sys/fs/cgroup/*"$1"; do [[ -d $d ]] && echo "$d"; done
  return 0
}
counter='i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'

a=$(cryoA run -d --network none busybox sh -c "$counter")
b=$(cryoB run -d --network none busybox sleep 100000)
init_a=$(cryoA inspect -f '{{.State.Pid}}' "$a")
init_b=$(cryoB inspect -f '{{.State.Pid}}' "$b")
cg_a=$(cgroup_of "$init_a")
cg_b=$(cgroup_of "$init_b")
[[ $cg_a == /cryo-*/"$a" ]] || fail "cgroup of A's container: $cg_a"
[[ $cg_b == /cryo-*/"$b" ]] || fail "cgroup of B's container: $cg_b"
parent_a=${cg_a%/*}
parent_b=${cg_b%/*}
[[ $parent_a != "$parent_b" ]] || fail "both stores use $parent_a"
# The spec says where the container's cgroup is.
expect_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["linux"]["cgroupsPath"])' \
  "$tmp/A/root/containers/$a/config.json")" "${cg_a#/}" "cgroupsPath of A's container"

# The same ID in both stores: A's running container exported and imported by B.
cryoA container checkpoint -R -e "$tmp/a.tar.zst" "$a" >/dev/null
expect_eq "$(cryoA inspect -f '{{.State.Status}}' "$a")" "running" "A's container after -R -e"
expect_eq "$(cryoB container restore -i "$tmp/a.tar.zst")" "$a" "import on B keeps the ID"
copy_init=$(cryoB inspect -f '{{.State.Pid}}' "$a")
[[ $copy_init != "$init_a" ]] || fail "B's copy has A's init"
cg_copy=$(cgroup_of "$copy_init")
expect_eq "$cg_copy" "$parent_b/$a" "cgroup of B's copy"
grep -qx "$init_a" "$(cgroup_dir "$cg_a")/cgroup.procs" || fail "A's init is not in $cg_a"
! grep -qx "$copy_init" "$(cgroup_dir "$cg_a")/cgroup.procs" || fail "B's copy is in A's cgroup"

# Removing A's container ends only A's processes and removes only A's cgroups.
cryoA rm -f -t 0 "$a" >/dev/null
[[ -z $(cgroup_dirs "$cg_a") ]] || fail "A's cgroup left: $(cgroup_dirs "$cg_a")"
[[ -z $(cgroup_dirs "$parent_a") ]] || fail "A's store parent left: $(cgroup_dirs "$parent_a")"
expect_eq "$(cryoB inspect -f '{{.State.Status}}' "$a")" "running" "B's copy after rm on A"
[[ -d /proc/$copy_init ]] || fail "B's copy's init $copy_init is gone"
expect_eq "$(cgroup_of "$copy_init")" "$cg_copy" "B's copy's cgroup after rm on A"
at=$(cryoB logs "$a" | tail -n 1)
wait_until eval '[[ $(cryoB logs "$a" | tail -n 1) -ge $((at + 2)) ]]'

cryoB rm -f -t 0 "$a" >/dev/null
[[ -n $(cgroup_dirs "$parent_b") ]] || fail "B's parent went while B still has a container"
cryoB rm -f -t 0 "$b" >/dev/null
[[ -z $(cgroup_dirs "$parent_b") ]] || fail "B's store parent left: $(cgroup_dirs "$parent_b")"
[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
echo PASS
