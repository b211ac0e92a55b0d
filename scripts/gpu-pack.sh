#!/usr/bin/env bash
# Packs what the benchmarks need to run on a lent GPU machine (no npm registry there,
# and node_modules is far over the 64 MiB carry limit): the benches bundled by
# esbuild into .gpu-build/bench/*.mjs, plus the webgpu package with only its
# linux-x64 Dawn binary. Carry [".gpu", ".gpu-build"] and run, from the repo root:
#   source .gpu/unpack.sh; node .gpu-build/bench/all.mjs
# (.gpu comes from ../shared/gpu/bundle.sh: Node and the Vulkan loader.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-build
rm -rf "$out"
mkdir -p "$out/bench" "$out/node_modules/webgpu/dist"
npx esbuild bench/run.ts bench/quant4.ts bench/train.ts bench/profile-step.ts \
  --bundle --platform=node --format=esm --target=node20 --outdir="$out/bench" --out-extension:.js=.mjs \
  --external:webgpu --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
cat > "$out/bench/all.mjs" <<'JS'
// Runs every bundled benchmark in its own process (each owns a WebGPU device).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
let failed = 0;
for (const b of ['run', 'quant4', 'train']) {
  console.log(`\n== ${b}`);
  const r = spawnSync(process.execPath, [join(import.meta.dirname, `${b}.mjs`), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
JS
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$out/node_modules/webgpu/"
cp -r node_modules/webgpu/dist/linux-x64 "$out/node_modules/webgpu/dist/"
# Bare imports of 'webgpu' from .gpu-build/bench resolve through .gpu-build/node_modules.
du -sh "$out"
