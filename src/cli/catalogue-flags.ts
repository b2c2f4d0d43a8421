/**
 * Commander parsers for flags that name a catalogue GPU or model. They take what a user copies from
 * vLLM, Hugging Face or nvidia-smi (src/model/models.ts resolveModelId, src/model/gpus.ts
 * resolveGpuId) and hand the command the catalogue id; anything else is a usage error whose message
 * says why and lists the ids.
 */
import { SwitchyardError } from '../core/errors.ts';
import { gpuIds, resolveGpuId } from '../model/gpus.ts';
import { modelIds, resolveModelId } from '../model/models.ts';
import { refusal } from './usage-error.ts';

/**
 * `resolve` as a commander parser: its refusal becomes a usage error with the same message and code
 * (an unknown name SY_ERR_UNKNOWN_NAME, as the catalogue throws it).
 */
function flagParser(resolve: (name: string) => string): (value: string) => string {
  return (value: string): string => {
    try {
      return resolve(value);
    } catch (error) {
      const code = error instanceof SwitchyardError ? error.code : 'SY_ERR_INVALID_ARGUMENT';
      throw refusal(`${(error as Error).message}.`, code);
    }
  };
}

/** Parser for a flag naming a catalogue GPU: yields its id. */
export const gpuFlag = flagParser(resolveGpuId);
/** Parser for a flag naming a catalogue model: yields its id. */
export const modelFlag = flagParser(resolveModelId);
/**
 * Parser for a flag naming a catalogue model that is also a served name (`engine sim --model`, whose
 * served name defaults to it): checked like modelFlag, but yields the value as typed, as vLLM serves
 * a model under the name it was given.
 */
export const servedModelFlag = flagParser((name) => {
  resolveModelId(name);
  return name;
});

/** Help text for a GPU flag: the ids, and that vendor names are accepted. */
export function gpuFlagHelp(what: string): string {
  return `${what}: ${gpuIds().join(', ')} (nvidia-smi names such as "NVIDIA H100 80GB HBM3" or H100-SXM are read as these)`;
}

/** Help text for a model flag: the ids, and that Hugging Face names are accepted. */
export function modelFlagHelp(what: string): string {
  return `${what}: ${modelIds().join(', ')} (Hugging Face names such as meta-llama/Llama-3.1-8B-Instruct are read as these)`;
}
