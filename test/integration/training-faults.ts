// Members that lie, for the tests of robust aggregation: a wrapper of a member's gradient computation
// (GroupMemberInit.wrapComputer) that alters every gradient it computes.
import { SeededRandom } from '../../kernels/data/random.js'
import type { GradientComputer } from '../../protocols/training/gradients.js'

export interface GradientFault {
  /** 'scale': multiply the true gradient by `factor`; 'random': a random direction of `factor` x its norm */
  kind: 'scale' | 'random'
  factor: number
}

/**
 * wrapComputer for a member that lies with `fault`;
 * `seed` and `tag` make its random directions reproducible.
 */
export function lyingComputer(
  fault: GradientFault,
  seed: number,
  tag: string,
): (standard: GradientComputer) => GradientComputer {
  return (standard) => ({
    async compute(step, params) {
      const result = await standard.compute(step, params)
      lie(result.gradient, fault, SeededRandom.stream(seed, `fault/${tag}/${step}`))
      return result
    },
    dispose: () => standard.dispose(),
  })
}

function lie(gradient: Float32Array, fault: GradientFault, random: SeededRandom): void {
  if (fault.kind === 'scale') {
    for (let i = 0; i < gradient.length; i++) gradient[i] *= fault.factor
    return
  }
  let norm = 0
  for (const value of gradient) norm += value * value
  norm = Math.sqrt(norm)
  let randomNorm = 0
  for (let i = 0; i < gradient.length; i++) {
    gradient[i] = random.normal()
    randomNorm += gradient[i] * gradient[i]
  }
  const scale = (fault.factor * norm) / Math.sqrt(randomNorm)
  for (let i = 0; i < gradient.length; i++) gradient[i] *= scale
}
