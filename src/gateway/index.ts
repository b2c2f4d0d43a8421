/** The live gateway: `startGateway(config)` and the types around it. docs/gateway.md is the guide. */
export {
  BACKEND_TYPES,
  type BackendConfig,
  type GatewayConfig,
  type GatewayConfigInput,
  gatewayConfigSchema,
  loadGatewayConfig,
  parseGatewayConfig,
} from './config.ts';
export { type FeedSink, type FeedTarget, NO_FEEDS, type SignalFeeds } from './feeds.ts';
export { type Gateway, type GatewayOptions, startGateway } from './gateway.ts';
export { type EngineSignalsInput, LiveInstance, LiveView } from './live-view.ts';
export { GatewayStats } from './metrics.ts';
