/**
 * Raw HTTP/1.1 over a socket, for e2e tests that must send what fetch cannot (a body that stalls or
 * trickles) and read what the gateway answers before it closes the connection.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/** A connected socket to `url`'s host and port. */
export async function openSocket(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  return socket;
}

/**
 * Everything `socket` receives until the gateway closes it; rejects past `guardMs` (a hang guard,
 * far past any deadline under test). Listens from the call on: call it before writing the request.
 */
export function readUntilClose(socket: Socket, guardMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${guardMs} ms; got: ${text.slice(0, 300)}`));
    }, guardMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}
