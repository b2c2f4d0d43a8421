/**
 * End-to-end: an uploaded file's name as the client wrote it (task A of stop 28, the live path
 * reviewed as unseen clients use it).
 *
 * The openai SDKs (undici's FormData in Node, httpx in Python) and curl write a multipart
 * `filename="..."` as raw UTF-8. Busboy reads such a parameter as latin1 unless told otherwise, so
 * `données.jsonl` came back from `POST /v1/files`, `GET /v1/files/{id}` and the list as
 * `donnÃ©es.jsonl`. The upload parser now reads it as UTF-8 (src/gateway/batch/http.ts); an RFC 5987
 * `filename*=` is decoded by its own charset as before.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { MODEL } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-batch-name-'));
const setUp = simGateway({ batch: { dir } });
// Added first, so run last: after the gateway has closed.
setUp.teardown.add(() => rmSync(dir, { recursive: true, force: true }));

/** An openai SDK client of the gateway (made per use: the gateway starts in the file's before hook). */
const client = (): OpenAI =>
  new OpenAI({ baseURL: `${setUp.gw.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 20_000 });

const LINE = JSON.stringify({
  custom_id: 'a',
  method: 'POST',
  url: '/v1/chat/completions',
  body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
});

describe('uploaded file names', () => {
  for (const name of ['données.jsonl', '日本語 🎉.jsonl']) {
    it(`the openai SDK's ${JSON.stringify(name)} comes back as written`, async () => {
      const file = await client().files.create({
        file: await toFile(Buffer.from(`${LINE}\n`), name),
        purpose: 'batch',
      });
      assert.equal(file.filename, name);
      assert.equal((await client().files.retrieve(file.id)).filename, name);
      const listed = (await client().files.list()).data.find((f) => f.id === file.id);
      assert.equal(listed?.filename, name);
    });
  }

  it('an RFC 5987 filename* names the file by its own charset', async () => {
    const boundary = 'switchyard-e2e-boundary';
    const body =
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''na%C3%AFve.jsonl\r\n` +
      `Content-Type: application/jsonl\r\n\r\n${LINE}\n\r\n--${boundary}--\r\n`;
    const r = await fetch(`${setUp.gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
    });
    const file = (await r.json()) as { filename: string };
    assert.equal(r.status, 200, JSON.stringify(file));
    assert.equal(file.filename, 'naïve.jsonl');
  });
});
