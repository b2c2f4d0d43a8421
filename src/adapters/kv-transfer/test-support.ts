/**
 * A fault for the KV-transfer tests (the adapter's own and the llama P/D e2e test): a TCP proxy that
 * cuts connections part-way, as a dropped link would. Test code only.
 */
import { type AddressInfo, createConnection, createServer, type Server } from 'node:net';

/** A TCP proxy to `port` that cuts its first `drops` connections once `afterBytes` bytes came back. */
export async function droppingProxy(
  port: number,
  afterBytes: number,
  drops: number,
): Promise<{ server: Server; port: number }> {
  let dropped = 0;
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port });
    const cut = dropped++ < drops;
    let sent = 0;
    client.on('data', (c) => upstream.write(c));
    upstream.on('data', (c: Buffer) => {
      sent += c.length;
      if (cut && sent > afterBytes) {
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(c);
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
