export * from './block-pool.ts';
export * from './deque.ts';
export * from './engine-core.ts';
export * from './prefix.ts';
export * from './types.ts';
