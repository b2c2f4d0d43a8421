/**
 * Commander parsers of the `switchyard serve` flags that override a field of the gateway config.
 * Each reads its text, then runs the config schema's own check of that field (src/gateway/config.ts,
 * the one place its bounds are written) on the value, so a value the file would be refused for is
 * refused at the flag, naming the flag: `--scrape-interval-ms 1` is a usage error before any config
 * is read or engine started, not a config error about `scrapeIntervalMs`. The schema goes on
 * checking the file's fields, under their own paths.
 */
import { InvalidArgumentError } from 'commander';
import type { z } from 'zod';
import { SwitchyardError } from '../core/errors.ts';
import { gatewayConfigSchema } from '../gateway/config.ts';
import { corsConfigSchema, parseCorsListFlag } from '../gateway/cors.ts';
import { nonNegativeInt, positiveInt } from './parse.ts';

/**
 * A commander parser of `--<flag>`: `read` turns the text into the field's value (and may refuse it
 * as the plain parsers do), then `field` must accept it. A refusal is commander's usage error naming
 * the flag and its value; with `secret` (a key) a one-line usage error naming the flag alone, since
 * commander's own would echo the value.
 */
export function configFieldFlag<T>(
  flag: string,
  field: z.ZodType,
  read: (text: string) => T,
  options: { readonly secret?: boolean } = {},
): (text: string) => T {
  return (text) => {
    const value = read(text);
    const result = field.safeParse(value);
    if (result.success) return value;
    const problems = result.error.issues
      .map(
        (issue) =>
          `${issue.path.length > 0 ? `item ${issue.path.map(String).join('.')}: ` : ''}${issue.message}`,
      )
      .join('; ');
    if (options.secret === true)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `--${flag}: ${problems}`, { param: flag });
    throw new InvalidArgumentError(problems);
  };
}

const asText = (text: string): string => text;

/** A CORS list flag as vLLM takes it (a JSON list or comma-separated); a bad list is a usage error. */
function corsList(flag: string): (text: string) => string[] {
  return (text) => {
    try {
      return parseCorsListFlag(text, flag);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

/** `--standby-reserve-mib`: `auto` (sized from the models served) or MiB. */
function autoOrMib(text: string): number | 'auto' {
  if (text.trim() === 'auto') return 'auto';
  try {
    return nonNegativeInt(text);
  } catch {
    throw new InvalidArgumentError(`'${text}' is neither auto nor a non-negative integer.`);
  }
}

const GATEWAY = gatewayConfigSchema.shape;
const AUTOSCALER = GATEWAY.autoscaler.unwrap().shape;
/** The bounds form of `autoscaler.sleep` (`true` or `{maxSleepers, ...}`). */
const SLEEP = AUTOSCALER.sleep.unwrap().options[1].shape;

/**
 * The parser of each flag that overrides a config field, by flag: the field's schema checks it.
 * `--port` (tcpPort, the schema's own range) and `--max-instances` (the local engine bound, with its
 * own message) are parsed where they are declared.
 */
export const CONFIG_FLAG_PARSERS = {
  host: configFieldFlag('host', GATEWAY.host, asText),
  'admin-key': configFieldFlag('admin-key', GATEWAY.adminKey, asText, { secret: true }),
  'scrape-interval-ms': configFieldFlag('scrape-interval-ms', GATEWAY.scrapeIntervalMs, positiveInt),
  'allowed-origins': configFieldFlag(
    'allowed-origins',
    corsConfigSchema.shape.allowedOrigins,
    corsList('allowed-origins'),
  ),
  'allowed-methods': configFieldFlag(
    'allowed-methods',
    corsConfigSchema.shape.allowedMethods,
    corsList('allowed-methods'),
  ),
  'allowed-headers': configFieldFlag(
    'allowed-headers',
    corsConfigSchema.shape.allowedHeaders,
    corsList('allowed-headers'),
  ),
  'min-instances': configFieldFlag('min-instances', AUTOSCALER.minInstances, nonNegativeInt),
  'autoscaler-interval-ms': configFieldFlag('autoscaler-interval-ms', AUTOSCALER.intervalMs, positiveInt),
  'keep-alive-ms': configFieldFlag('keep-alive-ms', AUTOSCALER.keepAliveMs, nonNegativeInt),
  'max-loaded-models': configFieldFlag('max-loaded-models', AUTOSCALER.maxLoadedModels, positiveInt),
  'standby-engines': configFieldFlag('standby-engines', AUTOSCALER.standbyEngines, nonNegativeInt),
  'warm-cache-mb': configFieldFlag('warm-cache-mb', AUTOSCALER.warmCacheMb, nonNegativeInt),
  'standby-reserve-mib': configFieldFlag('standby-reserve-mib', AUTOSCALER.standbyReserveMib, autoOrMib),
  'max-sleepers': configFieldFlag('max-sleepers', SLEEP.maxSleepers, positiveInt),
  'max-sleepers-per-model': configFieldFlag('max-sleepers-per-model', SLEEP.maxSleepersPerModel, positiveInt),
  'sleep-max-ms': configFieldFlag('sleep-max-ms', SLEEP.sleepMaxMs, positiveInt),
} as const;
