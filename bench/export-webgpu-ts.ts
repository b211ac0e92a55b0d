// The exported webgpu-ts package against `peftc logits`, same model, same adapter, one run:
//   node bin/run-ts.js bench/export-webgpu-ts.ts [--model <dir>] [--seq N] [--rounds N]
// Stated config (default): the bundled tiny-llama with a random LoRA adapter (r 8, alpha 16,
// all 7 linears of both layers, unmerged), 16 tokens, f32, this machine's WebGPU adapter
// (lavapipe here). Measured, both in this process (the Vulkan driver started once before
// either is timed), interleaved so load hits both alike:
// - first load: from nothing to the first logits (peftc: open the model, prepare the graph
//   with the adapter, compile on WebGPU, run; package: loadModel, first logits, which
//   creates its pipelines);
// - logits latency: the median of `rounds` calls once loaded;
// - the commands as users run them: `peftc logits` and the package's `node dist/cli.js
//   logits`, each a fresh process (start-up, load, one call, write), median of 3;
// - kernels: dispatches per run of the package (fused as peftc fuses them) against peftc's
//   graph before fusion, and the WGSL programs the package ships;
// - decode tokens/s: greedy generation of `--new` tokens after the same prompt, the package's
//   `generate` against peftc's DecodeSession (generate/generate.ts) over the same cache length
//   (the package's, batch 1), interleaved, median of 3; tokens/s over the decode runs only
//   (first token to last), and the time to the first token (prefill) beside it.
// The package is exported to a temporary directory and built there (buildOffline).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { acquireDevice, WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { runExport } from '../src/cli/commands/export.ts';
import { buildOffline } from '../src/export/webgpu-ts/build-offline.ts';
import type { Model } from '../src/export/webgpu-ts/runtime/runner.ts';
import { DecodeSession, generate } from '../src/generate/index.ts';
import { tensor } from '../src/ir/tensor.ts';
import { bindParams } from '../src/ir/weights.ts';
import { buildLlama } from '../src/models/llama/index.ts';
import { openModel } from '../src/models/open.ts';
import { prepareModel } from '../src/models/prepare.ts';
import { writeRandomAdapter } from '../test/cli/fixtures.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    seq: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '15' },
    new: { type: 'string', default: '32' },
  },
});
const seq = Number(a.seq);
const rounds = Number(a.rounds);
const newTokens = Number(a.new);
const modelDir = resolve(a.model!);
const dir = mkdtempSync(join(tmpdir(), 'peftc-bench-webgpu-ts-'));
const adapter = join(dir, 'adapter');
const pkg = join(dir, 'package');
const opened = openModel(modelDir);
const V = opened.config.vocabSize;
writeRandomAdapter(
  adapter,
  buildLlama(opened.config, { batch: 1, seq: 4 }),
  opened.weights,
  {
    r: 8,
    lora_alpha: 16,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
  modelDir,
);
const ids = Array.from({ length: seq }, (_, i) => (i * 7919) % V);

let t0 = performance.now();
await runExport({ format: 'webgpu-ts', model: modelDir, adapter: [adapter], out: pkg });
const exportMs = performance.now() - t0;
t0 = performance.now();
buildOffline(pkg);
const buildMs = performance.now() - t0;
const runner = (await import(pathToFileURL(join(pkg, 'dist', 'runner.js')).href)) as {
  loadModel: () => Promise<Model>;
};

// First loads, after a device was made and dropped once, so that neither pays the driver's start.
(await acquireDevice()).device.destroy();
t0 = performance.now();
const model = openModel(modelDir);
const { graph, weights } = prepareModel(model, { batch: 1, seq }, { adapters: [adapter] });
const gpu = new WebGpuBackend();
const exe = (await gpu.compile(graph, bindParams(graph, weights))) as WebGpuExecutable;
const feeds = { input_ids: tensor('i32', [1, seq], ids) };
const ref = (await exe.run({ feeds, outputs: ['logits'] })).logits.data as Float32Array;
const peftcFirstMs = performance.now() - t0;
t0 = performance.now();
const exported = await runner.loadModel();
const got = await exported.logits(ids);
const pkgFirstMs = performance.now() - t0;
let diff = 0;
for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i] - ref[i]));

// Latency, interleaved rounds.
const times = { peftc: [] as number[], pkg: [] as number[] };
for (let r = 0; r < rounds; r++) {
  t0 = performance.now();
  await exe.run({ feeds, outputs: ['logits'] });
  times.peftc.push(performance.now() - t0);
  t0 = performance.now();
  await exported.logits(ids);
  times.pkg.push(performance.now() - t0);
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const peftcDispatches = exe.stats.dispatches;
exe.dispose();

// Decode: greedy, the same prompt, the same cache length; token times from the first to the last.
const maxLen = exported.manifest.generation?.maxLen ?? seq + newTokens;
const session = await DecodeSession.create(gpu, model, { batch: 1, maxLen, adapters: [adapter] });
const decode = { peftc: [] as Timed[], pkg: [] as Timed[] };
for (let r = 0; r < 3; r++) {
  decode.peftc.push(
    await timed((onToken) =>
      generate(session, [ids], { maxNewTokens: newTokens, onToken: (_, t) => onToken(t) }).then(
        ([g]) => g.outputIds,
      ),
    ),
  );
  decode.pkg.push(
    await timed((onToken) =>
      exported.generate(ids, { maxNewTokens: newTokens, onToken }).then((g) => g.outputIds),
    ),
  );
}
const sameTokens = decode.peftc.every((d, i) => JSON.stringify(d.ids) === JSON.stringify(decode.pkg[i].ids));
session.dispose();
exported.dispose();
gpu.dispose();

const manifest = exported.manifest;
const rows = [
  {
    name: 'peftc logits (webgpu)',
    first: peftcFirstMs,
    ms: median(times.peftc),
    dispatches: peftcDispatches,
  },
  {
    name: `exported package (${exported.device.target} plans)`,
    first: pkgFirstMs,
    ms: median(times.pkg),
    dispatches: planDispatches(),
  },
];

/** Dispatches of the package's plan for `seq` tokens (the length it pads to). */
function planDispatches(): number {
  const li = manifest.lengths.findIndex((l) => l >= seq);
  const plan = JSON.parse(
    readFileSync(join(pkg, 'model', manifest.plans[exported.device.target][li]), 'utf8'),
  );
  return plan.dispatches.length;
}

interface Timed {
  readonly ids: number[];
  /** Prompt to first token. */
  readonly firstMs: number;
  /** Decode tokens per second, first token to last. */
  readonly tps: number;
}

/** Runs a generation, timing its tokens as `onToken` sees them. */
async function timed(run: (onToken: (t: number) => void) => Promise<number[]>): Promise<Timed> {
  const at: number[] = [];
  const start = performance.now();
  const ids = await run(() => at.push(performance.now()));
  return {
    ids,
    firstMs: at[0] - start,
    tps: (at.length - 1) / ((at[at.length - 1] - at[0]) / 1000),
  };
}
const decodeRow = (xs: Timed[]) => ({
  tokens_per_s_median: median(xs.map((x) => x.tps)),
  first_token_ms_median: median(xs.map((x) => x.firstMs)),
});

// The commands as users run them, each a fresh process (start-up, load, one call, write),
// alternated: `peftc logits` (bin/peftc.js, tsx included) and the package's dist/cli.js.
const tokensFile = join(dir, 'tokens.json');
writeFileSync(tokensFile, JSON.stringify([ids]));
const ENV = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
const commands = {
  peftc: [
    join(import.meta.dirname, '..', 'bin', 'peftc.js'),
    'logits',
    '--model',
    modelDir,
    '--adapter',
    adapter,
    '--tokens',
    tokensFile,
    '--overwrite',
    '--out',
  ],
  pkg: [join(pkg, 'dist', 'cli.js'), 'logits', '--tokens', tokensFile, '--overwrite', '--out'],
};
const wall = { peftc: [] as number[], pkg: [] as number[] };
for (let r = 0; r < 3; r++) {
  for (const k of ['peftc', 'pkg'] as const) {
    t0 = performance.now();
    const p = spawnSync(process.execPath, [...commands[k], join(dir, `${k}.safetensors`)], { env: ENV });
    if (p.status !== 0) throw new Error(`${k} logits failed: ${p.stderr}`);
    wall[k].push(performance.now() - t0);
  }
}

const result = {
  config: { model: a.model, adapter: 'random LoRA r 8 alpha 16, all 7 linears, unmerged', seq, rounds },
  export_ms: exportMs,
  build_ms: buildMs,
  max_abs_diff_vs_peftc: diff,
  padded_to: manifest.lengths.find((l) => l >= seq),
  command_wall_ms_median: { peftc_logits: median(wall.peftc), package_cli: median(wall.pkg) },
  decode: {
    prompt_tokens: seq,
    new_tokens: newTokens,
    cache_slots: maxLen,
    same_tokens: sameTokens,
    peftc_decode_session: decodeRow(decode.peftc),
    package_generate: decodeRow(decode.pkg),
  },
  rows: rows.map((r) => ({
    runner: r.name,
    first_load_ms: r.first,
    logits_ms_median: r.ms,
    dispatches_per_run: r.dispatches,
  })),
  kernels: {
    package_wgsl_programs: manifest.kernels.length,
    package_dispatches_longest: manifest.dispatches.fused,
    peftc_unfused_dispatches_longest: manifest.dispatches.unfused,
    longest: manifest.lengths[manifest.lengths.length - 1],
  },
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'export-webgpu-ts.json'), `${JSON.stringify(result, null, 2)}\n`);
printTable(
  `exported webgpu-ts package vs peftc logits, ${a.model} + LoRA r8 (unmerged), ${seq} tokens, median of ${rounds} interleaved calls`,
  [
    {
      header: 'runner',
      legend: 'peftc in-process (WebGPU backend) or the exported package',
      cell: (r) => r.name,
    },
    {
      header: 'first load ms',
      legend: 'from nothing to the first logits (open/prepare/compile/run; loadModel + first call)',
      cell: (r) => num(r.first, 0),
    },
    { header: 'logits ms', legend: 'median wall time of one call once loaded', cell: (r) => num(r.ms, 2) },
    { header: 'dispatches', legend: 'dispatches per call', cell: (r) => String(r.dispatches) },
  ],
  rows,
  [
    `  package: ${manifest.kernels.length} WGSL programs; at ${result.kernels.longest} tokens ${manifest.dispatches.fused} dispatches per run against ${manifest.dispatches.unfused} for peftc's graph before fusion`,
    `  the commands, each a fresh process (median of 3): peftc logits ${num(median(wall.peftc), 0)} ms, node dist/cli.js logits ${num(median(wall.pkg), 0)} ms`,
    `  decode (greedy, ${seq}-token prompt, ${newTokens} new, ${maxLen} cache slots, median of 3): peftc DecodeSession ${num(result.decode.peftc_decode_session.tokens_per_s_median, 1)} tokens/s (first token ${num(result.decode.peftc_decode_session.first_token_ms_median, 0)} ms), package generate ${num(result.decode.package_generate.tokens_per_s_median, 1)} tokens/s (first token ${num(result.decode.package_generate.first_token_ms_median, 0)} ms); same tokens: ${sameTokens}`,
    `  package pads ${seq} tokens to ${result.padded_to}; max |diff| vs peftc ${diff.toExponential(2)}; export ${num(exportMs, 0)} ms, build ${num(buildMs, 0)} ms`,
  ],
);
