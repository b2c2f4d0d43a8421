import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  advance,
  type BatchEvent,
  type BatchStatus,
  isTerminal,
  newBatch,
  nextStatus,
  publicBatch,
} from './state.ts';

const STATUSES: BatchStatus[] = [
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
];
const EVENTS: BatchEvent[] = ['validated', 'invalid', 'drained', 'finalized', 'cancel', 'stopped', 'expire'];

describe('batch state machine', () => {
  it('runs the happy path and stamps each status', () => {
    let b = newBatch('batch_1', 't', '/v1/chat/completions', 'file-1', { k: 'v' }, 1000);
    assert.equal(b.status, 'validating');
    assert.equal(b.expires_at, 1000 + 24 * 3600);
    b =
      advance(b, 'validated', 1001, { request_counts: { total: 3, completed: 0, failed: 0 } }) ??
      assert.fail();
    assert.equal(b.status, 'in_progress');
    assert.equal(b.in_progress_at, 1001);
    assert.equal(b.request_counts.total, 3);
    b = advance(b, 'drained', 1002) ?? assert.fail();
    b = advance(b, 'finalized', 1003, { output_file_id: 'file-o', error_file_id: null }) ?? assert.fail();
    assert.equal(b.status, 'completed');
    assert.equal(b.finalizing_at, 1002);
    assert.equal(b.completed_at, 1003);
    assert.equal(b.output_file_id, 'file-o');
    assert.equal('owner' in publicBatch(b), false);
  });

  it('refuses moves the machine lacks, and terminal statuses have none', () => {
    const b = newBatch('batch_1', 't', '/v1/completions', 'file-1', null, 0);
    assert.equal(advance(b, 'finalized', 1), undefined);
    assert.equal(advance(b, 'stopped', 1), undefined);
    for (const s of STATUSES) {
      const moves = EVENTS.filter((e) => nextStatus(s, e) !== undefined);
      assert.equal(isTerminal(s), moves.length === 0, s);
    }
    assert.deepEqual(
      STATUSES.filter((s) => isTerminal(s)),
      ['failed', 'completed', 'expired', 'cancelled'],
    );
    const cancelling = advance(b, 'cancel', 5) ?? assert.fail();
    assert.equal(cancelling.cancelling_at, 5);
    assert.equal(advance(cancelling, 'drained', 6), undefined);
    assert.equal(advance(cancelling, 'stopped', 7)?.status, 'cancelled');
  });
});
