import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { listenOn } from './listen.ts';

test('listenOn: port 0 resolves the port bound; a port taken rejects, and leaves no error listener', async () => {
  const first = createServer();
  const port = await listenOn(first, '127.0.0.1', 0);
  assert.ok(port > 0);
  assert.equal(first.listenerCount('error'), 0, 'the listen error handler is gone once it listens');
  const second = createServer();
  await assert.rejects(listenOn(second, '127.0.0.1', port), { code: 'EADDRINUSE' });
  await new Promise<void>((resolve) => first.close(() => resolve()));
});
