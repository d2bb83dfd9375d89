#!/usr/bin/env bash
# Image commands through the real binary, with private --root/--runroot:
# import busybox, images, inspect, save -> rmi -> load (same ID), oci-archive, a two-layer
# docker-archive with a whiteout mounted through overlayfs, digest mismatch, unknown image errors.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-images-test
mounted=""
extra_cleanup() {
  if [[ -n $mounted ]]; then umount "$mounted" || true; fi
}

# --- import (through the shared script, which must be idempotent) ---
BUSYBOX_TAR=$tmp/busybox.tar CRYO=$cryo_bin bash "$src/scripts/import-busybox-image.sh" \
  --root "$tmp/root" --runroot "$tmp/run"
BUSYBOX_TAR=$tmp/busybox.tar CRYO=$cryo_bin bash "$src/scripts/import-busybox-image.sh" \
  --root "$tmp/root" --runroot "$tmp/run"
[[ $(cryo images -q | wc -l) == 1 ]] || fail "the import script imported twice"

id=$(cryo image inspect busybox | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Id"])')
[[ $id =~ ^[0-9a-f]{64}$ ]] || fail "bad image id '$id'"

listing=$(cryo images)
head -1 <<<"$listing" | grep -Eq '^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$' || fail "header: $listing"
grep -Eq "^localhost/busybox +latest +${id:0:12} +.* ago +[0-9.]+ [kM]B$" <<<"$listing" ||
  fail "images row: $listing"
expect_eq "$(cryo images -q)" "${id:0:12}" "images -q"
expect_eq "$(cryo image ls --format json | python3 -c \
  'import json,sys; i=json.load(sys.stdin)[0]; print(i["Id"], i["Names"][0])')" \
  "$id localhost/busybox:latest" "image ls --format json"

expect_eq "$(cryo images --format '{{.Repository}}:{{.Tag}} {{.ID}}')" "localhost/busybox:latest ${id:0:12}" \
  "images --format template"
expect_eq "$(cryo images --format 'table {{.Repository}}\t{{.Tag}}' | head -1)" "REPOSITORY         TAG" \
  "images --format table header"
expect_eq "$(cryo image inspect --format '{{.Config.Cmd}} {{json .RootFS.Type}} {{.Os}}' busybox)" \
  '[sh] "layers" linux' "image inspect --format template"

# --- inspect ---
cryo image inspect localhost/busybox:latest >"$tmp/inspect.json"
python3 - "$tmp/inspect.json" "$id" "$tmp/root" <<'EOF'
import json, os, sys
path, image_id, root = sys.argv[1:]
(img,) = json.load(open(path))
assert img["Id"] == image_id, img["Id"]
assert img["RepoTags"] == ["localhost/busybox:latest"], img["RepoTags"]
assert img["Config"]["Cmd"] == ["sh"], img["Config"]
assert img["RootFS"]["Type"] == "layers" and len(img["RootFS"]["Layers"]) == 1, img["RootFS"]
assert img["Architecture"] == "amd64" and img["Os"] == "linux"
assert img["Digest"].startswith("sha256:")
assert img["Size"] > 1000000, img["Size"]
layer = img["RootFS"]["Layers"][0].split(":")[1]
diff = os.path.join(root, "layers", layer, "diff")
assert os.path.realpath(os.path.join(diff, "bin/sh")).endswith("/bin/busybox")
assert "Hello from cryo" in open(os.path.join(diff, "www/index.html")).read()
assert "nobody" in open(os.path.join(diff, "etc/passwd")).read()
EOF
layer_dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["RootFS"]["Layers"][0][7:])' \
  "$tmp/inspect.json")
[[ -d $tmp/root/layers/$layer_dir/diff ]] || fail "layer dir missing"

# --- save (docker-archive) -> rmi -> load ---
cryo save -o "$tmp/busybox-docker.tar" busybox
members=$(tar -tf "$tmp/busybox-docker.tar")
grep -qx manifest.json <<<"$members" || fail "docker-archive has no manifest.json"
grep -qx "$id.json" <<<"$members" || fail "docker-archive has no config"
out=$(cryo rmi busybox)
expect_eq "$out" $'Untagged: localhost/busybox:latest\nDeleted: '"$id" "rmi output"
[[ ! -e $tmp/root/layers/$layer_dir ]] || fail "rmi left the layer dir"
[[ -z $(cryo images -q) ]] || fail "image still listed after rmi"
expect_eq "$(cryo load -i "$tmp/busybox-docker.tar" 2>/dev/null)" "Loaded image: localhost/busybox:latest" \
  "load output"
expect_eq "$(cryo images -q --no-trunc)" "sha256:$id" "ID after docker-archive round trip"

# --- oci-archive round trip through `image` subcommands ---
cryo image save --format oci-archive -o "$tmp/busybox-oci.tar" localhost/busybox
members=$(tar -tf "$tmp/busybox-oci.tar")
for member in oci-layout index.json "blobs/sha256/$id"; do
  grep -qx "$member" <<<"$members" || fail "oci-archive lacks $member"
done
cryo image rm "${id:0:8}" >/dev/null
cryo image load -q -i "$tmp/busybox-oci.tar" >/dev/null
expect_eq "$(cryo images -q --no-trunc)" "sha256:$id" "ID after oci-archive round trip"

# --- save to a pipe, load from stdin, image exists ---
cryo save busybox | cryo load -q >/dev/null
cryo image exists busybox || fail "image exists busybox"
if cryo image exists nosuch; then fail "image exists nosuch"; fi
cryo save --format oci-archive busybox >"$tmp/piped-oci.tar"
cryo rmi busybox >/dev/null
cryo load <"$tmp/piped-oci.tar" >/dev/null 2>&1
expect_eq "$(cryo images -q --no-trunc)" "sha256:$id" "ID after save to stdout / load from stdin"

# --- an OCI layout with a gzip-compressed layer (blob digest != diff_id) ---
mkdir -p "$tmp/oci/blobs/sha256" "$tmp/ocirootfs/etc"
echo "from oci" >"$tmp/ocirootfs/etc/motd"
tar -C "$tmp/ocirootfs" -cf "$tmp/ocilayer.tar" etc
diff_id=$(sha256sum "$tmp/ocilayer.tar" | cut -d' ' -f1)
gzip -c "$tmp/ocilayer.tar" >"$tmp/ocilayer.tar.gz"
blob=$(sha256sum "$tmp/ocilayer.tar.gz" | cut -d' ' -f1)
cp "$tmp/ocilayer.tar.gz" "$tmp/oci/blobs/sha256/$blob"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["cat","/etc/motd"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$tmp/oci/config"
config=$(sha256sum "$tmp/oci/config" | cut -d' ' -f1)
mv "$tmp/oci/config" "$tmp/oci/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(stat -c %s "$tmp/oci/blobs/sha256/$config")" "$blob" "$(stat -c %s "$tmp/ocilayer.tar.gz")" \
  >"$tmp/oci/manifest"
manifest=$(sha256sum "$tmp/oci/manifest" | cut -d' ' -f1)
mv "$tmp/oci/manifest" "$tmp/oci/blobs/sha256/$manifest"
echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"quay.io/cryo/motd:v1"}}]}' \
  "$manifest" "$(stat -c %s "$tmp/oci/blobs/sha256/$manifest")" >"$tmp/oci/index.json"
tar -C "$tmp/oci" -czf "$tmp/oci.tar.gz" .
expect_eq "$(cryo load -i "$tmp/oci.tar.gz" 2>/dev/null)" "Loaded image: quay.io/cryo/motd:v1" "OCI gzip load"
expect_eq "$(cryo image inspect quay.io/cryo/motd:v1 | python3 -c \
  'import json,sys; i=json.load(sys.stdin)[0]; print(i["Id"], i["RootFS"]["Layers"][0])')" \
  "$config sha256:$diff_id" "OCI image id and diff_id"
expect_eq "$(cat "$tmp/root/layers/$diff_id/diff/etc/motd")" "from oci" "OCI layer content"
cryo rmi motd:v1 >/dev/null

# --- compressed rootfs tarballs share the layer; concurrent imports are safe (flock) ---
gzip -c "$tmp/busybox.tar" >"$tmp/busybox.tar.gz"
pids=()
for n in 1 2 3 4; do
  cryo import -c "ENV N=$n" -c 'CMD ["sh", "-c", "echo hi"]' "$tmp/busybox.tar.gz" "par:$n" \
    >"$tmp/par$n.out" 2>/dev/null &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a parallel import failed"; done
for n in 1 2 3 4; do
  cryo image inspect "par:$n" | python3 -c '
import json, sys
(img,) = json.load(sys.stdin)
assert "N=%s" % sys.argv[1] in img["Config"]["Env"], img["Config"]
assert img["Config"]["Cmd"] == ["sh", "-c", "echo hi"], img["Config"]
assert img["Id"] == open(sys.argv[2]).read().strip(), "import did not print the ID"
' "$n" "$tmp/par$n.out" || fail "par:$n"
done
expect_eq "$(ls "$tmp/root/layers")" "$layer_dir" "layers after gzip imports (one shared layer)"
expect_eq "$(cryo images -q | wc -l)" 5 "image count after parallel imports"
cryo rmi par:1 par:2 par:3 par:4 >/dev/null
expect_eq "$(ls "$tmp/root/layers")" "$layer_dir" "busybox layer kept while busybox uses it"

# --- a two-layer docker-archive whose upper layer whites out a file; overlayfs must hide it ---
mkdir -p "$tmp/l1/etc" "$tmp/l1/data" "$tmp/l2/etc" "$tmp/l2/data" "$tmp/arch"
echo keep >"$tmp/l1/etc/keep"
echo gone >"$tmp/l1/etc/gone"
echo old >"$tmp/l1/data/old"
: >"$tmp/l2/etc/.wh.gone"
: >"$tmp/l2/data/.wh..wh..opq"
echo new >"$tmp/l2/data/new"
tar -C "$tmp/l1" -cf "$tmp/arch/l1.tar" etc data
tar -C "$tmp/l2" -cf "$tmp/arch/l2.tar" etc data
d1=$(sha256sum "$tmp/arch/l1.tar" | cut -d' ' -f1)
d2=$(sha256sum "$tmp/arch/l2.tar" | cut -d' ' -f1)
cat >"$tmp/arch/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},
 "rootfs":{"type":"layers","diff_ids":["sha256:$d1","sha256:$d2"]}}
EOF
cat >"$tmp/arch/manifest.json" <<EOF
[{"Config":"config.json","RepoTags":["two:layers"],"Layers":["l1.tar","l2.tar"]}]
EOF
tar -C "$tmp/arch" -cf "$tmp/two.tar" manifest.json config.json l1.tar l2.tar
expect_eq "$(cryo load -i "$tmp/two.tar" 2>/dev/null)" "Loaded image: docker.io/library/two:layers" \
  "two-layer load"
mapfile -t layers < <(cryo image inspect two:layers | python3 -c \
  'import json,sys; [print(l[7:]) for l in json.load(sys.stdin)[0]["RootFS"]["Layers"]]')
expect_eq "${layers[*]}" "$d1 $d2" "layer order"
mkdir -p "$tmp/merged"
mount -t overlay overlay -o "lowerdir=$tmp/root/layers/$d2/diff:$tmp/root/layers/$d1/diff" "$tmp/merged"
mounted=$tmp/merged
[[ -f $tmp/merged/etc/keep && ! -e $tmp/merged/etc/gone ]] || fail "whiteout not honoured by overlayfs"
[[ -f $tmp/merged/data/new && ! -e $tmp/merged/data/old ]] || fail "opaque dir not honoured by overlayfs"
umount "$tmp/merged"
mounted=""

# --- a layer that does not match its diff_id loads nothing ---
echo tampered >>"$tmp/l2/data/new"
tar -C "$tmp/l2" -cf "$tmp/arch/l2.tar" etc data
sed -i 's/two:layers/bad:layers/' "$tmp/arch/manifest.json"
tar -C "$tmp/arch" -cf "$tmp/bad.tar" manifest.json config.json l1.tar l2.tar
before=$(ls "$tmp/root/layers" | sort)
if err=$(cryo load -i "$tmp/bad.tar" 2>&1); then fail "tampered archive loaded"; fi
grep -q "digest mismatch" <<<"$err" || fail "mismatch message: $err"
expect_eq "$(ls "$tmp/root/layers" | sort)" "$before" "layers after a failed load"
if cryo image inspect bad:layers >/dev/null 2>&1; then fail "bad:layers exists"; fi

# --- unknown images ---
rc=0
err=$(cryo image inspect nosuch 2>&1) || rc=$?
expect_eq "$rc" 125 "image inspect exit code"
expect_eq "$err" "Error: nosuch: image not known" "image inspect message"
rc=0
err=$(cryo rmi nosuch 2>&1) || rc=$?
expect_eq "$rc" 1 "rmi exit code"
expect_eq "$err" "Error: nosuch: image not known" "rmi message"

# --- an image used by a container is not removed ---
mkdir -p "$tmp/root/containers/abc123"
echo "{\"image_id\": \"$id\"}" >"$tmp/root/containers/abc123/config.json"
rc=0
err=$(cryo rmi busybox 2>&1) || rc=$?
expect_eq "$rc" 2 "rmi of an image in use"
expect_eq "$err" "Error: image used by abc123: image is in use by a container" "rmi in use message"
rm -rf "$tmp/root/containers/abc123"

# --- prune removes unnamed images only (without -a) ---
unnamed=$(cryo import -q "$tmp/busybox.tar.gz")
expect_eq "$(cryo images -q --no-trunc --filter dangling=true)" "sha256:$unnamed" "images --filter dangling"
expect_eq "$(cryo images -q --filter 'reference=busy*')" "${id:0:12}" "images --filter reference"
expect_eq "$(cryo image prune -f)" "$unnamed" "image prune output"
cryo image exists busybox || fail "prune removed a named image"

cryo rmi -a >/dev/null
[[ -z $(ls "$tmp/root/layers") ]] || fail "rmi -a left layers: $(ls "$tmp/root/layers")"
echo "images: all checks passed"
