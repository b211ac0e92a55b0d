// Public API of the pass machinery: the pass registry, the pipeline runner, the rewrite
// engine and the generic passes (registered on import).
import './builtin.ts';

export * from './generic/index.ts';
export * from './graph-diff.ts';
export * from './pass.ts';
export * from './phases.ts';
export * from './pipeline.ts';
export * from './rewrite/index.ts';
