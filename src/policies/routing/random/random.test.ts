import { runRoutingConformance } from '../conformance.ts';
import { createRandom } from './random.ts';

runRoutingConformance('random', createRandom);
