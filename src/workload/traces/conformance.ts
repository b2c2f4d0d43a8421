/**
 * The conformance suite every trace reader passes. A reader's test file calls
 * `traceReaderConformance(reader, fixtures)` and gets node:test cases for: the valid fixture parses
 * to the expected records; arrivals start at 0 and never decrease; CRLF and trailing blank lines
 * change nothing; each malformed fixture fails with SY_ERR_TRACE_PARSE naming the file and line;
 * and (fast-check) any file the reader's writer produces parses back to the records written.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SwitchyardError } from '../../core/errors.ts';
import type { TraceRecord } from '../types.ts';
import type { TraceReader } from './types.ts';

/** A file the reader must reject, and the 1-based line the error must name. */
export interface MalformedFixture {
  /** What is wrong, as the test name. */
  readonly name: string;
  readonly text: string;
  readonly line: number;
}

/** What the suite needs to know about one reader. */
export interface ReaderFixtures {
  /** A well-formed file and the records it holds. */
  readonly valid: { readonly text: string; readonly expected: readonly TraceRecord[] };
  readonly malformed: readonly MalformedFixture[];
  /** Resolution of the format's arrival times in ms; generated arrivals are multiples of it. */
  readonly arrivalQuantumMs: number;
  /** Whether the format stores hash ids (generated records get some only then). */
  readonly carriesHashIds: boolean;
  /** fast-check runs for the round-trip property (default 100). */
  readonly numRuns?: number;
}

/** The file name the suite passes to `parse`; errors must name it. */
export const CONFORMANCE_FILE = 'fixture.trace';

/** Arrival times agree to float precision (readers convert seconds or 100 ns ticks to ms). */
function sameArrival(actual: number, expected: number): boolean {
  return Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
}

/** Asserts two record lists are equal, arrivals to float precision, the rest exactly. */
export function assertSameRecords(actual: readonly TraceRecord[], expected: readonly TraceRecord[]): void {
  assert.equal(actual.length, expected.length, 'record count');
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as TraceRecord;
    const e = expected[i] as TraceRecord;
    assert.ok(
      sameArrival(a.arrivalMs, e.arrivalMs),
      `record ${i}: arrivalMs ${a.arrivalMs} != ${e.arrivalMs}`,
    );
    assert.equal(a.inputTokens, e.inputTokens, `record ${i}: inputTokens`);
    assert.equal(a.outputTokens, e.outputTokens, `record ${i}: outputTokens`);
    assert.deepEqual([...a.hashIds], [...e.hashIds], `record ${i}: hashIds`);
  }
}

/** Asserts arrivals start at 0 and never go backwards. */
export function assertArrivalsOrdered(records: readonly TraceRecord[]): void {
  assert.ok(records.length > 0, 'at least one record');
  assert.equal(records[0]?.arrivalMs, 0, 'first arrival is 0');
  for (let i = 1; i < records.length; i++) {
    const prev = (records[i - 1] as TraceRecord).arrivalMs;
    const cur = (records[i] as TraceRecord).arrivalMs;
    assert.ok(cur >= prev, `record ${i}: arrival ${cur} < previous ${prev}`);
  }
}

/** Asserts `fn` throws SY_ERR_TRACE_PARSE naming `file` and `line` in both message and details. */
export function assertTraceParseError(fn: () => unknown, file: string, line: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SwitchyardError, `expected a SwitchyardError, got ${String(err)}`);
    assert.equal(err.code, 'SY_ERR_TRACE_PARSE');
    assert.equal(err.details?.['file'], file);
    assert.equal(err.details?.['line'], line, `wrong line in: ${err.message}`);
    assert.ok(err.message.includes(`${file}:${line}:`), `message names file and line: ${err.message}`);
    return true;
  });
}

function recordsArbitrary(fixtures: ReaderFixtures): fc.Arbitrary<TraceRecord[]> {
  const row = fc.record({
    gapQuanta: fc.oneof(fc.constant(0), fc.nat({ max: 1_000_000 })),
    inputTokens: fc.nat({ max: 2_000_000 }),
    outputTokens: fc.nat({ max: 100_000 }),
    hashIds: fixtures.carriesHashIds
      ? fc.array(fc.nat({ max: 2 ** 31 }), { maxLength: 12 })
      : fc.constant([] as number[]),
  });
  return fc.array(row, { minLength: 1, maxLength: 40 }).map((rows) => {
    let quanta = 0;
    return rows.map((r, i) => {
      if (i > 0) quanta += r.gapQuanta;
      return {
        arrivalMs: quanta * fixtures.arrivalQuantumMs,
        inputTokens: r.inputTokens,
        outputTokens: r.outputTokens,
        hashIds: r.hashIds,
      };
    });
  });
}

/** Registers the conformance cases for one reader. */
export function traceReaderConformance(reader: TraceReader, fixtures: ReaderFixtures): void {
  const file = CONFORMANCE_FILE;
  describe(`trace reader conformance: ${reader.format}`, () => {
    it('parses the valid fixture to the expected records', () => {
      assertSameRecords(reader.parse(fixtures.valid.text, file), fixtures.valid.expected);
    });

    it('gives arrivals that start at 0 and never decrease', () => {
      assertArrivalsOrdered(reader.parse(fixtures.valid.text, file));
    });

    it('ignores CRLF line endings and trailing blank lines', () => {
      const crlf = `${fixtures.valid.text.replaceAll('\r\n', '\n').replaceAll('\n', '\r\n')}\r\n\r\n`;
      assertSameRecords(reader.parse(crlf, file), fixtures.valid.expected);
      assertSameRecords(reader.parse(`${fixtures.valid.text}\n\n  \n`, file), fixtures.valid.expected);
    });

    it('rejects an empty file', () => {
      assertTraceParseError(() => reader.parse('', file), file, 1);
    });

    for (const bad of fixtures.malformed) {
      it(`rejects ${bad.name} naming line ${bad.line}`, () => {
        assertTraceParseError(() => reader.parse(bad.text, file), file, bad.line);
      });
    }

    it('round-trips any file its writer produces (property)', () => {
      fc.assert(
        fc.property(recordsArbitrary(fixtures), (records) => {
          const parsed = reader.parse(reader.write(records), file);
          assertSameRecords(parsed, records);
          assertArrivalsOrdered(parsed);
        }),
        { numRuns: fixtures.numRuns ?? 100 },
      );
    });
  });
}
