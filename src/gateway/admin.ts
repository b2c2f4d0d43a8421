/**
 * The admin API under /admin/. Closed (404, as if it did not exist) unless the config names an
 * `adminKey`; then every call needs `Authorization: Bearer <adminKey>` (401 otherwise).
 *
 *   GET  /admin/instances                 every instance with its live signals
 *   POST /admin/instances/<id>/drain      no new requests to <id>
 *   POST /admin/instances/<id>/undrain    back in service
 *   GET  /admin/policy                    { policy, available }
 *   PUT  /admin/policy   { "policy": n }  switch the active routing policy
 *   GET  /admin/stats                     the request counters and admission state
 *
 * Every error answered here, but the closed API's 404 (which must look like any unknown route), goes
 * through the gateway's `rejectEarly`: it counts in `/stats` `rejected{code}` as the main path's
 * refusals do, so an operator sees wrong keys and stalled bodies on the admin API.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import type { LiveGateway } from './gateway.ts';
import { bearerToken, readBody, sendError, sendJson, sideBodyBounds } from './http-util.ts';

/** Size of an admin body (`PUT /admin/policy`), at most; its time bound is the main path's. */
const ADMIN_BODY_BYTES_MAX = 64 * 1024;

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time key comparison (both sides hashed to equal length first). */
function keyMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  return timingSafeEqual(digest(given), digest(expected));
}

/** Handles one /admin request. */
export function handleAdmin(
  gateway: LiveGateway,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  path: string,
): void {
  const unknownRoute = (): SwitchyardError =>
    new SwitchyardError('SY_ERR_NOT_FOUND', `unknown route ${method} ${path}`, { param: 'path' });
  const notFound = (): void => {
    req.resume();
    gateway.rejectEarly(res, unknownRoute());
  };
  const key = gateway.adminKey;
  if (key === undefined) {
    // Closed: answered as the gateway's own unknown routes are (not counted).
    req.resume();
    sendError(res, unknownRoute());
    return;
  }
  if (!keyMatches(bearerToken(req.headers.authorization), key)) {
    req.resume();
    gateway.rejectEarly(
      res,
      new SwitchyardError('SY_ERR_UNAUTHORIZED', 'admin API needs Authorization: Bearer <adminKey>', {
        param: 'authorization',
      }),
    );
    return;
  }
  const parts = decodedSegments(path);
  if (parts === undefined) {
    req.resume();
    gateway.rejectEarly(
      res,
      new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `malformed percent-encoding in path ${path}`, {
        param: 'path',
      }),
    );
    return;
  }
  // parts[0] === 'admin'
  if (method === 'GET' && parts.length === 2 && parts[1] === 'instances') {
    req.resume();
    sendJson(res, 200, { instances: instancesJson(gateway) });
    return;
  }
  if (method === 'GET' && parts.length === 2 && parts[1] === 'stats') {
    req.resume();
    sendJson(res, 200, gateway.statsJson());
    return;
  }
  if (method === 'POST' && parts.length === 4 && parts[1] === 'instances') {
    const id = parts[2] as string;
    const action = parts[3];
    if (action !== 'drain' && action !== 'undrain') {
      notFound();
      return;
    }
    req.resume();
    if (!gateway.setDraining(id, action === 'drain')) {
      gateway.rejectEarly(
        res,
        new SwitchyardError('SY_ERR_NOT_FOUND', `unknown instance '${id}'`, { param: 'instance' }),
      );
      return;
    }
    sendJson(res, 200, { id, draining: action === 'drain' });
    return;
  }
  if (parts.length === 2 && parts[1] === 'policy') {
    if (method === 'GET') {
      req.resume();
      sendJson(res, 200, { policy: gateway.policyName, available: gateway.policyNames() });
      return;
    }
    if (method === 'PUT') {
      const bounds = sideBodyBounds(gateway.limits, ADMIN_BODY_BYTES_MAX, 'the admin body bound');
      readBody(req, res, bounds, (result) => {
        if (!result.ok) {
          gateway.rejectEarly(res, result.error);
          return;
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(result.body.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
        // Strict, as config parsing is: a key it does not know is named, not ignored.
        const unknownKey = isObject ? Object.keys(parsed as object).find((k) => k !== 'policy') : undefined;
        if (unknownKey !== undefined) {
          gateway.rejectEarly(
            res,
            new SwitchyardError(
              'SY_ERR_INVALID_ARGUMENT',
              `unknown key ${JSON.stringify(unknownKey)} in the body; valid: policy (a body {"policy": "<name>"})`,
              { param: unknownKey },
            ),
          );
          return;
        }
        const name = isObject ? (parsed as { policy?: unknown }).policy : undefined;
        if (typeof name !== 'string') {
          gateway.rejectEarly(
            res,
            new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'expected a JSON body {"policy": "<name>"}', {
              param: 'policy',
            }),
          );
          return;
        }
        try {
          gateway.setPolicy(name);
        } catch (error) {
          if (error instanceof SwitchyardError) {
            gateway.rejectEarly(res, error);
            return;
          }
          throw error;
        }
        sendJson(res, 200, { policy: gateway.policyName });
      });
      return;
    }
  }
  notFound();
}

/** The path's non-empty segments, percent-decoded; undefined when some segment's encoding is malformed. */
export function decodedSegments(path: string): string[] | undefined {
  const parts = path.split('/').filter((p) => p.length > 0);
  try {
    return parts.map((p) => decodeURIComponent(p));
  } catch {
    return undefined;
  }
}

function instancesJson(gateway: LiveGateway): unknown[] {
  const now = gateway.nowMs();
  const view = gateway.view.at(now);
  return view.instances.map((i) => {
    const backend = gateway.backendById.get(i.id);
    const age = i.signalAgeMs(now);
    return {
      id: i.id,
      type: backend?.config.type,
      url: backend?.config.url,
      models: i.models,
      role: i.role,
      gpu: i.gpu,
      tp: i.tp,
      healthy: i.healthy,
      draining: i.draining,
      inFlight: i.inFlight,
      running: i.running,
      waiting: i.waiting,
      kvUsage: i.kvUsage,
      kvBlocksTotal: i.kvBlocksTotal,
      blockSize: i.blockSize,
      pendingPrefillTokens: i.pendingPrefillTokens,
      prefixHitRate: i.prefixHitRate,
      signalsStale: i.stale,
      signalAgeMs: Number.isFinite(age) ? Math.round(age) : null,
    };
  });
}
