/**
 * A test file's set-up as one value: the file's `before` hook starts it, its `after` hook tears it
 * down, and tests read its parts through one object made when the file loads.
 */
import { after, before } from 'node:test';
import type { Teardown } from './cluster.ts';

/**
 * Registers the file's `before` hook, which runs `start(teardown)`, and its `after` hook, which runs
 * `teardown`. The object returned reads each of `keys` from what `start` made (list every field:
 * the hook fails if one is left out; a read before the hook ran throws) and holds `teardown`, to
 * which a test may add what it starts.
 * Only a type is imported from cluster.ts, so cluster.ts may use this too.
 */
export function fileSetUp<T extends object>(
  teardown: Teardown,
  keys: readonly (keyof T)[],
  start: (teardown: Teardown) => Promise<T>,
): Readonly<T> & { readonly teardown: Teardown } {
  let started: T | undefined;
  before(async () => {
    started = await start(teardown);
    const unread = Object.keys(started).filter((key) => !keys.includes(key as keyof T));
    if (unread.length > 0) throw new Error(`fileSetUp: keys leave out ${unread.join(', ')}`);
  });
  after(() => teardown.run());
  const view = { teardown } as Readonly<T> & { readonly teardown: Teardown };
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
