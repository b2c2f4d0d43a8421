/**
 * Memory a standby llama engine touches while it waits for its model, and frees just before its
 * context is created (`--standby-reserve-mib`), so that the KV cache's first touch lands on pages the
 * machine has just had in use.
 *
 * Why: creating a context is almost all the first touch of the KV cache (llama.cpp allocates it and
 * clears it at once; 384 MiB for the default 4 x 4,096 tokens of the 606 MB bench model). On a VM
 * that backs guest memory lazily and takes free pages back (virtio-balloon free page reporting,
 * about 2 s after they are freed), touching never-used memory costs the hypervisor's faults: 0.4 to
 * 0.9 s of system time for those 384 MiB on the bench's 2-vCPU VM, even with huge pages. Pages freed a
 * moment earlier are handed out again first and cost a tenth of that (docs/benchmarks.md, "Cold
 * start of the llama engine"). The price: the reserve is resident while the engine stands by.
 *
 * The memory is held by a worker thread: terminating it frees its buffers at once, where a buffer of
 * the main thread would wait for a garbage collection.
 */
import { Worker } from 'node:worker_threads';
import { SwitchyardError } from '../../core/errors.ts';
import { MEMORY_RESERVE_MIB_MAX } from '../../core/standby-reserve.ts';

// The bound lives with the pure sizing (src/core/standby-reserve.ts), where the config reads it too.
export { MEMORY_RESERVE_MIB_MAX };

/** The worker: touches `workerData` MiB, says so, and holds them until it is terminated. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const held = Buffer.allocUnsafeSlow(workerData * 1048576);
held.fill(1);
parentPort.on('message', () => held.length);
parentPort.postMessage('touched');
`;

/** Touched memory held until `release`. */
export class MemoryReserve {
  private constructor(
    private readonly worker: Worker,
    /** Bytes held. */
    readonly bytes: number,
  ) {}

  /**
   * Allocates and touches `mib` MiB (1 to MEMORY_RESERVE_MIB_MAX); settles once every page is in
   * memory. Throws SY_ERR_INVALID_ARGUMENT when the size is out of bounds or the memory cannot be had.
   */
  static async hold(mib: number): Promise<MemoryReserve> {
    if (!Number.isInteger(mib) || mib < 1 || mib > MEMORY_RESERVE_MIB_MAX) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `standby reserve ${mib} MiB: expected an integer from 1 to ${MEMORY_RESERVE_MIB_MAX}`,
        { param: 'standby-reserve-mib' },
      );
    }
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: mib });
    try {
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve());
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the reserve's worker exited ${code}`)));
      });
    } catch (error) {
      await worker.terminate();
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `standby reserve of ${mib} MiB could not be held: ${(error as Error).message}; lower --standby-reserve-mib`,
        { param: 'standby-reserve-mib' },
      );
    }
    // Neither the worker nor its message port keeps the engine alive on their own.
    worker.unref();
    return new MemoryReserve(worker, mib * 1048576);
  }

  /** Frees the memory: settles once the worker has stopped and its buffer is gone. */
  async release(): Promise<void> {
    await this.worker.terminate();
  }
}
