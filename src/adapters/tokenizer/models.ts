/**
 * The gateway's tokenizers by model: each model served by a backend with a `tokenizer` field gets
 * one, loaded once however many backends share it.
 */
import { SwitchyardError } from '../../core/errors.ts';
import type { TokenizerConfig } from './config.ts';
import { loadPromptTokenizer, type PromptTokenizer } from './load.ts';

/** What this needs of a backend. */
interface BackendLike {
  readonly id: string;
  readonly models: readonly string[];
  readonly tokenizer?: TokenizerConfig | undefined;
}

/**
 * Loads the tokenizer of every model some backend declares one for. A request's prefix chain is
 * computed once per request, so every backend serving a model must declare the same tokenizer
 * settings (same files, block size and seed); a conflict fails with SY_ERR_INVALID_CONFIG naming
 * both backends.
 */
export function loadModelTokenizers(
  backends: readonly BackendLike[],
  load: (cfg: TokenizerConfig) => PromptTokenizer = loadPromptTokenizer,
): Map<string, PromptTokenizer> {
  const settings = new Map<string, { key: string; owner: string }>();
  const loaded = new Map<string, PromptTokenizer>();
  const byModel = new Map<string, PromptTokenizer>();
  for (const b of backends) {
    if (b.tokenizer === undefined) continue;
    const key = JSON.stringify(b.tokenizer);
    for (const model of b.models) {
      const seen = settings.get(model);
      if (seen !== undefined && seen.key !== key) {
        throw new SwitchyardError(
          'SY_ERR_INVALID_CONFIG',
          `gateway config: backends '${seen.owner}' and '${b.id}' both serve model '${model}' with different tokenizer settings; give them the same`,
          { param: 'tokenizer' },
        );
      }
      settings.set(model, { key, owner: b.id });
      let tokenizer = loaded.get(key);
      if (tokenizer === undefined) {
        tokenizer = load(b.tokenizer);
        loaded.set(key, tokenizer);
      }
      byModel.set(model, tokenizer);
    }
  }
  return byModel;
}
