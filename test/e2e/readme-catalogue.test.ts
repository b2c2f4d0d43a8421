/**
 * The README lists the modelled GPUs and models; this test holds that list to the catalogues
 * (src/model/gpus.ts, src/model/models.ts), in catalogue order, so adding an entry without the
 * README fails here. `SWITCHYARD_WRITE_README=1 node --import tsx --test test/e2e/readme-catalogue.test.ts`
 * rewrites the sentence from the catalogues.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gpuIds } from '../../src/model/gpus.ts';
import { modelIds } from '../../src/model/models.ts';

const README = join(import.meta.dirname, '..', '..', 'README.md');
/** The sentence as written: `GPUs: ... . Models: ... .`, possibly over several lines. */
const SENTENCE = /GPUs: (`[^`]+`(?:,\s+`[^`]+`)*)\.\s+Models: (`[^`]+`(?:,\s+`[^`]+`)*)\./;

function ids(list: string): string[] {
  return [...list.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
}

/** The README sentence for the current catalogues. */
function catalogueSentence(): string {
  const quote = (xs: string[]): string => xs.map((x) => `\`${x}\``).join(', ');
  return `GPUs: ${quote(gpuIds())}. Models: ${quote(modelIds())}.`;
}

test("the README's GPU and model lists are the catalogues', in order", () => {
  let readme = readFileSync(README, 'utf8');
  if (process.env['SWITCHYARD_WRITE_README'] === '1') {
    readme = readme.replace(SENTENCE, catalogueSentence());
    writeFileSync(README, readme);
  }
  const m = SENTENCE.exec(readme);
  assert.ok(m !== null, 'README.md has no "GPUs: `...`. Models: `...`." sentence');
  const hint = `expected in README.md: ${catalogueSentence()}`;
  assert.deepEqual(ids(m[1] as string), gpuIds(), hint);
  assert.deepEqual(ids(m[2] as string), modelIds(), hint);
});
