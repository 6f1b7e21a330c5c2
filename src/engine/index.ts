// Picks the engine backend berth drives from a kind-tagged config. Routes never see which one.
import type { Config } from '../config.ts'
import { DockerEngine } from './docker/engine.ts'
import { SwarmEngine } from './swarm/engine.ts'
import type { Engine } from './types.ts'

export async function createEngine (config: Config): Promise<Engine> {
  const engine = config.engine
  switch (engine.kind) {
    case 'docker':
      return new DockerEngine({ socketPath: engine.socketPath, timeoutMs: engine.timeoutMs, registryAuth: config.registryAuth })
    case 'swarm':
      return new SwarmEngine({
        socketPath: engine.socketPath,
        timeoutMs: engine.timeoutMs,
        publishMode: engine.publishMode,
        placementTimeoutMs: engine.placementTimeoutMs,
        registryAuth: config.registryAuth
      })
    case 'kubernetes': {
      // Loaded only for this backend: the Kubernetes client is ~27 MB of generated API models, and
      // tens of MB of memory once imported, which the other backends do without.
      const { KubernetesEngine } = await import('./kubernetes/engine.ts')
      return new KubernetesEngine({
        kubeconfig: engine.kubeconfig,
        ...(engine.context === undefined ? {} : { context: engine.context }),
        namespace: engine.namespace,
        timeoutMs: engine.timeoutMs,
        placementTimeoutMs: engine.placementTimeoutMs,
        registryAuth: config.registryAuth
      })
    }
  }
}
