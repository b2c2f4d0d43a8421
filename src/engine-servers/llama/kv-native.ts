/**
 * Sequence states in memory instead of files: llama.cpp's `llama_state_seq_get_size / _get_data /
 * _set_data`, which node-llama-cpp 3.21 does not bind (it has only `saveStateToFile` /
 * `loadStateFromFile`). A small optional addon (native/kv-state/, built by `npm run build:kv-native`,
 * scripts/build-kv-native.ts) reads the `llama_context*` out of node-llama-cpp's native context and
 * calls them on the thread pool, on a caller's buffer.
 *
 * Optional: `loadKvNative()` says why it is unavailable (not built, built for another node-llama-cpp
 * or Node, failed to load) and the P/D engines then use the file path. Each context is checked once
 * (`contextInfo`: llama.cpp's own context size and model must match node-llama-cpp's) before its
 * first state call.
 *
 * The calls hold node-llama-cpp's own locks (the sequence's "evaluate" and the context's "context",
 * lifecycle-utils' `acquireLock`, the module node-llama-cpp imports) as its file methods do, and
 * `loadSequenceState` resets the sequence's JS-side bookkeeping exactly as `loadStateFromFile` does
 * in 3.21.1 (the tokens a state holds travel beside it: the buffer form carries none).
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireLock } from 'lifecycle-utils';
import type { LlamaContextSequence, Token } from 'node-llama-cpp';

/** The node-llama-cpp version whose internals this file and native/kv-state/ are written against. */
export const KV_NATIVE_NODE_LLAMA_CPP_VERSION = '3.21.1';

/** The repository root (this file is src/engine-servers/llama/ or dist/engine-servers/llama/). */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Where scripts/build-kv-native.ts puts the addon and its stamp. */
export const KV_NATIVE_DIR = join(ROOT, 'native', 'kv-state', 'build');
export const KV_NATIVE_ADDON = join(KV_NATIVE_DIR, 'kv_state.node');
export const KV_NATIVE_STAMP = join(KV_NATIVE_DIR, 'kv_state.json');

/** What the addon exports (native/kv-state/kv_state.cc). */
interface KvNativeAddon {
  contextInfo(ctx: object): { nCtx: number; nSeqMax: number; modelMatches: boolean };
  seqStateSize(ctx: object, seqId: number): number;
  seqStateRead(ctx: object, seqId: number, target: Uint8Array): Promise<number>;
  seqStateWrite(ctx: object, seqId: number, source: Uint8Array, length?: number): Promise<number>;
  readonly seqFileMagic: number;
  readonly seqFileVersion: number;
  readonly bufferMagic: number;
}

/** llama.cpp's sequence-state file header: magic, version, token count (uint32 each). */
const FILE_HEADER_BYTES = 12;
/** What llama_state_seq_get_data writes before the state: its magic and the sequence id. */
const BUFFER_PREFIX_BYTES = 8;

/** What the build wrote beside the addon. */
export interface KvNativeStamp {
  nodeLlamaCpp: string;
  nodeModules: string;
  libllama: { path: string; size: number };
  builtAt: string;
  selfTest: string;
}

/** The fields of node-llama-cpp 3.21.1's LlamaContextSequence this file reads and sets. */
interface SequenceInternals {
  _sequenceId: number;
  _lock: object;
  _context: {
    _ctx: object;
    contextSize: number;
    /** Holds off the context's disposal while a handle is alive (node-llama-cpp's DisposeGuard). */
    _backendContextDisposeGuard: { createPreventDisposalHandle(): { dispose(): void } };
  };
  _contextTokens: Token[];
  _nextTokenIndex: number;
  _loadedTokenPredictions: unknown[];
  _tokenPredictorOwner: object;
  _abortTokenPredictor(skipClearingPredictionsFromState?: boolean): Promise<void>;
  _ensureNotDisposed(): void;
  readonly contextSize: number;
  readonly contextTokens: Token[];
}

export type KvNativeState =
  | { readonly ok: true; readonly api: KvNative }
  | { readonly ok: false; readonly reason: string };

let loaded: KvNativeState | undefined;

/** The installed node-llama-cpp's version (its package.json), or undefined. */
function nodeLlamaCppVersion(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve('node-llama-cpp');
    let dir = dirname(main);
    for (let i = 0; i < 6; i++) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'node-llama-cpp') return pkg.version;
      }
      dir = dirname(dir);
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * The buffer API if the addon is built for this node-llama-cpp and this Node, else why not. Loads it
 * once per process; load it after node-llama-cpp's own binding (`getLlama`) so that the libllama it
 * links is the one already in the process. `SWITCHYARD_KV_NATIVE=0` turns it off (the file path).
 */
export function loadKvNative(): KvNativeState {
  if (loaded !== undefined) return loaded;
  loaded = loadOnce();
  return loaded;
}

function loadOnce(): KvNativeState {
  if (process.env.SWITCHYARD_KV_NATIVE === '0')
    return { ok: false, reason: 'turned off (SWITCHYARD_KV_NATIVE=0)' };
  if (!existsSync(KV_NATIVE_ADDON) || !existsSync(KV_NATIVE_STAMP)) {
    return { ok: false, reason: 'not built (npm run build:kv-native)' };
  }
  const stamp = readKvNativeStamp(KV_NATIVE_STAMP);
  if (typeof stamp === 'string') return { ok: false, reason: `its stamp is unreadable: ${stamp}` };
  const version = nodeLlamaCppVersion();
  if (version !== KV_NATIVE_NODE_LLAMA_CPP_VERSION || stamp.nodeLlamaCpp !== version) {
    return {
      ok: false,
      reason: `built for node-llama-cpp ${stamp.nodeLlamaCpp}, written for ${KV_NATIVE_NODE_LLAMA_CPP_VERSION}, installed ${version ?? 'none'} (npm run build:kv-native)`,
    };
  }
  const locks = lockModuleMismatch(
    fileURLToPath(import.meta.url),
    createRequire(import.meta.url).resolve('node-llama-cpp'),
  );
  if (locks !== undefined) return { ok: false, reason: locks };
  if (stamp.nodeModules !== process.versions.modules) {
    return {
      ok: false,
      reason: `built for Node ABI ${stamp.nodeModules}, running ${process.versions.modules}`,
    };
  }
  try {
    const size = existsSync(stamp.libllama.path) ? statSync(stamp.libllama.path).size : -1;
    if (size !== stamp.libllama.size) {
      return { ok: false, reason: `the prebuilt libllama it was linked to changed (${stamp.libllama.path})` };
    }
    return { ok: true, api: openKvNative(KV_NATIVE_ADDON) };
  } catch (error) {
    return { ok: false, reason: `failed to load: ${(error as Error).message.split('\n')[0]}` };
  }
}

/**
 * Why the lifecycle-utils this file takes node-llama-cpp's locks with (resolved from `from`) is not
 * the one node-llama-cpp itself uses (resolved from its entry, `nodeLlamaCppMain`), or undefined
 * when it is. Its locks live in a module-level map: another copy (an install that nests one under
 * node-llama-cpp; the root does not depend on lifecycle-utils itself) would lock nothing, and a state
 * call could run beside a decode on the same context.
 */
export function lockModuleMismatch(from: string, nodeLlamaCppMain: string): string | undefined {
  try {
    const ours = realpathSync(createRequire(from).resolve('lifecycle-utils'));
    const theirs = realpathSync(createRequire(nodeLlamaCppMain).resolve('lifecycle-utils'));
    return ours === theirs
      ? undefined
      : `node-llama-cpp locks with another lifecycle-utils (${theirs}) than kv-native.ts (${ours})`;
  } catch (error) {
    return `cannot resolve lifecycle-utils: ${(error as Error).message.split('\n')[0]}`;
  }
}

/**
 * The stamp at `path`, or why it cannot be read (missing, not JSON, a field missing or of the wrong
 * type: a write cut short). The build rebuilds over such a stamp; a load falls back to files.
 */
export function readKvNativeStamp(path: string): KvNativeStamp | string {
  let got: unknown;
  try {
    got = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    return (error as Error).message;
  }
  const s = got as Partial<KvNativeStamp> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.nodeLlamaCpp !== 'string' ||
    typeof s.nodeModules !== 'string' ||
    typeof s.libllama !== 'object' ||
    s.libllama === null ||
    typeof s.libllama.path !== 'string' ||
    typeof s.libllama.size !== 'number'
  )
    return 'not a stamp (nodeLlamaCpp, nodeModules, libllama.path and libllama.size wanted)';
  return s as KvNativeStamp;
}

/** Loads the addon at `path` (the build's self-test loads one not yet in place). */
export function openKvNative(path: string): KvNative {
  const require = createRequire(import.meta.url);
  return new KvNative(require(resolve(path)) as KvNativeAddon);
}

/** For tests: forget the loaded state (the addon itself stays loaded in the process). */
export function resetKvNativeForTests(): void {
  loaded = undefined;
}

/** Sequence states to and from memory for node-llama-cpp 3.21.1's sequences. */
export class KvNative {
  /** Contexts checked (llama.cpp's size and model agree with node-llama-cpp's), and the outcome. */
  private readonly checked = new WeakMap<object, string | true>();

  constructor(private readonly addon: KvNativeAddon) {}

  private internals(sequence: LlamaContextSequence): SequenceInternals {
    const s = sequence as unknown as SequenceInternals;
    const ctx = s._context?._ctx;
    if (typeof s._sequenceId !== 'number' || typeof ctx !== 'object' || ctx === null) {
      throw new Error(`not a node-llama-cpp ${KV_NATIVE_NODE_LLAMA_CPP_VERSION} sequence`);
    }
    let check = this.checked.get(ctx);
    if (check === undefined) {
      const info = this.addon.contextInfo(ctx);
      check =
        info.modelMatches && info.nCtx >= s._context.contextSize
          ? true
          : `llama.cpp's context (n_ctx ${info.nCtx}, model ${info.modelMatches ? 'matches' : 'differs'}) is not node-llama-cpp's (${s._context.contextSize} tokens)`;
      this.checked.set(ctx, check);
    }
    if (check !== true) throw new Error(check);
    return s;
  }

  /**
   * The sequence's state laid out exactly as llama.cpp's sequence-state file (what saveStateToFile
   * writes: magic, version, token count, the tokens, the state), in `reuse` when it is large enough,
   * else in a new buffer. llama_state_seq_get_data writes the state in place (its own 8-byte prefix
   * lands on the tokens' end, which are written after it): one copy, from the KV cache to the buffer.
   * Either side of a pair may use files or buffers: the bytes on the wire are the same.
   */
  async saveSequenceState(
    sequence: LlamaContextSequence,
    reuse?: Buffer,
  ): Promise<{ buffer: Buffer; bytes: number; tokens: number }> {
    const s = this.internals(sequence);
    const evaluatorLock = await acquireLock([s._lock, 'evaluate']);
    const contextLock = await acquireLock([s._context, 'context']);
    try {
      s._ensureNotDisposed();
      const ctx = s._context._ctx;
      const tokens = s.contextTokens;
      const head = FILE_HEADER_BYTES + 4 * tokens.length;
      const size = this.addon.seqStateSize(ctx, s._sequenceId);
      if (size < BUFFER_PREFIX_BYTES) throw new Error(`llama.cpp gave a ${size}-byte sequence state`);
      const bytes = head - BUFFER_PREFIX_BYTES + size;
      const buffer = reuse !== undefined && reuse.byteLength >= bytes ? reuse : Buffer.allocUnsafeSlow(bytes);
      // The native call runs on the thread pool: the context must not be freed under it (an engine
      // closing while a save runs), as node-llama-cpp guards its own evaluations.
      const keep = s._context._backendContextDisposeGuard.createPreventDisposalHandle();
      try {
        await this.addon.seqStateRead(ctx, s._sequenceId, buffer.subarray(head - BUFFER_PREFIX_BYTES, bytes));
      } finally {
        keep.dispose();
      }
      buffer.writeUInt32LE(this.addon.seqFileMagic, 0);
      buffer.writeUInt32LE(this.addon.seqFileVersion, 4);
      buffer.writeUInt32LE(tokens.length, 8);
      for (let i = 0; i < tokens.length; i++)
        buffer.writeUInt32LE(tokens[i] as number, FILE_HEADER_BYTES + 4 * i);
      return { buffer, bytes, tokens: tokens.length };
    } finally {
      contextLock.dispose();
      evaluatorLock.dispose();
    }
  }

  /**
   * Sets the sequence's state from `source[0, bytes)`, laid out as llama.cpp's sequence-state file
   * (saveSequenceState's, or a file's bytes); as node-llama-cpp's loadStateFromFile, the sequence's
   * history is replaced. The 8 bytes before the state (the tokens' end, read first) are overwritten
   * with llama_state_seq_set_data's prefix during the call, and put back after it. A state llama.cpp
   * refuses leaves the sequence empty and throws.
   */
  async loadSequenceState(sequence: LlamaContextSequence, source: Buffer, bytes: number): Promise<void> {
    const s = this.internals(sequence);
    if (bytes < FILE_HEADER_BYTES || bytes > source.byteLength)
      throw new Error(`a ${bytes}-byte state is too short`);
    if (
      source.readUInt32LE(0) !== this.addon.seqFileMagic ||
      source.readUInt32LE(4) !== this.addon.seqFileVersion
    ) {
      throw new Error('not a llama.cpp sequence state of this version (magic or version differ)');
    }
    const count = source.readUInt32LE(8);
    if (count > s.contextSize) {
      throw new Error(`the state holds ${count} tokens, more than the sequence's ${s.contextSize}`);
    }
    const head = FILE_HEADER_BYTES + 4 * count;
    if (head + 1 > bytes) throw new Error(`a ${bytes}-byte state cannot hold ${count} tokens and their KV`);
    const tokens: Token[] = new Array(count);
    for (let i = 0; i < count; i++) tokens[i] = source.readUInt32LE(FILE_HEADER_BYTES + 4 * i) as Token;
    const evaluatorLock = await acquireLock([s._lock, 'evaluate']);
    const contextLock = await acquireLock([s._context, 'context']);
    try {
      s._ensureNotDisposed();
      s._tokenPredictorOwner = {};
      await s._abortTokenPredictor(true);
      s._ensureNotDisposed();
      s._loadedTokenPredictions.length = 0;
      s._nextTokenIndex = 0;
      s._contextTokens = [];
      const prefixAt = head - BUFFER_PREFIX_BYTES;
      const kept = Buffer.from(source.subarray(prefixAt, head));
      source.writeUInt32LE(this.addon.bufferMagic, prefixAt);
      source.writeInt32LE(s._sequenceId, head - 4);
      const keep = s._context._backendContextDisposeGuard.createPreventDisposalHandle();
      try {
        await this.addon.seqStateWrite(s._context._ctx, s._sequenceId, source.subarray(prefixAt, bytes));
      } finally {
        keep.dispose();
        // The state's bytes as they came (a caller may still load them from a file).
        kept.copy(source, prefixAt);
      }
      s._contextTokens = tokens;
      s._nextTokenIndex = tokens.length;
      s._loadedTokenPredictions.length = 0;
    } finally {
      contextLock.dispose();
      evaluatorLock.dispose();
    }
  }
}
