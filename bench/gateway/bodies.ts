/**
 * Realistic chat completion bodies for the gateway benchmark: a few long system prompts shared by
 * many conversations, each with some history and a new user turn, so a prefix-aware router has real
 * text to hash and real shared prefixes to find. Deterministic for a seed.
 */
import { Rng } from '../../src/core/rng.ts';

/** The model every body names and every benchmark backend serves. */
export const BENCH_MODEL = 'llama-3.1-8b';

const WORDS = (
  'the a of to and in is for that on with as be are this by it or from at an not you your can will ' +
  'request response model token cache prefix routing cluster latency throughput queue engine batch ' +
  'instance gateway policy server client stream answer question summary document customer order ' +
  'account invoice refund shipping product support ticket priority status update please thanks ' +
  'explain describe list compare write code function error message example step result value table'
).split(' ');

function sentence(rng: Rng, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(rng.pick(WORDS));
  const text = out.join(' ');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

function paragraph(rng: Rng, chars: number): string {
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const s = sentence(rng, 8 + rng.int(12));
    parts.push(s);
    length += s.length + 1;
  }
  return parts.join(' ');
}

export interface BodyOptions {
  /** Distinct system prompts (agents). */
  readonly systemPrompts: number;
  /** Bodies in all; conversation i uses system prompt i % systemPrompts. */
  readonly bodies: number;
  readonly seed: number;
  readonly stream: boolean;
  readonly maxTokens: number;
}

export const DEFAULT_BODY_OPTIONS: BodyOptions = {
  systemPrompts: 8,
  bodies: 64,
  seed: 1,
  stream: false,
  maxTokens: 16,
};

/**
 * JSON bodies for `POST /v1/chat/completions`: a system prompt of about 2,400 characters (600
 * tokens), zero to two earlier exchanges, and a new user message; 2.8 to 5.5 KB each (mean 3.9 KB).
 */
export function chatBodies(options: BodyOptions = DEFAULT_BODY_OPTIONS): string[] {
  const rng = new Rng(options.seed);
  const systems: string[] = [];
  for (let s = 0; s < options.systemPrompts; s++) {
    systems.push(`You are support agent ${s} for a serving company. ${paragraph(rng, 2400)}`);
  }
  const bodies: string[] = [];
  for (let i = 0; i < options.bodies; i++) {
    const messages: { role: string; content: string }[] = [
      { role: 'system', content: systems[i % options.systemPrompts] ?? '' },
    ];
    const turns = rng.int(3);
    for (let t = 0; t < turns; t++) {
      messages.push({ role: 'user', content: paragraph(rng, 150 + rng.int(300)) });
      messages.push({ role: 'assistant', content: paragraph(rng, 300 + rng.int(600)) });
    }
    messages.push({ role: 'user', content: paragraph(rng, 80 + rng.int(250)) });
    bodies.push(
      JSON.stringify({
        model: BENCH_MODEL,
        messages,
        max_tokens: options.maxTokens,
        temperature: 0.7,
        stream: options.stream,
      }),
    );
  }
  return bodies;
}

/** The non-streaming completion every upstream answers with (331 bytes). */
export function completionResponse(model: string): string {
  return JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1_700_000_000,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: 'Your order has shipped and will arrive within three to five business days.',
        },
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 900, completion_tokens: 16, total_tokens: 916 },
  });
}

/** One streamed chunk event, `data: {...}\n\n`, as OpenAI and vLLM send them (182 bytes). */
export function chunkEvent(model: string, finish: boolean): string {
  const chunk = {
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model,
    choices: [
      { index: 0, delta: finish ? {} : { content: ' token' }, finish_reason: finish ? 'stop' : null },
    ],
  };
  return `data: ${JSON.stringify(chunk)}\n\n`;
}
