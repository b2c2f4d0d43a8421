/** Serverless policies (keep-alive, pre-warming, node and victim choice): see README.md here. */
export {
  ARRIVAL_GAPS_MAX,
  ArrivalHistory,
  IDLE_GAP_MIN_MS,
  IDLE_GAPS_MAX,
  PRIOR_WEIGHT_GAPS,
} from './forecast.ts';
export {
  CONCURRENCY_TARGET_DEFAULT,
  coldRequestsPerStart,
  createServerlessPolicy,
  FORECAST_GAPS_MIN_DEFAULT,
  KEEP_ALIVE_MS_DEFAULT,
  KEEP_VALUE_MIN_DEFAULT,
  keepValue,
  loadChance,
  MAX_REPLICAS_DEFAULT,
  type NodeChoiceRule,
  PREWARM_EVICT_RATIO_DEFAULT,
  PREWARM_VALUE_MIN_DEFAULT,
  SERVERLESS_POLICY_NAMES,
  type ServerlessModelView,
  type ServerlessParams,
  type ServerlessPolicy,
  type ServerlessPolicyName,
  type VictimCandidate,
} from './policies.ts';
