/**
 * Running the `switchyard` CLI inside a unit test's own process: its exit code and what it wrote to
 * stderr. Not stdout: the test runner reports through it. Only for runs that end before serving or
 * simulating for long (usage errors, short runs).
 */
import { mock } from 'node:test';
import { main } from './main.ts';

/** `switchyard ...args` in this process, capturing stderr. */
export async function runCliInProcess(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const write = mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { code: await main(['node', 'switchyard', ...args]), stderr };
  } finally {
    write.mock.restore();
  }
}
