export * from './builder.ts';
export * from './dtype.ts';
export * from './graph.ts';
export * from './ops/index.ts';
export * from './printer.ts';
export * from './shape.ts';
export * from './tensor.ts';
export * from './verify.ts';
