/**
 * The `profile` policy type: a scheduling profile composed in config from named plugins (llm-d's
 * EndpointPickerConfig, inlined): filters, weighted scorers and a picker, each `{ type, params }`.
 * Every plugin name and parameter is checked by the schema; nothing here is code a user writes.
 */
import { z } from 'zod';
import { assert } from '../../../core/assert.ts';
import { eligibleFilter, FILTER_CATALOGUE } from '../filters.ts';
import { PICKER_CATALOGUE } from '../pickers.ts';
import { createProfilePolicy, type ProfileSpec } from '../profile.ts';
import { SCORER_CATALOGUE } from '../scorers/catalogue.ts';
import type { Filter, Picker, RoutingPolicy, Scorer } from '../types.ts';

/** Most filters or scorers in one profile. */
export const PROFILE_PLUGINS_MAX = 16;

/** A plugin catalogue as the profile reads it. */
interface PluginCatalogue<T> {
  readonly [type: string]: { readonly params: z.ZodType<unknown>; create(params: unknown): T };
}

const pluginParams = z.record(z.string(), z.unknown()).default({});

/** Validates `{type, params}` of one plugin against its catalogue, adding issues at `path`. */
function checkPlugin(
  kind: string,
  catalogue: PluginCatalogue<unknown>,
  plugin: { type: string; params: Record<string, unknown> },
  path: (string | number)[],
  ctx: z.RefinementCtx,
): void {
  const entry = Object.hasOwn(catalogue, plugin.type) ? catalogue[plugin.type] : undefined;
  if (entry === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'type'],
      message: `unknown ${kind} '${plugin.type}'; valid: ${Object.keys(catalogue).sort().join(', ')}`,
    });
    return;
  }
  const parsed = entry.params.safeParse(plugin.params);
  if (parsed.success) return;
  const valid = Object.keys((entry.params as { shape?: object }).shape ?? {}).sort();
  for (const issue of parsed.error.issues) {
    const hint =
      issue.code === 'unrecognized_keys' ? `; valid: ${valid.length > 0 ? valid.join(', ') : '(none)'}` : '';
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'params', ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))],
      message: `${kind} '${plugin.type}': ${issue.message}${hint}`,
    });
  }
}

/** The parameters of a `profile` policy. Unknown keys and plugin names fail, listing the valid ones. */
export const profileParams = z
  .strictObject({
    /** Run after the eligible filter (healthy, not draining, serves the model), in order. */
    filters: z
      .array(z.strictObject({ type: z.string(), params: pluginParams }))
      .max(PROFILE_PLUGINS_MAX)
      .default([]),
    /**
     * Each score is clamped to [0, 1] and multiplied by its weight; the totals go to the picker.
     * Default: llm-d's mix, queue x2 + kv-usage x2 + prefix-cache x3.
     */
    scorers: z
      .array(
        z.strictObject({
          type: z.string(),
          weight: z.number().min(0).max(1e6).default(1),
          params: pluginParams,
        }),
      )
      .min(1)
      .max(PROFILE_PLUGINS_MAX)
      .default(() => [
        { type: 'queue', weight: 2, params: {} },
        { type: 'kv-usage', weight: 2, params: {} },
        { type: 'prefix-cache', weight: 3, params: {} },
      ]),
    picker: z
      .strictObject({ type: z.string(), params: pluginParams })
      .default({ type: 'max-score', params: {} }),
  })
  .superRefine((p, ctx) => {
    for (const [i, f] of p.filters.entries()) checkPlugin('filter', FILTER_CATALOGUE, f, ['filters', i], ctx);
    for (const [i, s] of p.scorers.entries()) checkPlugin('scorer', SCORER_CATALOGUE, s, ['scorers', i], ctx);
    checkPlugin('picker', PICKER_CATALOGUE, p.picker, ['picker'], ctx);
  });

/** A validated profile config. */
export type ProfileConfig = z.infer<typeof profileParams>;
/** A profile config as written (defaults may be left out). */
export type ProfileConfigInput = z.input<typeof profileParams>;

function build<T>(catalogue: PluginCatalogue<T>, type: string, params: Record<string, unknown>): T {
  const entry = catalogue[type];
  assert(entry !== undefined, `plugin '${type}' passed the schema`);
  return entry.create(entry.params.parse(params));
}

/**
 * The scheduling profile a config describes: the eligible filter first (listing it again is a no-op),
 * then the configured filters, weighted scorers (fresh instances: a stateful scorer never shares its
 * state with another profile) and the picker.
 */
export function buildProfile(config: ProfileConfig): ProfileSpec {
  const filters: Filter[] = [eligibleFilter];
  for (const f of config.filters) {
    const filter = build<Filter>(FILTER_CATALOGUE as PluginCatalogue<Filter>, f.type, f.params);
    if (filter !== eligibleFilter) filters.push(filter);
  }
  return {
    filters,
    scorers: config.scorers.map((s) => ({
      scorer: build<Scorer>(SCORER_CATALOGUE as PluginCatalogue<Scorer>, s.type, s.params),
      weight: s.weight,
    })),
    picker: build<Picker>(
      PICKER_CATALOGUE as PluginCatalogue<Picker>,
      config.picker.type,
      config.picker.params,
    ),
  };
}

/** A `profile` policy from validated parameters. */
export function createProfile(params: ProfileConfig): RoutingPolicy {
  return createProfilePolicy('profile', buildProfile(params));
}
