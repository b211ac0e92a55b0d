// Public API of the methods: the registry, target selection, LoRA (registered on
// import), and recipes. Importing this module registers the built-in passes too.
import '../passes/builtin.ts';
import './lora/index.ts';
import './qlora/index.ts';
import './dora/index.ts';
import './longlora/index.ts';
import './loraplus/index.ts';
import './adalora/index.ts';
import './malora/index.ts';
import './malora-moe/index.ts';
import './galore/index.ts';
import './rank-rule/index.ts';
import './gora/index.ts';

export * from './adapters/index.ts';
export * from './conflicts.ts';
export * from './recipe.ts';
export * from './recipe-bind.ts';
export * from './registry.ts';
export * from './targets.ts';
