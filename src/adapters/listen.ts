import type { AddressInfo, Server } from 'node:net';

/**
 * Starts `server` listening on `host:port` (0: a free port) and resolves with the port it got; a
 * listen error (the port taken, a bad host) rejects, and the error listener goes once it listens.
 * For every server the project binds: the gateway, the engines' OpenAI and P/D front servers, the
 * KV-transfer server and SGLang's bootstrap server (an HTTP server is a net.Server).
 */
export function listenOn(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
