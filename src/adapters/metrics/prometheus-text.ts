/**
 * A parser for the Prometheus text exposition format (version 0.0.4, what vLLM, SGLang and
 * llama.cpp serve on /metrics), written for the gateway's scrape loop: one pass over the string,
 * no regular expressions, no per-line allocation beyond the samples kept.
 *
 * Handled: `# HELP` / `# TYPE` and other comments (skipped), blank lines, `\r\n` endings, label
 * values with `\\`, `\"` and `\n` escapes, a trailing comma in the label set, `NaN`, `+Inf`,
 * `-Inf`, optional integer timestamps, and Prometheus 3's quoted metric and label names
 * (`{"name.with.dots", "label.x"="v"}`). Histogram and summary series are ordinary samples
 * (`x_bucket{le="0.5"}`, `x_sum`, `x_count`). Anything else is a `SwitchyardError` naming the
 * line, as Prometheus itself rejects a malformed scrape.
 */
import { SwitchyardError } from '../../core/errors.ts';

/** One sample: a metric name, its labels and a value. */
export interface Sample {
  readonly name: string;
  /** Label names to values; a null-prototype object (label names cannot collide with Object's). */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** The exposition's own timestamp, in ms since the epoch, when the line carries one. */
  readonly timestampMs?: number;
}

/** Options for `parsePrometheusText`. */
export interface ParseOptions {
  /**
   * Keeps only samples whose metric name passes; other lines are skipped without parsing their
   * labels or value (the cheap path for a scraper that needs a handful of series).
   */
  readonly keep?: (name: string) => boolean;
}

const HASH = 0x23; // #
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const EQUALS = 0x3d;
const COMMA = 0x2c;

/** Parses a Prometheus text exposition into samples, in the page's order. */
export function parsePrometheusText(text: string, opts: ParseOptions = {}): Sample[] {
  const samples: Sample[] = [];
  const parser = new LineParser(text, opts.keep);
  const end = text.length;
  let lineNo = 0;
  let pos = 0;
  while (pos < end) {
    lineNo++;
    let eol = text.indexOf('\n', pos);
    if (eol === -1) eol = end;
    const sample = parser.parse(pos, eol, lineNo);
    if (sample !== undefined) samples.push(sample);
    pos = eol + 1;
  }
  return samples;
}

class LineParser {
  private readonly text: string;
  private readonly keep: ((name: string) => boolean) | undefined;
  private pos = 0;
  private end = 0;
  private lineNo = 0;

  constructor(text: string, keep: ((name: string) => boolean) | undefined) {
    this.text = text;
    this.keep = keep;
  }

  parse(start: number, eol: number, lineNo: number): Sample | undefined {
    this.pos = start;
    this.end = eol > start && this.text.charCodeAt(eol - 1) === CR ? eol - 1 : eol;
    this.lineNo = lineNo;
    this.skipBlanks();
    if (this.pos >= this.end) return undefined;
    if (this.text.charCodeAt(this.pos) === HASH) return undefined;

    let name: string;
    let labels: Record<string, string> | undefined;
    if (this.text.charCodeAt(this.pos) === LBRACE) {
      // Prometheus 3: the name may be the first, quoted, item inside the braces.
      labels = Object.create(null) as Record<string, string>;
      name = this.labelSet(labels, true);
    } else {
      name = this.metricName();
    }
    if (this.keep !== undefined && !this.keep(name)) return undefined;
    if (labels === undefined) {
      labels = Object.create(null) as Record<string, string>;
      this.skipBlanks();
      if (this.peek() === LBRACE) this.labelSet(labels, false);
    }
    this.skipBlanks();
    const value = parseValue(this.token('a value'));
    if (value === undefined) throw this.error(`bad value '${this.lastToken}'`);
    this.skipBlanks();
    if (this.pos >= this.end) return { name, labels, value };
    const ts = this.token('a timestamp');
    const timestampMs = Number(ts);
    if (!/^-?\d+$/.test(ts) || !Number.isFinite(timestampMs)) throw this.error(`bad timestamp '${ts}'`);
    this.skipBlanks();
    if (this.pos < this.end) throw this.error(`unexpected text after the timestamp`);
    return { name, labels, value, timestampMs };
  }

  private lastToken = '';

  /** A run of non-blank characters. */
  private token(what: string): string {
    const start = this.pos;
    while (this.pos < this.end) {
      const c = this.text.charCodeAt(this.pos);
      if (c === SPACE || c === TAB) break;
      this.pos++;
    }
    if (this.pos === start) throw this.error(`expected ${what}`);
    this.lastToken = this.text.slice(start, this.pos);
    return this.lastToken;
  }

  private metricName(): string {
    const start = this.pos;
    while (this.pos < this.end && isNameChar(this.text.charCodeAt(this.pos), this.pos === start, true))
      this.pos++;
    if (this.pos === start) throw this.error('expected a metric name');
    return this.text.slice(start, this.pos);
  }

  /**
   * Parses `{...}` into `labels`. With `nameInside`, a leading quoted item without `=` is the
   * metric name, which is returned; otherwise returns ''.
   */
  private labelSet(labels: Record<string, string>, nameInside: boolean): string {
    this.pos++; // {
    let name = '';
    let first = true;
    for (;;) {
      this.skipBlanks();
      if (this.pos >= this.end) throw this.error('unterminated label set');
      const c = this.text.charCodeAt(this.pos);
      if (c === RBRACE) {
        this.pos++;
        break;
      }
      let key: string;
      if (c === QUOTE) {
        key = this.quoted();
        this.skipBlanks();
        if (nameInside && first && this.peek() !== EQUALS) {
          name = key;
          first = false;
          if (!this.afterItem()) break;
          continue;
        }
      } else {
        const start = this.pos;
        while (this.pos < this.end && isNameChar(this.text.charCodeAt(this.pos), this.pos === start, false))
          this.pos++;
        if (this.pos === start) throw this.error(`bad character '${this.text[this.pos]}' in the label set`);
        key = this.text.slice(start, this.pos);
        this.skipBlanks();
      }
      first = false;
      if (this.peek() !== EQUALS) throw this.error(`expected '=' after label '${key}'`);
      this.pos++;
      this.skipBlanks();
      if (this.peek() !== QUOTE) throw this.error(`expected a quoted value for label '${key}'`);
      labels[key] = this.quoted();
      if (!this.afterItem()) break;
    }
    if (nameInside && name === '') throw this.error('expected a metric name');
    return name;
  }

  /** After a label: consumes ',' (true: more may follow) or '}' (false: the set ended). */
  private afterItem(): boolean {
    this.skipBlanks();
    if (this.pos >= this.end) throw this.error('unterminated label set');
    const c = this.peek();
    if (c === COMMA) {
      this.pos++;
      return true;
    }
    if (c === RBRACE) {
      this.pos++;
      return false;
    }
    throw this.error(`expected ',' or '}' in the label set`);
  }

  /** A double-quoted string with \\, \" and \n escapes; the cursor is on the opening quote. */
  private quoted(): string {
    const text = this.text;
    let pos = this.pos + 1;
    let start = pos;
    let out = '';
    for (;;) {
      if (pos >= this.end) throw this.error('unterminated quoted string');
      const c = text.charCodeAt(pos);
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        out += text.slice(start, pos);
        const next = text.charCodeAt(pos + 1);
        if (next === BACKSLASH) out += '\\';
        else if (next === QUOTE) out += '"';
        else if (next === 0x6e /* n */) out += '\n';
        else throw this.error(`bad escape '\\${text[pos + 1] ?? ''}'`);
        pos += 2;
        start = pos;
        continue;
      }
      pos++;
    }
    out += text.slice(start, pos);
    this.pos = pos + 1;
    return out;
  }

  private peek(): number {
    return this.pos < this.end ? this.text.charCodeAt(this.pos) : -1;
  }

  private skipBlanks(): void {
    while (this.pos < this.end) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== SPACE && c !== TAB) return;
      this.pos++;
    }
  }

  private error(what: string): SwitchyardError {
    const line = this.text.slice(this.text.lastIndexOf('\n', this.end - 1) + 1, this.end);
    return new SwitchyardError(
      'SY_ERR_UPSTREAM',
      `malformed Prometheus text at line ${this.lineNo}: ${what} in '${line.length > 120 ? `${line.slice(0, 120)}...` : line}'`,
      { param: 'metrics', line: this.lineNo },
    );
  }
}

/** [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; labels exclude ':'. */
function isNameChar(c: number, first: boolean, colon: boolean): boolean {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f) return true;
  if (c === 0x3a) return colon;
  return !first && c >= 0x30 && c <= 0x39;
}

/** A Go-style float (what Prometheus's own parser accepts): decimal or exponent notation, NaN, ±Inf. */
function parseValue(token: string): number | undefined {
  const c = token.charCodeAt(token.length - 1);
  if (!((c >= 0x30 && c <= 0x39) || c === 0x2e)) return specialValue(token);
  // Number() would also take '0x1f' and similar; Prometheus values are decimal.
  if (token.includes('x') || token.includes('X') || token.includes('_')) return undefined;
  const value = Number(token);
  return Number.isNaN(value) ? undefined : value;
}

function specialValue(token: string): number | undefined {
  switch (token.toLowerCase()) {
    case 'nan':
    case '+nan':
    case '-nan':
      return Number.NaN;
    case 'inf':
    case '+inf':
    case 'infinity':
    case '+infinity':
      return Number.POSITIVE_INFINITY;
    case '-inf':
    case '-infinity':
      return Number.NEGATIVE_INFINITY;
    default:
      return undefined;
  }
}
