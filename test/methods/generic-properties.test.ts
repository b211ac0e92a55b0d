// Every registered method runs the generic properties it promises.
import { describe, expect, it } from 'vitest';
import { methods } from '../../src/methods/index.ts';
import { methodProperties } from './properties.ts';

describe('method registry', () => {
  it('has the library methods', () => expect(methods().map((m) => m.name)).toContain('lora'));
});

for (const m of methods()) methodProperties(m);
