/** Flags naming a catalogue GPU or model take vendor and Hugging Face names and yield ids. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { gpuFlag, gpuFlagHelp, modelFlag, modelFlagHelp, servedModelFlag } from './catalogue-flags.ts';

describe('catalogue flags', () => {
  it('yield the catalogue id of a vendor or Hugging Face name', () => {
    assert.equal(gpuFlag('h100'), 'h100');
    assert.equal(gpuFlag('NVIDIA H100 80GB HBM3'), 'h100');
    assert.equal(modelFlag('meta-llama/Llama-2-7b-hf'), 'llama-2-7b');
  });

  it('turn a refusal into a usage error with its message and the catalogue code', () => {
    assert.throws(
      () => gpuFlag('H100 NVL'),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError);
        assert.match(
          error.message,
          /^unknown gpu 'H100 NVL': the catalogue models h100 .*; valid: .*\. \[SY_ERR_UNKNOWN_NAME\]$/,
        );
        return true;
      },
    );
    // 'llama3.1-8b' resolves since fd251e1 (no '-' before the version); a misspelling still gets a hint.
    assert.equal(modelFlag('llama3.1-8b'), 'llama-3.1-8b');
    assert.throws(() => modelFlag('lama-3.1-8b'), /did you mean 'llama-3\.1-8b'\?/);
  });

  it('a served model flag is checked like a model flag but keeps the name as typed', () => {
    assert.equal(servedModelFlag('meta-llama/Llama-2-7b-hf'), 'meta-llama/Llama-2-7b-hf');
    assert.throws(() => servedModelFlag('lama-3.1-8b'), InvalidArgumentError);
  });

  it('help lists the ids and says other names are read as them', () => {
    assert.match(gpuFlagHelp('GPU'), /^GPU: a100-40gb, .*a40 \(nvidia-smi names/);
    assert.match(modelFlagHelp('model'), /^model: llama-2-7b, .*\(Hugging Face names/);
  });
});
