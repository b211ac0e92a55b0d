// Adapters as their methods register them: finding, merging, enabling and disabling any of them.
export * from './active.ts';
export * from './merge.ts';
export * from './sites.ts';
