/**
 * Bounds on the connections clients hold: per client address (limits.connectionsPerClientMax) and
 * for all addresses together (limits.connectionsMax). Counted when a connection opens (before any
 * byte of a request is read) and released when it closes, so slow clients that open thousands of
 * connections and trickle bytes into each cannot crowd out everyone else, nor can a few addresses
 * together take every file descriptor: one connection past either bound is answered 429 on the raw
 * socket and closed, its request never read.
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

/** The bound a refused connection would pass. */
export type ConnectionBound = 'perClient' | 'total';

/** Open connections by client address, bounded per address and in all. */
export class ClientConnections {
  private readonly open = new Map<string, number>();
  /** Connections counted now, all addresses together. */
  total = 0;

  constructor(
    readonly perClientMax: number,
    readonly totalMax: number = Number.POSITIVE_INFINITY,
  ) {}

  /** Connections `address` holds now. */
  count(address: string): number {
    return this.open.get(address) ?? 0;
  }

  /** Addresses holding at least one connection. */
  get clients(): number {
    return this.open.size;
  }

  /**
   * Counts a new connection (released when it closes), or returns the bound it would pass: its
   * address already holds `perClientMax`, or all together hold `totalMax`. A socket with no known
   * address (already gone) is let through uncounted.
   */
  take(socket: Socket): ConnectionBound | undefined {
    const address = clientAddressOf(socket);
    if (address === undefined) return undefined;
    const held = this.count(address);
    if (held >= this.perClientMax) return 'perClient';
    if (this.total >= this.totalMax) return 'total';
    this.open.set(address, held + 1);
    this.total++;
    socket.once('close', () => this.release(address));
    return undefined;
  }

  private release(address: string): void {
    this.total--;
    const held = this.count(address) - 1;
    if (held > 0) this.open.set(address, held);
    else this.open.delete(address);
  }
}

/** The 429 a connection past the per-address bound gets. */
export function tooManyConnections(perClientMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_TOO_MANY_CONNECTIONS',
    `this client address already holds ${perClientMax} connections (limits.connectionsPerClientMax); close some or retry later`,
  );
}

/** The 429 a connection past the bound for all addresses together gets. */
export function tooManyConnectionsInAll(totalMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_TOO_MANY_CONNECTIONS',
    `the gateway already holds ${totalMax} client connections (limits.connectionsMax); retry later`,
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
  const over = connections.take(socket);
  if (over === undefined) return true;
  const error =
    over === 'perClient'
      ? tooManyConnections(connections.perClientMax)
      : tooManyConnectionsInAll(connections.totalMax);
  answerOnSocket(host, socket, error, { 'retry-after': '1' });
  return false;
}
