// The generators other tests rely on: valid graphs, broad op coverage, tame feeds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findProblems } from '../../src/ir/verify.ts';
import { arbGraph, indexBound, randomFeeds, randomWeights } from './graphs.ts';

describe('arbGraph', () => {
  it('gives valid graphs with scopes, params of several roles, and named outputs', () => {
    const graphs = fc.sample(arbGraph({ maxNodes: 20 }), { numRuns: 300, seed: 42 });
    const ops = new Set<string>();
    const roles = new Set<string>();
    const scopes = new Set<string>();
    let multiOutput = 0;
    for (const g of graphs) {
      expect(findProblems(g)).toEqual([]);
      expect(g.nodes.length).toBeLessThanOrEqual(20 + 6);
      for (const n of g.nodes) {
        ops.add(n.op);
        scopes.add(n.scope);
      }
      for (const p of g.params()) roles.add(String(p.attrs.role));
      if (g.outputs.length > 1) multiOutput++;
    }
    for (const op of [
      'matmul',
      'linear',
      'add',
      'softmax',
      'reshape',
      'permute',
      'slice',
      'concat',
      'rmsnorm',
    ]) {
      expect(ops).toContain(op);
    }
    expect(ops).toContain('embedding');
    expect(ops.size).toBeGreaterThan(35);
    expect([...roles].sort()).toEqual(['frozen', 'state', 'trainable']);
    expect(scopes.size).toBeGreaterThan(8);
    expect(multiOutput).toBeGreaterThan(50);
  });

  it('floatOnly leaves out every integer tensor', () => {
    for (const g of fc.sample(arbGraph({ floatOnly: true }), { numRuns: 150, seed: 7 })) {
      for (const n of g.nodes) expect(['f32', 'f16', 'bf16']).toContain(n.type.dtype);
      expect(g.nodes.some((n) => n.op === 'cast')).toBe(false);
    }
  });
});

describe('randomFeeds / randomWeights', () => {
  it('give every input and param, deterministic per seed, floats in [-1, 1], indices in range', () => {
    for (const g of fc.sample(arbGraph(), { numRuns: 100, seed: 3 })) {
      const feeds = randomFeeds(g, 5);
      const weights = randomWeights(g, 5);
      for (const n of g.inputs()) {
        const t = feeds[String(n.attrs.name)];
        expect(t.shape).toEqual(n.type.shape);
        expect(t.dtype).toBe(n.type.dtype);
        const bound = n.type.dtype === 'f32' ? 1 : indexBound(g, n.id);
        for (const v of t.data) {
          if (n.type.dtype === 'f32') expect(Math.abs(v)).toBeLessThanOrEqual(bound);
          else expect(v >= 0 && v < bound && Number.isInteger(v)).toBe(true);
        }
      }
      for (const p of g.params()) {
        const t = weights.get(String(p.attrs.name))!;
        expect(t.shape).toEqual(p.type.shape);
        for (const v of t.data) expect(Math.abs(v)).toBeLessThanOrEqual(1);
      }
      expect(randomFeeds(g, 5)).toEqual(feeds);
      expect([...randomWeights(g, 5).map]).toEqual([...weights.map]);
    }
  });

  it('bounds indices by how the graph uses them', () => {
    const g = fc.sample(arbGraph(), { numRuns: 400, seed: 11 }).find((x) => x.ofOp('embedding').length > 0)!;
    const e = g.ofOp('embedding')[0];
    expect(indexBound(g, e.inputs[1])).toBeLessThanOrEqual(g.node(e.inputs[0]).type.shape[0]);
  });
});
