// `peftc quantize`: writes an HF model as a bitsandbytes 4-bit checkpoint (NF4/FP4,
// optional double quantization) that transformers + bitsandbytes and peftc's --model load.
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { asOutput, checkOutputPath } from '../../io/fs-errors.ts';
import { describeQuantizedBase } from '../../methods/qlora/memory.ts';
import { loadBnb4bitModel, quantizeCheckpoint } from '../../models/bnb4bit.ts';
import { buildLlama } from '../../models/llama/index.ts';
import { BLOCKSIZES_4BIT } from '../../quant/blockwise4.ts';
import { UsageError, UserError } from '../errors.ts';

interface Flags {
  model: string;
  out: string;
  quantType: string;
  blocksize: string;
  doubleQuant?: boolean;
  overwrite?: boolean;
}

export function register(program: Command): void {
  program
    .command('quantize')
    .description('write a model in the bitsandbytes 4-bit safetensors layout (all linears but lm_head)')
    .requiredOption('--model <dir>', 'an HF model directory (config.json + safetensors)')
    .requiredOption('--out <dir>', 'output directory (written atomically)')
    .option(
      '--overwrite',
      'replace an existing --out directory (the old one stays until the new is complete)',
    )
    .option('--quant-type <nf4|fp4>', '4-bit data type', 'nf4')
    .option('--blocksize <n>', `elements per absmax block (${BLOCKSIZES_4BIT.join(', ')})`, '64')
    .option('--double-quant', 'quantize the absmax values too (bnb_4bit_use_double_quant)')
    .action((f: Flags) => {
      if (f.quantType !== 'nf4' && f.quantType !== 'fp4')
        throw new UsageError(`--quant-type must be nf4 or fp4, got '${f.quantType}'`);
      const quantType: 'nf4' | 'fp4' = f.quantType;
      const blocksize = Number(f.blocksize);
      if (!BLOCKSIZES_4BIT.includes(blocksize))
        throw new UsageError(
          `--blocksize must be one of ${BLOCKSIZES_4BIT.join(', ')}, got '${f.blocksize}'`,
        );
      if (!existsSync(f.model) || !statSync(f.model).isDirectory())
        throw new UserError(`--model ${f.model}: not a directory (give an HF model directory)`);
      checkOutputPath('--out', f.out, { kind: 'dir', overwrite: f.overwrite });
      if (resolve(f.out) === resolve(f.model))
        throw new UserError(
          `--out ${f.out} is the --model directory; choose a new directory for the 4-bit model`,
        );
      const r = asOutput('--out', f.out, () =>
        quantizeCheckpoint(f.model, f.out, {
          quantType,
          blocksize,
          doubleQuant: !!f.doubleQuant,
        }),
      );
      // The memory report from the written checkpoint's own buffers, bound as --model would.
      const bnb = loadBnb4bitModel(f.out)!;
      const q = bnb.transform(buildLlama(bnb.config, { batch: 1, seq: 2 }));
      const params = [...r.states.values()].reduce((s, st) => s + st.shape.reduce((a, b) => a * b, 1), 0);
      process.stdout.write(
        `quantized ${r.quantized.length} linear weights (${params} params) to ${f.quantType}` +
          `${f.doubleQuant ? ' + double quant' : ''}, blocksize ${blocksize}; wrote ${f.out}\n` +
          `${describeQuantizedBase(q.graph, q.weights ?? bnb.weights)}\n`,
      );
    });
}
