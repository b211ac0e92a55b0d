export * from './engine.ts';
export * from './pattern.ts';
export * from './rebuild.ts';
