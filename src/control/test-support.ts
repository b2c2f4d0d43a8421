/**
 * Fixtures for the live control tests (live-runner, prewarm, loaded-model-cap): a one-slot actuator
 * over a gateway that holds nothing in flight, a loop that always wants the same count, a runner of
 * one model with an empty view, and engines on a dead port. Test code only.
 */
import type { ManualClock } from '../core/clock.ts';
import { TEST_VARIANT } from './autoscalers/test-support.ts';
import { LiveControlRunner, type LiveRunnerOptions } from './live-runner.ts';
import {
  type BackendPool,
  type EngineLauncher,
  type LaunchedEngine,
  LocalActuator,
} from './local-actuator.ts';
import type { ControlLoop } from './types.ts';

/** The gateway's side of an actuator, doing nothing: no request is ever in flight. */
export const IDLE_BACKENDS: BackendPool = { add() {}, setDraining() {}, inFlight: () => 0, remove() {} };

/** Lets what is queued behind settled promises (a launch's completion) run. */
export const flush = (): Promise<unknown> => new Promise((resolve) => setImmediate(resolve));

/** A started engine of `model` on a port nothing listens on; `onStop` runs when it is stopped. */
export function fakeEngine(model: string, onStop: () => void = () => {}): LaunchedEngine {
  return {
    url: 'http://127.0.0.1:1',
    kvEvents: null,
    model,
    pid: 1,
    stop: async () => {
      onStop();
    },
  };
}

/** A launcher whose engines never finish starting (a cold start that lasts the whole test); records each launch's index. */
export function neverStartingLauncher(launched: number[]): EngineLauncher {
  return {
    launch: (index) => {
      launched.push(index);
      return new Promise(() => {});
    },
  };
}

/** An actuator of one slot of TEST_VARIANT, in front of IDLE_BACKENDS. */
export function oneSlotActuator(launcher: EngineLauncher, clock: ManualClock): LocalActuator {
  return new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances: 1,
    launcher,
    clock,
    backends: IDLE_BACKENDS,
  });
}

/** A loop named `name` that always asks for `replicas` of TEST_VARIANT. */
export function fixedLoop(replicas: number, name = 'scripted'): ControlLoop {
  return { name, decide: () => ({ targets: [{ variant: TEST_VARIANT, replicas }], reason: 'loop' }) };
}

/** What a test says of its runner; the rest is TEST_VARIANT, no objectives and an empty view. */
export type TestRunnerOptions = Pick<
  LiveRunnerOptions,
  'loop' | 'actuator' | 'model' | 'intervalMs' | 'clock' | 'queued' | 'scaleToZero'
>;

/** A runner of one model on TEST_VARIANT whose view shows no instance. */
export function testRunner(options: TestRunnerOptions): LiveControlRunner {
  return new LiveControlRunner({
    ...options,
    variant: TEST_VARIANT,
    objectives: {},
    view: (nowMs) => ({ nowMs, instances: [] }),
  });
}
