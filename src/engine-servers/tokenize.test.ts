/** ggufTokenizerInfo: vLLM's /tokenizer_info fields from a GGUF's tokenizer metadata. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ggufTokenizerInfo } from './tokenize.ts';

describe('ggufTokenizerInfo', () => {
  const tokens = ['<unk>', '<s>', '</s>', 'a'];

  it('an SPM GGUF with a chat template: the strings, ids, template and LlamaTokenizerFast', () => {
    const info = ggufTokenizerInfo(
      {
        ggml: { model: 'llama', tokens, bos_token_id: 1, eos_token_id: 2, unknown_token_id: 0 },
        chat_template: '{{ messages }}',
      },
      2048,
      true,
    );
    assert.deepEqual(info, {
      add_bos_token: true,
      add_eos_token: false,
      bos_token: '<s>',
      eos_token: '</s>',
      pad_token: null,
      unk_token: '<unk>',
      bos_token_id: 1,
      eos_token_id: 2,
      model_max_length: 2048,
      tokenizer_class: 'CachedLlamaTokenizerFast',
      chat_template: '{{ messages }}',
    });
  });

  it('no template, no special tokens, another tokenizer model: nulls, no chat_template key', () => {
    const info = ggufTokenizerInfo({ ggml: { model: 'bert', tokens, padding_token_id: 3 } }, 512, false);
    assert.equal(info.bos_token, null);
    assert.equal(info.eos_token, null);
    assert.equal(info.pad_token, 'a');
    assert.equal(info.add_bos_token, false);
    assert.equal(info.tokenizer_class, 'CachedPreTrainedTokenizerFast');
    assert.equal('chat_template' in info, false);
    assert.equal(ggufTokenizerInfo(undefined, 1, false).eos_token, null);
  });
});
