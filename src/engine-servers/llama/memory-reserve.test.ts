import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MEMORY_RESERVE_MIB_MAX, MemoryReserve } from './memory-reserve.ts';

test('a reserve holds whole MiB within its bound, and refuses other sizes by name', async () => {
  for (const mib of [0, -1, 1.5, MEMORY_RESERVE_MIB_MAX + 1, Number.NaN]) {
    await assert.rejects(MemoryReserve.hold(mib), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.match(error.message, /standby reserve .* MiB: expected an integer from 1 to 65536/);
      return true;
    });
  }
  const reserve = await MemoryReserve.hold(2);
  assert.equal(reserve.bytes, 2 * 1048576);
  await reserve.release();
  // Released twice (a failed start's clean-up after a release) is not an error.
  await reserve.release();
});
