import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { runCliInProcess as runCli } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';
import {
  fraction,
  intInRange,
  nonNegativeInt,
  nonNegativeNumber,
  positiveInt,
  positiveNumber,
  TCP_PORT_MAX,
  tcpPort,
} from './parse.ts';

describe('tcpPort', () => {
  it('accepts 0 (any free port), 8000 and 65535', () => {
    assert.equal(tcpPort('0'), 0);
    assert.equal(tcpPort('8000'), 8000);
    assert.equal(tcpPort(String(TCP_PORT_MAX)), 65_535);
  });

  it('refuses 65536, negatives, fractions and words', () => {
    for (const bad of ['65536', '70000', '-1', '80.5', '1e3', 'http', '', ' '])
      assert.throws(() => tcpPort(bad), InvalidArgumentError, bad);
  });
});

describe('port flags', () => {
  const cases: readonly (readonly string[])[] = [
    ['serve', '--port'],
    ['engine', 'sim', '--port'],
    ['engine', 'llama', '--port'],
    ['engine', 'llama', '--kv-port'],
    ['engine', 'llama', '--bootstrap-port'],
  ];
  for (const flag of cases) {
    it(`${flag.join(' ')} 65536 is a usage error naming the flag`, async () => {
      const { code, stderr } = await runCli([...flag, '65536']);
      assert.equal(code, USAGE_EXIT_CODE);
      assert.match(stderr, new RegExp(`${flag.at(-1)} <port>' argument '65536' is invalid`));
      assert.match(stderr, /not a TCP port/);
    });
  }
});

describe('number flags', () => {
  it('read decimal notation, fractions and exponents included', () => {
    assert.equal(positiveNumber('2.5'), 2.5);
    assert.equal(positiveNumber('.5'), 0.5);
    assert.equal(positiveNumber('1e3'), 1000);
    assert.equal(positiveInt('16'), 16);
    assert.equal(nonNegativeInt('0'), 0);
    assert.equal(nonNegativeNumber('0'), 0);
    assert.equal(fraction('0.9'), 0.9);
  });

  it('refuse hex, binary and octal literals and blanks, which Number() reads as numbers', () => {
    for (const parse of [positiveInt, nonNegativeInt, positiveNumber, nonNegativeNumber, fraction])
      for (const bad of ['0x10', '0b1', '0o7', '', ' ', 'Infinity'])
        assert.throws(() => parse(bad), InvalidArgumentError, `${parse.name}('${bad}')`);
  });

  it('sim --rate 0x10 is a usage error naming the flag', async () => {
    const { code, stderr } = await runCli(['sim', '--rate', '0x10', '--requests', '1']);
    assert.equal(code, USAGE_EXIT_CODE);
    assert.match(stderr, /--rate <req\/s>' argument '0x10' is invalid/);
  });
});

describe('intInRange', () => {
  it('takes the bounds and what lies between, refuses the rest', () => {
    const parse = intInRange(1, 64);
    assert.equal(parse('1'), 1);
    assert.equal(parse('64'), 64);
    for (const bad of ['0', '65', '1.5', '0x10', '', '99999999999'])
      assert.throws(() => parse(bad), InvalidArgumentError, bad);
  });
});
