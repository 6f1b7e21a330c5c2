// Container resource usage, as `docker stats` shows it: computed from the engine's raw counters the
// way the Docker CLI computes them.
import { Type, type Static } from 'typebox'

export const ContainerStats = Type.Object({
  time: Type.String({ format: 'date-time', description: 'When the engine took the reading.' }),
  cpuPercent: Type.Number({ description: 'CPU used since the previous reading, in percent of one core (200 is two cores busy), as `docker stats` shows it.' }),
  onlineCpus: Type.Integer({ description: 'CPUs the host has online.' }),
  cpuSeconds: Type.Number({ description: 'CPU time it has used since it started, over all cores, in seconds.' }),
  memory: Type.Object({
    used: Type.Integer({ description: 'Bytes used, the page cache that can be dropped not counted (as `docker stats`).' }),
    limit: Type.Integer({ description: 'Bytes it may use: its memory limit, or the host\'s memory.' }),
    percent: Type.Number({ description: '`used` in percent of `limit`.' })
  }, { additionalProperties: false, description: 'Memory.' }),
  network: Type.Object({
    rxBytes: Type.Integer({ description: 'Bytes received, over all its networks.' }),
    txBytes: Type.Integer({ description: 'Bytes sent, over all its networks.' })
  }, { additionalProperties: false, description: 'Network I/O since it started.' }),
  blockIo: Type.Object({
    readBytes: Type.Integer({ description: 'Bytes read from block devices.' }),
    writeBytes: Type.Integer({ description: 'Bytes written to block devices.' })
  }, { additionalProperties: false, description: 'Block I/O since it started.' }),
  pids: Type.Integer({ description: 'Processes and threads it runs.' }),
  replicas: Type.Optional(Type.Integer({ minimum: 2, description: 'On a cluster, asked without a replica: how many running replicas this reading adds up (each figure is their sum). Absent for one replica\'s reading.' }))
}, { $id: 'ContainerStats', additionalProperties: false, description: 'One reading of a container\'s resource usage, as `docker stats` computes it.' })
export type ContainerStats = Static<typeof ContainerStats>

export const statsSchemas = [ContainerStats]
