/**
 * JSON answers checked against the JSON schema they were generated under: the built-in engines'
 * structured output and tool-call arguments, in every e2e file that asks for them.
 */
import assert from 'node:assert/strict';
import * as z from 'zod';

/**
 * Parses `text` as JSON and validates it against `schema` (zod 4's `fromJSONSchema`), failing the
 * test with the text and the schema's issues otherwise; returns the parsed value.
 */
export function validatedJson(text: string, schema: object): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    assert.fail(`not JSON: ${JSON.stringify(text.slice(0, 300))}`);
  }
  const check = z.fromJSONSchema(schema as never).safeParse(value);
  assert.ok(check.success, `${text} does not validate: ${JSON.stringify(check.error?.issues)}`);
  return value;
}
