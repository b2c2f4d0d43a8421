/**
 * The streaming upstream of the gateway benchmark: a lean node:http server that answers
 * `POST /v1/chat/completions` with `stream: true` by writing N chunk events, one `write` each, as
 * fast as the socket takes them (waiting for `drain` when it is full), then `data: [DONE]`. Bodies
 * without `stream: true` get the fixed completion. It also answers `/health`, `/v1/models` and
 * `/metrics` (empty) for gateways that probe their backends. Listens on every port given; prints
 * one JSON line `{"ready":true}` when all are listening.
 *
 * Run as a child: `node --import tsx bench/gateway/sse-upstream.ts --events 1000 --ports 1,2,3`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../../scripts/script-args.ts';
import { BENCH_MODEL, chunkEvent, completionResponse } from './bodies.ts';

const USAGE = `Usage: node --import tsx bench/gateway/sse-upstream.ts --ports P1,P2,... [--events N]

The gateway benchmark's streaming upstream (bench:gateway starts it): answers stream:true chat
completions with N chunk events and [DONE] as fast as the socket takes them, other bodies with a
fixed completion; prints {"ready":true} once every port listens on 127.0.0.1.

Options:
  --ports P1,P2         ports to listen on, comma-separated (required)
  --events N            chunk events per streamed response (default 1000)
  -h, --help            this text

Example:
  node --import tsx bench/gateway/sse-upstream.ts --events 1000 --ports 8011,8012`;

const { values } = scriptArgs('sse-upstream', USAGE, () =>
  parseArgs({
    options: {
      events: { type: 'string', default: '1000' },
      ports: { type: 'string' },
    },
  }),
);
const eventsPerStream = Number(values.events);
const ports = (values.ports ?? '').split(',').filter(Boolean).map(Number);
if (!(eventsPerStream >= 1) || ports.length === 0)
  scriptUsageError('sse-upstream', USAGE, '--ports P1,P2,... is required and --events N must be >= 1');

const CHUNK = Buffer.from(chunkEvent(BENCH_MODEL, false));
const LAST = Buffer.from(chunkEvent(BENCH_MODEL, true));
const DONE = Buffer.from('data: [DONE]\n\n');
const COMPLETION = Buffer.from(completionResponse(BENCH_MODEL));
const MODELS = Buffer.from(JSON.stringify({ object: 'list', data: [{ id: BENCH_MODEL, object: 'model' }] }));
/** `"stream":true` as JSON.stringify writes it (the benchmark's bodies have no spaces). */
const STREAM_TRUE = Buffer.from('"stream":true');

function stream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let sent = 0;
  const pump = (): void => {
    while (sent < eventsPerStream - 1) {
      sent++;
      if (!res.write(CHUNK)) {
        res.once('drain', pump);
        return;
      }
    }
    res.write(LAST);
    res.end(DONE);
  };
  pump();
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const url = req.url ?? '/';
    if (req.method === 'POST' && url.startsWith('/v1/')) {
      const body = Buffer.concat(chunks);
      if (body.includes(STREAM_TRUE)) return stream(res);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': COMPLETION.length });
      return void res.end(COMPLETION);
    }
    if (url.startsWith('/v1/models')) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': MODELS.length });
      return void res.end(MODELS);
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(url.startsWith('/metrics') ? '' : 'ok');
  });
}

let listening = 0;
for (const port of ports) {
  const server = createServer({ keepAliveTimeout: 60_000 }, handle);
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => {
    listening++;
    if (listening === ports.length) process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  });
}
