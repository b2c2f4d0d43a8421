/**
 * A bound on the connections one client address holds. Counted when a connection opens (before any
 * byte of a request is read) and released when it closes, so slow clients that open thousands of
 * connections and trickle bytes into each cannot crowd out everyone else: one connection past the
 * bound is answered 429 on the raw socket and closed, its request never read.
 */
import type { Socket } from 'node:net';
import { SwitchyardError } from '../core/errors.ts';
import { answerOnSocket, type ClientErrorHost } from './client-errors.ts';

/** The address a client is counted under (an IPv4 address mapped into IPv6 counts as the IPv4 one). */
export function clientAddressOf(socket: Pick<Socket, 'remoteAddress'>): string | undefined {
  const address = socket.remoteAddress;
  if (address === undefined) return undefined;
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

/** Open connections by client address, bounded per address. */
export class ClientConnections {
  private readonly open = new Map<string, number>();

  constructor(readonly perClientMax: number) {}

  /** Connections `address` holds now. */
  count(address: string): number {
    return this.open.get(address) ?? 0;
  }

  /** Addresses holding at least one connection. */
  get clients(): number {
    return this.open.size;
  }

  /**
   * Counts a new connection (released when it closes), or returns false when its address already
   * holds `perClientMax`. A socket with no known address (already gone) is let through uncounted.
   */
  take(socket: Socket): boolean {
    const address = clientAddressOf(socket);
    if (address === undefined) return true;
    const held = this.count(address);
    if (held >= this.perClientMax) return false;
    this.open.set(address, held + 1);
    socket.once('close', () => this.release(address));
    return true;
  }

  private release(address: string): void {
    const held = this.count(address) - 1;
    if (held > 0) this.open.set(address, held);
    else this.open.delete(address);
  }
}

/** The 429 a connection past the bound gets. */
export function tooManyConnections(perClientMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_TOO_MANY_CONNECTIONS',
    `this client address already holds ${perClientMax} connections (limits.connectionsPerClientMax); close some or retry later`,
  );
}

/**
 * Server 'connection': counts the socket, or answers 429 (Retry-After 1 s) and closes it unread.
 * Returns whether the connection was let in.
 */
export function admitConnection(
  connections: ClientConnections,
  host: ClientErrorHost,
  socket: Socket,
): boolean {
  if (connections.take(socket)) return true;
  answerOnSocket(host, socket, tooManyConnections(connections.perClientMax), { 'retry-after': '1' });
  return false;
}
