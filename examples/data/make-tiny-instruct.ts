// Generates examples/data/tiny-instruct.jsonl: ~200 prompt/completion pairs of small
// tasks (word reversal, addition, counting letters, repeating) whose answers follow
// from the prompt, for instruction-style fine-tuning where only the completion is learned.
// Deterministic: node bin/run-ts.js examples/data/make-tiny-instruct.ts
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../src/util/rng.ts';

const WORDS = [
  'cat',
  'dog',
  'sun',
  'tree',
  'ball',
  'fish',
  'book',
  'milk',
  'frog',
  'star',
  'moon',
  'cake',
  'boat',
  'bird',
  'hat',
  'duck',
  'rain',
  'door',
  'lamp',
  'kite',
  'apple',
  'bread',
  'river',
  'cloud',
  'house',
  'snow',
  'leaf',
  'shoe',
  'cup',
  'bell',
];

export interface Pair {
  prompt: string;
  completion: string;
}

/** Every pair the tasks can produce (~360), in a fixed order. */
function allPairs(): Pair[] {
  const out: Pair[] = [];
  for (const w of WORDS) {
    out.push({ prompt: `Reverse the word: ${w}\nAnswer:`, completion: ` ${[...w].reverse().join('')}` });
    out.push({ prompt: `How many letters are in "${w}"?\nAnswer:`, completion: ` ${w.length}` });
    for (const n of [2, 3]) {
      out.push({ prompt: `Say "${w}" ${n} times.\nAnswer:`, completion: ` ${Array(n).fill(w).join(' ')}` });
    }
  }
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 10; b++)
      out.push({ prompt: `What is ${a} + ${b}?\nAnswer:`, completion: ` ${a + b}` });
  }
  return out;
}

/** `count` distinct pairs, mixed by a seeded shuffle. */
export function makeTinyInstruct(seed: number, count: number): Pair[] {
  const pairs = allPairs();
  const rng = new Rng(seed);
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [pairs[i], pairs[j]] = [pairs[j], pairs[i]];
  }
  if (count > pairs.length) throw new Error(`only ${pairs.length} distinct pairs exist; asked for ${count}`);
  return pairs.slice(0, count);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tiny-instruct.jsonl');
  const lines = makeTinyInstruct(4321, 200).map((p) => JSON.stringify(p));
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  console.log(`wrote ${file}`);
}
