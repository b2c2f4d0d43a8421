/**
 * A test file's set-up as one value: the file's `before` hook starts it, its `after` hook tears it
 * down, and tests read its parts through one object made when the file loads.
 */
import { after, before } from 'node:test';
import type { Teardown } from './cluster.ts';

/**
 * Registers the file's `before` hook, which runs `start(teardown)`, and its `after` hook, which runs
 * `teardown`. Returns an object whose `keys` read the same fields of what `start` made (in tests
 * only: one read before the hook ran throws) and whose `teardown` a test may add what it starts to.
 * Only a type is imported from cluster.ts, so cluster.ts may use this too.
 */
export function fileSetUp<T extends object, K extends keyof T>(
  teardown: Teardown,
  keys: readonly K[],
  start: (teardown: Teardown) => Promise<T>,
): Pick<T, K> & { readonly teardown: Teardown } {
  let started: T | undefined;
  before(async () => {
    started = await start(teardown);
  });
  after(() => teardown.run());
  const view = { teardown } as Pick<T, K> & { readonly teardown: Teardown };
  for (const key of keys) {
    Object.defineProperty(view, key, {
      enumerable: true,
      get: () => {
        if (started === undefined)
          throw new Error(`${String(key)} is read before the file's before hook ran`);
        return started[key];
      },
    });
  }
  return view;
}
