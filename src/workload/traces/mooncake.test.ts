import { traceReaderConformance } from './conformance.ts';
import { mooncakeReader } from './mooncake.ts';

const row = (t: unknown, i: unknown, o: unknown, h: unknown = [0, 1]) =>
  JSON.stringify({ timestamp: t, input_length: i, output_length: o, hash_ids: h });

traceReaderConformance(mooncakeReader, {
  valid: {
    text: [
      '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}',
      '{"timestamp": 0, "input_length": 7322, "output_length": 490, "hash_ids": [0, 14]}',
      '{"timestamp": 12.5, "input_length": 10, "output_length": 1}',
      '{"hash_ids": [], "timestamp": 3000, "output_length": 7, "input_length": 700}',
    ].join('\n'),
    expected: [
      { arrivalMs: 0, inputTokens: 6758, outputTokens: 500, hashIds: [0, 1, 2] },
      { arrivalMs: 0, inputTokens: 7322, outputTokens: 490, hashIds: [0, 14] },
      { arrivalMs: 12.5, inputTokens: 10, outputTokens: 1, hashIds: [] },
      { arrivalMs: 3000, inputTokens: 700, outputTokens: 7, hashIds: [] },
    ],
  },
  malformed: [
    { name: 'bad JSON', text: `${row(0, 1, 1)}\n{"timestamp": 1, "input_length": 2,`, line: 2 },
    { name: 'a JSON array instead of an object', text: `${row(0, 1, 1)}\n[1,2,3]`, line: 2 },
    {
      name: 'a missing timestamp',
      text: `${row(0, 1, 1)}\n\n{"input_length": 1, "output_length": 1}`,
      line: 3,
    },
    { name: 'a string timestamp', text: row('5', 1, 1), line: 1 },
    { name: 'a negative input length', text: `${row(0, 1, 1)}\n${row(1, -1, 1)}`, line: 2 },
    { name: 'a fractional output length', text: row(0, 1, 1.5), line: 1 },
    { name: 'a non-numeric hash id', text: row(0, 1, 1, [0, 'x']), line: 1 },
    { name: 'hash_ids not an array', text: row(0, 1, 1, 7), line: 1 },
  ],
  arrivalQuantumMs: 1,
  carriesHashIds: true,
});
