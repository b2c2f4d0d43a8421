/**
 * Switchyard's own version, as `GET /version` answers it on the gateway and on the built-in engines
 * (vLLM's route: `{"version": VLLM_VERSION}`, `show_version` in vllm/entrypoints/openai/api_server.py).
 */
import { readFileSync } from 'node:fs';

/**
 * The `version` of Switchyard's package.json: two directories above this module both in src/ (run
 * through tsx) and in dist/ (the build), so one relative path serves both. 'unknown' when it cannot
 * be read (a copy of the module moved elsewhere), rather than a process that fails to start.
 */
export const SWITCHYARD_VERSION: string = readVersion();

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      name?: unknown;
      version?: unknown;
    };
    return pkg.name === 'switchyard' && typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The body of `GET /version`: vLLM's shape. */
export const VERSION_BODY: string = JSON.stringify({ version: SWITCHYARD_VERSION });
