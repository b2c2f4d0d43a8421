/**
 * The Responses API's routes by id, answered from the gateway's response store (response-store.ts):
 * `GET /v1/responses/{id}` (the stored response object), `DELETE /v1/responses/{id}` (OpenAI's
 * `{id, object: "response", deleted: true}`), `GET /v1/responses/{id}/input_items` (OpenAI's list
 * object: `data`, `first_id`, `last_id`, `has_more`; `limit` 1-100, default 20; `order` `desc`, the
 * default, or `asc`; `after` an item id). A tenant sees only what was stored under its own key.
 */
import type { ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import { sendError, sendJson } from './http-util.ts';
import type { ResponseStore, StoredResponse } from './response-store.ts';

const PREFIX = '/v1/responses/';
const INPUT_ITEMS = '/input_items';

/** The response id and route a path below /v1/responses/ names, or undefined for no route served here. */
export function responseRouteOf(path: string): { id: string; items: boolean } | undefined {
  if (!path.startsWith(PREFIX)) return undefined;
  let rest = path.slice(PREFIX.length);
  const items = rest.endsWith(INPUT_ITEMS);
  if (items) rest = rest.slice(0, -INPUT_ITEMS.length);
  if (rest.length === 0 || rest.includes('/')) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(rest);
  } catch {
    return undefined;
  }
  return { id, items };
}

function notFound(id: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_RESPONSE_NOT_FOUND', `No response found with id '${id}'.`, {
    param: 'response_id',
  });
}

/**
 * Answers `method` on a stored-response route of `tenant`; false when the method is not one it
 * serves there (the caller answers 405).
 */
export function answerStoredResponse(
  store: ResponseStore,
  tenant: string,
  res: ServerResponse,
  method: string,
  route: { id: string; items: boolean },
  query: URLSearchParams,
): boolean {
  const { id, items } = route;
  if (method === 'DELETE' && !items) {
    if (!store.delete(tenant, id)) sendError(res, notFound(id));
    else sendJson(res, 200, { id, object: 'response', deleted: true });
    return true;
  }
  if (method !== 'GET') return false;
  const stored = store.get(tenant, id);
  if (stored === undefined) sendError(res, notFound(id));
  else if (!items) sendJson(res, 200, stored.response);
  else {
    try {
      sendJson(res, 200, inputItemsPage(stored, query));
    } catch (error) {
      if (!(error instanceof SwitchyardError)) throw error;
      sendError(res, error);
    }
  }
  return true;
}

function invalidQuery(param: string, expected: string): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid query parameter ${param}: expected ${expected}`,
    {
      param,
    },
  );
}

/**
 * One page of a stored response's input items, as OpenAI lists them: each with an `id` (an item sent
 * without one is named `<response id>_in_<index>`), newest first unless `order=asc`.
 */
export function inputItemsPage(stored: StoredResponse, query: URLSearchParams): Record<string, unknown> {
  const limitText = query.get('limit');
  const limit = limitText === null ? 20 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw invalidQuery('limit', 'an integer from 1 to 100');
  const order = query.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw invalidQuery('order', "'asc' or 'desc'");
  const all = stored.inputItems.map((item, i) => withId(item, `${stored.id}_in_${i}`));
  if (order === 'desc') all.reverse();
  const after = query.get('after');
  let from = 0;
  if (after !== null) {
    const at = all.findIndex((item) => item['id'] === after);
    if (at < 0) throw invalidQuery('after', `the id of one of this response's input items, not '${after}'`);
    from = at + 1;
  }
  const data = all.slice(from, from + limit);
  return {
    object: 'list',
    data,
    first_id: data[0]?.['id'] ?? null,
    last_id: data.at(-1)?.['id'] ?? null,
    has_more: from + limit < all.length,
  };
}

function withId(item: unknown, id: string): Record<string, unknown> {
  const object =
    typeof item === 'object' && item !== null ? (item as Record<string, unknown>) : { value: item };
  return typeof object['id'] === 'string' ? object : { id, ...object };
}
