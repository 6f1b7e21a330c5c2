// Picks the engine backend berth drives from a kind-tagged config. Routes never see which one.
import { ConfigError, type Config } from '../config.ts'
import { DockerEngine } from './docker/engine.ts'
import type { Engine } from './types.ts'

export function createEngine (config: Config): Engine {
  const engine = config.engine
  switch (engine.kind) {
    case 'docker':
      return new DockerEngine({ socketPath: engine.socketPath, timeoutMs: engine.timeoutMs, registryAuth: config.registryAuth })
    case 'swarm':
      throw new ConfigError('BERTH_ENGINE=swarm: the Swarm backend is being built on this seam')
  }
}
