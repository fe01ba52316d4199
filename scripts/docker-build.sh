#!/usr/bin/env bash
# Builds static ppserver, ppclient, myjobs and wordcount (user programs
# that ship themselves to the nodes) binaries and the FROM-scratch image, in one command.
#   scripts/docker-build.sh            -> image ppcluster:latest (or $PP_IMAGE)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${PP_IMAGE:-ppcluster:latest}
target="$(uname -m)-unknown-linux-gnu"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --profile dist --target "$target" -p ppserver -p ppcli -p myjobs
mkdir -p target/docker
cp "target/$target/dist/ppserver" "target/$target/dist/ppclient" "target/$target/dist/myjobs" \
    "target/$target/dist/wordcount" target/docker/
docker build --quiet -t "$image" . >/dev/null
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "built $image ($((size / 1024 / 1024)) MB)"
