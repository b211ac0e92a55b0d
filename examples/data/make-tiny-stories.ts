// Generates examples/data/tiny-stories.txt: short, original children's-story
// paragraphs from templates and small word lists (a small, repetitive vocabulary,
// so a tiny byte-level model can visibly learn it in a few hundred steps).
// Deterministic: node bin/run-ts.js examples/data/make-tiny-stories.ts
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../src/util/rng.ts';

const NAMES = ['Tom', 'Mia', 'Ben', 'Lily', 'Sam', 'Anna', 'Max', 'Zoe', 'Leo', 'Emma'];
const ANIMALS = ['cat', 'dog', 'bird', 'frog', 'duck', 'bunny', 'fox', 'bear', 'fish', 'mouse'];
const PLACES = ['the park', 'the garden', 'the woods', 'the beach', 'the farm', 'the hill', 'the pond'];
const THINGS = [
  'a red ball',
  'a big box',
  'a little boat',
  'a blue kite',
  'a shiny stone',
  'a soft hat',
  'a toy car',
];
const FEELINGS = ['happy', 'sad', 'sleepy', 'brave', 'scared', 'proud', 'hungry'];
const WEATHER = ['sunny', 'rainy', 'windy', 'cold', 'warm'];
const FOODS = ['an apple', 'some bread', 'a cookie', 'some soup', 'a pear', 'some milk'];
const ACTS = ['ran', 'jumped', 'played', 'sang', 'danced', 'looked around'];

type Pick = <T>(xs: readonly T[]) => T;

const STORIES: Array<(p: Pick) => string> = [
  (p) => {
    const n = p(NAMES);
    const a = p(ANIMALS);
    const t = p(THINGS);
    return (
      `Once upon a time, there was a little ${a} named ${n}. ${n} liked to play in ${p(PLACES)}. ` +
      `One day, ${n} found ${t}. ${n} was very ${p(FEELINGS)}. ` +
      `${n} took ${t} home and showed it to mom. Mom smiled and said, "What a good find!"`
    );
  },
  (p) => {
    const n = p(NAMES);
    const m = p(NAMES.filter((x) => x !== n));
    return (
      `It was a ${p(WEATHER)} day. ${n} and ${m} went to ${p(PLACES)}. ` +
      `They ${p(ACTS)} and ${p(ACTS)} all day. Then ${m} was ${p(FEELINGS)}. ` +
      `${n} gave ${m} ${p(FOODS)}. "Thank you," said ${m}. They were good friends.`
    );
  },
  (p) => {
    const a = p(ANIMALS);
    const b = p(ANIMALS.filter((x) => x !== a));
    return (
      `A ${a} lived near ${p(PLACES)}. The ${a} wanted a friend. ` +
      `One day the ${a} met a ${b}. "Do you want to play?" asked the ${a}. ` +
      `"Yes!" said the ${b}. The ${a} and the ${b} ${p(ACTS)} together. Now the ${a} was not alone.`
    );
  },
  (p) => {
    const n = p(NAMES);
    const t = p(THINGS);
    return (
      `${n} had ${t}. ${n} loved it very much. One day, ${n} lost it in ${p(PLACES)}. ` +
      `${n} was ${p(FEELINGS)} and looked for it. A kind ${p(ANIMALS)} came to help. ` +
      `Together they found it under a tree. ${n} said, "Thank you, friend!"`
    );
  },
  (p) => {
    const n = p(NAMES);
    const f = p(FOODS);
    return (
      `${n} was hungry. Mom said, "Let us make lunch." ${n} helped mom. ` +
      `They had ${f} and ${p(FOODS.filter((x) => x !== f))}. ${n} ate it all. ` +
      `After lunch, ${n} went to ${p(PLACES)} and ${p(ACTS)}. It was a ${p(WEATHER)} and happy day.`
    );
  },
  (p) => {
    const n = p(NAMES);
    const a = p(ANIMALS);
    return (
      `At night, ${n} could not sleep. ${n} was ${p(FEELINGS)}. ` +
      `Then a little ${a} came to the window. The ${a} sang a soft song. ` +
      `${n} closed her eyes and smiled. Soon ${n} was asleep. The ${a} went home to ${p(PLACES)}.`
    ).replace(
      / her /,
      n === 'Tom' || n === 'Ben' || n === 'Sam' || n === 'Max' || n === 'Leo' ? ' his ' : ' her ',
    );
  },
];

export function makeTinyStories(seed: number, targetBytes: number): string {
  const rng = new Rng(seed);
  const p: Pick = (xs) => xs[Math.floor(rng.next() * xs.length)];
  const out: string[] = [];
  let size = 0;
  while (size < targetBytes) {
    const s = STORIES[Math.floor(rng.next() * STORIES.length)](p);
    out.push(s);
    size += s.length + 2;
  }
  return `${out.join('\n\n')}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tiny-stories.txt');
  fs.writeFileSync(file, makeTinyStories(1234, 60_000));
  console.log(`wrote ${file}`);
}
