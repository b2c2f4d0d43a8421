#!/usr/bin/env bash
# Re-packs the stand-in packages after a change under src/ (for example a new node-llama-cpp
# version: bump it in src/linux-*/package.json, in the root package.json's dependency and in the
# tarball names of its "overrides"), then run `npm install` at the root to refresh the lockfile.
# npm pack writes fixed timestamps, so an unchanged folder packs to the same bytes and integrity.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rm -f "$here"/*.tgz
for dir in "$here"/src/*/; do
  (cd "$dir" && npm pack --silent --pack-destination "$here" >/dev/null)
done
ls -l "$here"/*.tgz
