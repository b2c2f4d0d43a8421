/** Trace readers: Azure LLM 2023/2024 CSV, Mooncake JSONL (plain or gzipped), Vidur processed CSV. */

export type { AzureInstant } from './azure.ts';
export { azureDeltaMs, azureReader, formatAzureTimestamp, parseAzureTimestamp } from './azure.ts';
export { MOONCAKE_BLOCK_TOKENS, mooncakeReader } from './mooncake.ts';
export type { LengthPair } from './read.ts';
export {
  detectTraceFormat,
  parseTrace,
  readTrace,
  readTraceLengths,
  TRACE_FORMATS,
  TRACE_READERS,
} from './read.ts';
export type { SampleName } from './samples.ts';
export { isSampleRef, resolveTraceRef, SAMPLE_PREFIX, SAMPLES, SAMPLES_DIR } from './samples.ts';
export { traceParseError } from './text.ts';
export type { TraceReader } from './types.ts';
export { parseVidurLengths, vidurReader } from './vidur.ts';
