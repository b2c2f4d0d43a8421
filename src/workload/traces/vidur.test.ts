import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertTraceParseError, traceReaderConformance } from './conformance.ts';
import { NO_HASH_IDS } from './text.ts';
import { parseVidurLengths, vidurReader } from './vidur.ts';

const HEADER = 'arrived_at,num_prefill_tokens,num_decode_tokens';

traceReaderConformance(vidurReader, {
  valid: {
    text: `${HEADER}\n0.0,374,44\n4.314579,396,109\n4.314579,879,55\n1e3,91,16\n`,
    expected: [
      { arrivalMs: 0, inputTokens: 374, outputTokens: 44, hashIds: NO_HASH_IDS },
      { arrivalMs: 4314.579, inputTokens: 396, outputTokens: 109, hashIds: NO_HASH_IDS },
      { arrivalMs: 4314.579, inputTokens: 879, outputTokens: 55, hashIds: NO_HASH_IDS },
      { arrivalMs: 1_000_000, inputTokens: 91, outputTokens: 16, hashIds: NO_HASH_IDS },
    ],
  },
  malformed: [
    { name: 'a header with no rows', text: HEADER, line: 2 },
    { name: 'a missing column', text: `${HEADER}\n0,1,2\n1,2`, line: 3 },
    { name: 'a non-numeric arrival', text: `${HEADER}\nsoon,1,2`, line: 2 },
    { name: 'a negative arrival', text: `${HEADER}\n-1,1,2`, line: 2 },
    { name: 'a negative token count', text: `${HEADER}\n0,-1,2`, line: 2 },
    {
      name: 'a length-statistics file without arrivals',
      text: 'num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.85',
      line: 1,
    },
  ],
  arrivalQuantumMs: 1e-3,
  carriesHashIds: false,
});

describe('Vidur length-statistics files', () => {
  const stats =
    'num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.85\n2015,156,2171,12.9\n';

  it('read as lengths only', () => {
    const lengths = parseVidurLengths(stats, 'stats.csv');
    assert.deepEqual(
      lengths.map((r) => [r.inputTokens, r.outputTokens]),
      [
        [3772, 54],
        [2015, 156],
      ],
    );
  });

  it('name the line of a bad row', () => {
    assertTraceParseError(() => parseVidurLengths(`${stats}1,x,2,3\n`, 'stats.csv'), 'stats.csv', 4);
  });

  it('explain why they are not a trace', () => {
    assert.throws(() => vidurReader.parse(stats, 'stats.csv'), /no 'arrived_at' column.*lengths only/);
  });
});
