/**
 * Regenerates the bundled trace samples in data/samples/ from the full public traces, so their
 * provenance is reproducible: the first SAMPLE_ROWS rows of each file, byte for byte in the original
 * format, plus the source repositories' licence files.
 *
 *   node --import tsx scripts/make-samples.ts [tracesDir]   (default: ../shared/data/traces)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

/** Rows per sample (data rows, not counting a CSV header). */
const SAMPLE_ROWS = 3000;

const root = fileURLToPath(new URL('..', import.meta.url));
const tracesDir = process.argv[2] ?? join(root, '..', 'shared', 'data', 'traces');
const outDir = join(root, 'data', 'samples');

/** The first `lines` lines of a text, each with its original line ending (LF or CRLF). */
function firstLines(text: string, lines: number): string {
  let end = 0;
  for (let i = 0; i < lines; i++) {
    const nl = text.indexOf('\n', end);
    if (nl < 0) return text;
    end = nl + 1;
  }
  return text.slice(0, end);
}

function readText(path: string): string {
  const bytes = readFileSync(path);
  return (bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes).toString('utf8');
}

/** Copies a licence by content, so the read-only mode of the source tree does not come along. */
function copyLicence(from: string, name: string): void {
  writeFileSync(join(outDir, name), readFileSync(from));
}

mkdirSync(outDir, { recursive: true });

const azure = readText(join(tracesDir, 'azure_llm_2023', 'AzureLLMInferenceTrace_conv.csv'));
writeFileSync(join(outDir, 'azure-conv.csv'), firstLines(azure, SAMPLE_ROWS + 1));
copyLicence(join(tracesDir, 'azure_llm_2023', 'LICENSE'), 'LICENSE-azure-CC-BY-4.0');

const mooncake = readText(join(tracesDir, 'mooncake', 'conversation_trace.jsonl.gz'));
// gzipSync writes mtime 0, so the same input always gives the same bytes.
writeFileSync(
  join(outDir, 'mooncake-conversation.jsonl.gz'),
  gzipSync(firstLines(mooncake, SAMPLE_ROWS), { level: 9 }),
);
copyLicence(join(tracesDir, 'mooncake', 'LICENSE-APACHE'), 'LICENSE-mooncake-Apache-2.0');

console.log(`wrote samples of ${SAMPLE_ROWS} rows to ${outDir}`);
