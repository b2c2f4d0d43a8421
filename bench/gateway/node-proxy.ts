/**
 * The floor for a Node gateway: a minimal reverse proxy on the same stack as Switchyard's
 * (node:http server, one undici Pool per upstream, `dispatch` with a handler that writes each
 * response chunk straight back), reading the whole body first as any router that looks at it must,
 * then round-robin. No parsing, no routing policy, no timers, no metrics. The gap between this row
 * and nginx is Node's; the gap between Switchyard and this row is the gateway's own work.
 *
 * `node --import tsx bench/gateway/node-proxy.ts --port P --upstreams P1,P2,...`
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { type Dispatcher, Pool } from 'undici';
import { scriptArgs, scriptUsageError } from '../../scripts/script-args.ts';

const USAGE = `Usage: node --import tsx bench/gateway/node-proxy.ts --port P --upstreams P1,P2,...

The gateway benchmark's no-logic Node proxy (bench:gateway starts it): reads each body whole, then
round-robin over one undici Pool per upstream on 127.0.0.1. No parsing, no policy, no metrics.

Options:
  --port P              the port it listens on, 127.0.0.1 (required)
  --upstreams P1,P2     upstream ports on 127.0.0.1, comma-separated (required)
  -h, --help            this text

Example:
  node --import tsx bench/gateway/node-proxy.ts --port 8100 --upstreams 8001,8002`;

const { values } = scriptArgs('node-proxy', USAGE, () =>
  parseArgs({ options: { port: { type: 'string' }, upstreams: { type: 'string' } } }),
);
const upstreams = (values.upstreams ?? '').split(',').filter(Boolean);
if (values.port === undefined || upstreams.length === 0)
  scriptUsageError('node-proxy', USAGE, '--port P and --upstreams P1,P2,... are required');
const pools = upstreams.map(
  (p) =>
    new Pool(`http://127.0.0.1:${p}`, {
      connections: 256,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: 0,
      bodyTimeout: 0,
    }),
);
const HEADERS = { 'content-type': 'application/json' };
let next = 0;

class Relay implements Dispatcher.DispatchHandler {
  constructor(private readonly res: ServerResponse) {}
  onRequestStart(): void {}
  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    const type = headers['content-type'];
    this.res.writeHead(status, { 'content-type': typeof type === 'string' ? type : 'application/json' });
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }
  onResponseEnd(): void {
    this.res.end();
  }
  onResponseError(_c: Dispatcher.DispatchController, error: Error): void {
    if (!this.res.headersSent) this.res.writeHead(502);
    this.res.end(error.message);
  }
}

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    const pool = pools[next] as Pool;
    next = (next + 1) % pools.length;
    pool.dispatch(
      { path: req.url ?? '/', method: req.method ?? 'POST', headers: HEADERS, body },
      new Relay(res),
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
});
// Exit normally on SIGTERM, so `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0));
