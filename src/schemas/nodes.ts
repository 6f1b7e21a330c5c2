// Node models: the machines containers run on, as `docker node ls` lists a cluster's.
import { Type, type Static } from 'typebox'

export const Node = Type.Object({
  id: Type.String({ description: 'Node id (on a single host: the engine\'s id).' }),
  name: Type.String({ description: 'Its hostname.' }),
  address: Type.Union([Type.String(), Type.Null()], { description: 'The address it is reached at: host-mode ports of the tasks on it answer there. Null on a single host.' }),
  role: Type.Enum(['manager', 'worker', 'standalone'], { type: 'string', description: 'Its role in the cluster; `standalone` for the single host of the docker backend.' }),
  leader: Type.Boolean({ description: 'Whether it is the cluster\'s leading manager.' }),
  state: Type.Enum(['ready', 'down', 'unknown', 'disconnected'], { type: 'string', description: 'Whether the managers hear from it: `down` when it stopped answering.' }),
  availability: Type.Enum(['active', 'pause', 'drain'], { type: 'string', description: 'Whether the scheduler places new tasks on it (active), keeps its tasks but places none (pause), or moves its tasks away (drain).' }),
  labels: Type.Record(Type.String(), Type.String(), { description: 'Node labels, which placement constraints match (`node.labels.gpu==true`); on a single host, the engine\'s labels.' }),
  resources: Type.Object({
    cpus: Type.Number({ description: 'CPU cores.' }),
    memory: Type.Integer({ description: 'Memory in bytes.' })
  }, { additionalProperties: false, description: 'What the node has.' }),
  engineVersion: Type.String({ description: 'The Docker Engine version it runs.' }),
  os: Type.String({ description: 'Operating system.' }),
  arch: Type.String({ description: 'Architecture.' })
}, { $id: 'Node', additionalProperties: false, description: 'A machine containers run on (`docker node ls`).' })
export type Node = Static<typeof Node>

export const nodeSchemas = [Node]
