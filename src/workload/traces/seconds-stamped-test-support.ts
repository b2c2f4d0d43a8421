import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Test support: writes `dir/conv-seconds.jsonl`, a Mooncake file of 200 requests 0.5 s apart but
 * stamped in seconds (0, 0.5, 1, ...) where the format counts ms, so it reads as 2000 req/s: the
 * wrong-unit file that `sim --trace` and `bench --trace` warn about. Returns its path.
 */
export function writeSecondsStampedMooncake(dir: string): string {
  const file = join(dir, 'conv-seconds.jsonl');
  const rows = Array.from(
    { length: 200 },
    (_, i) => `{"timestamp": ${i * 0.5}, "input_length": 64, "output_length": 8, "hash_ids": [${i}]}`,
  );
  writeFileSync(file, `${rows.join('\n')}\n`);
  return file;
}
