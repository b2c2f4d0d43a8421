/**
 * Helpers for reading catalogue names as users write them: copied from vLLM's `--model`, a Hugging
 * Face page or `nvidia-smi`. The catalogues (models.ts, gpus.ts) own which names mean which entry;
 * this file only normalises spelling, builds the refusal and suggests near names.
 */
import { SwitchyardError } from '../core/errors.ts';

/** Longest name read: a bound on the work of a suggestion (edit distance is quadratic). */
export const NAME_CHARS_MAX = 200;
/** Most "did you mean" suggestions in one message. */
export const SUGGESTIONS_MAX = 3;

/** Lower case, trimmed, runs of spaces and underscores as one `-`. */
export function normalizeName(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[\s_]+/g, '-');
}

/**
 * The checkpoint a model name names, as it is copied from where a run was set up: a Hugging Face
 * address (`https://huggingface.co/meta-llama/Llama-2-7b-hf`, `/tree/main` after it), a name with a
 * revision (`meta-llama/Llama-2-7b-hf@main`, `@<commit>`: a revision changes weights, not
 * config.json's shapes), or the local folder vLLM's `--model` was given (`/models/Llama-2-7b-hf`,
 * the Hub cache's `.../models--meta-llama--Llama-2-7b-hf/snapshots/<commit>`), which benchmark
 * results record as the model. Gives `org/name` or `name`, spelling kept; any other name unchanged.
 */
export function checkpointName(name: string): string {
  let s = name.trim().slice(0, NAME_CHARS_MAX * 2);
  s = s.replace(/^(?:https?:\/\/)?(?:www\.)?(?:huggingface\.co|hf\.co)\//i, '');
  s = s.replace(/\/(?:tree|blob|resolve|commit)\/.*$/, '');
  s = s.replace(/@[\w.-]+$/, '');
  s = s.replace(/\/+$/, '');
  const cache = /(?:^|\/)models--([^/]+?)--([^/]+)(?:\/|$)/.exec(s);
  if (cache !== null) return `${cache[1]}/${cache[2]}`;
  const isPath = /^(?:\/|\.{1,2}\/|~\/)/.test(s) || s.split('/').length > 2;
  return isPath ? s.slice(s.lastIndexOf('/') + 1) : s;
}

/** The digit groups of a name, e.g. `llama-3.1-8b` gives `3,1,8`: sizes and versions a suggestion must keep. */
function digitGroups(name: string): string {
  return (name.match(/\d+/g) ?? []).join(',');
}

/** Levenshtein distance (insertions, deletions and substitutions cost 1). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * Catalogue ids close to `name`, nearest first (at most SUGGESTIONS_MAX): a key within a small edit
 * distance that keeps the name's numbers (so `llama-2-13b` never suggests `llama-2-7b`), or a key the
 * name starts with at a `-` boundary (`mixtral-8x7b-instruct` suggests `mixtral-8x7b`). `keys` maps
 * each spelling (normalised) to its id.
 */
export function closeIds(name: string, keys: ReadonlyMap<string, string>): string[] {
  const wanted = normalizeName(name).slice(0, NAME_CHARS_MAX);
  const base = wanted.slice(wanted.lastIndexOf('/') + 1);
  const distanceMax = Math.min(3, Math.max(1, Math.floor(base.length / 5)));
  const best = new Map<string, number>();
  for (const [key, id] of keys) {
    const keyBase = key.slice(key.lastIndexOf('/') + 1);
    let score = Number.POSITIVE_INFINITY;
    if (digitGroups(keyBase) === digitGroups(base)) {
      const d = editDistance(base, keyBase);
      if (d <= distanceMax) score = d;
    }
    if (base.startsWith(`${keyBase}-`) || (base.length >= 3 && keyBase.startsWith(base)))
      score = Math.min(score, 4);
    if (score < (best.get(id) ?? Number.POSITIVE_INFINITY)) best.set(id, score);
  }
  return [...best]
    .sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1))
    .slice(0, SUGGESTIONS_MAX)
    .map(([id]) => id);
}

/**
 * SY_ERR_UNKNOWN_NAME for a name no catalogue entry answers to: `unknown <kind> '<value>'`, then why
 * (`detail`, e.g. the PCIe card is not the SXM entry), then "did you mean" when some id is close,
 * then the valid ids. `details.valid` and `details.suggestions` carry the lists for programs.
 */
export function unknownCatalogueName(
  kind: string,
  value: string,
  valid: readonly string[],
  options: { detail?: string; suggestions?: readonly string[]; ambiguous?: boolean } = {},
): SwitchyardError {
  const shown = value.length > NAME_CHARS_MAX ? `${value.slice(0, NAME_CHARS_MAX)}…` : value;
  const suggestions = options.suggestions ?? [];
  const parts = [`${options.ambiguous === true ? 'ambiguous' : 'unknown'} ${kind} '${shown}'`];
  if (options.detail !== undefined) parts.push(`: ${options.detail}`);
  if (suggestions.length > 0) parts.push(`; did you mean ${suggestions.map((s) => `'${s}'`).join(' or ')}?`);
  parts.push(`; valid: ${[...valid].sort().join(', ')}`);
  return new SwitchyardError('SY_ERR_UNKNOWN_NAME', parts.join(''), {
    param: kind,
    value,
    valid: [...valid],
    ...(suggestions.length > 0 ? { suggestions: [...suggestions] } : {}),
  });
}
