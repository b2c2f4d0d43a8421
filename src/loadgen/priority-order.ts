/**
 * The body `priority` `bench --workload FILE` sends, in the order its target reads it.
 *
 * A workload's `priority` has Switchyard's meaning: higher is more important. A Switchyard gateway
 * reads it so and hands it on to each engine in that engine's own order
 * (src/gateway/engine-priority.ts). Sent straight to an engine, it would mean the engine's order:
 * vLLM and the built-in engines serve a LOWER value first, so the workload's most important
 * requests would go last. So bench sends what its target expects: as written to a gateway, and
 * rewritten as the gateway would (`enginePriorityValue`) to an engine. The target is told from
 * GET /v1/models' `owned_by` (the gateway's `switchyard`, the built-in engines'
 * `switchyard-<engine>`, vLLM's `vllm`), or named with `--engine-priority`.
 */
import { ENGINE_PRIORITY_ORDERS, enginePriorityValue } from '../gateway/engine-priority.ts';

/** `gateway`: sent as written (Switchyard's order); else an engine's order, as backends' `enginePriority`. */
export const BENCH_PRIORITY_ORDERS = ['gateway', ...ENGINE_PRIORITY_ORDERS] as const;
export type BenchPriorityOrder = (typeof BENCH_PRIORITY_ORDERS)[number];

/** The order of a target whose /v1/models says `owned_by: ownedBy`; undefined when not known. */
export function priorityOrderOf(ownedBy: string | undefined): BenchPriorityOrder | undefined {
  switch (ownedBy) {
    case 'switchyard':
      return 'gateway';
    case 'switchyard-sim':
    case 'switchyard-llama':
    case 'vllm':
      return 'lower-first';
    default:
      return undefined;
  }
}

/** The body `priority` to send for a planned one (undefined: Switchyard's 0), or undefined to send none. */
export function sentPriority(order: BenchPriorityOrder, priority: number | undefined): number | undefined {
  return order === 'gateway' ? priority : enginePriorityValue(order, priority ?? 0);
}

/** Whether a workload spec sets a non-zero `priority` anywhere (a mix's parts included). */
export function specSetsPriority(spec: unknown): boolean {
  if (Array.isArray(spec)) return spec.some(specSetsPriority);
  if (typeof spec !== 'object' || spec === null) return false;
  return Object.entries(spec).some(([key, value]) =>
    key === 'priority' ? typeof value === 'number' && value !== 0 : specSetsPriority(value),
  );
}

/**
 * The line bench says before a run whose workload sets priorities, when its target's order was
 * told from /v1/models rather than named: an engine's order applied, or an order it cannot tell.
 * Undefined when there is nothing to say (a gateway: the priorities go as written).
 */
export function priorityOrderLine(
  url: string,
  ownedBy: string | undefined,
  order: BenchPriorityOrder | undefined,
): string | undefined {
  const owner = ownedBy === undefined ? 'no owned_by' : `owned_by '${ownedBy}'`;
  if (order === undefined)
    return (
      `switchyard bench: cannot tell how ${url} orders priorities (GET /v1/models: ${owner}); the workload's ` +
      'priorities go as written (higher is more important, as a Switchyard gateway reads them); name the ' +
      'order with --engine-priority lower-first (vLLM, the built-in engines), higher-first (SGLang) or none'
    );
  if (order !== 'lower-first') return undefined;
  const vllm =
    ownedBy === 'vllm'
      ? '; vLLM refuses a non-zero priority unless it runs --scheduling-policy priority'
      : '';
  return (
    `switchyard bench: ${url} is an engine (GET /v1/models: ${owner}), not a Switchyard gateway: the ` +
    `workload's priorities go in its order, lower first (priority p is sent as -p)${vllm}`
  );
}
