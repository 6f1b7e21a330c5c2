// Volume models: what `docker volume create` takes, and volumes as berth reports them — with the
// space they use and the containers that mount them.
import { Type, type Static } from 'typebox'
import { keyedMap } from './common.ts'

/** The engine's rule for volume names; also the names a run's `volumes` may use. */
export const VOLUME_NAME_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$'
const printable = '^[^\\u0000-\\u001f\\u007f]*$'

export const VolumeUser = Type.Object({
  id: Type.String({ description: 'Container id.' }),
  name: Type.String({ description: 'Container name.' }),
  state: Type.String({ description: 'Container state (running, exited, …).' })
}, { additionalProperties: false, description: 'A container that mounts the volume.' })
export type VolumeUser = Static<typeof VolumeUser>

export const Volume = Type.Object({
  name: Type.String({ description: 'Volume name.' }),
  driver: Type.String({ description: 'Volume driver (`local`).' }),
  labels: Type.Record(Type.String(), Type.String(), { description: 'Labels, berth\'s own (`io.berth.*`) included.' }),
  createdAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it was created, when the engine says.' }),
  size: Type.Union([Type.Integer(), Type.Null()], {
    description: 'Bytes it holds, as `docker system df -v` reports them; null unless asked for with `size=true`, or when the driver cannot say.'
  }),
  usedBy: Type.Array(VolumeUser, { description: 'The containers (in any state) that mount it, among those the token may see. A container in any state keeps a volume in use.' }),
  nodes: Type.Optional(Type.Array(Type.String(), {
    description: 'On a cluster: the node it lives on, where every container that mounts it runs (more than one only for copies made outside berth, which no container can mount).'
  })),
  capacity: Type.Optional(Type.Integer({
    minimum: 0,
    description: 'Bytes it may hold, where the backend bounds a volume (Kubernetes: the PersistentVolumeClaim\'s size, as bound or else as asked for). Absent on docker, whose local volumes are bounded by the host\'s disk.'
  })),
  accessModes: Type.Optional(Type.Array(Type.String(), { description: 'Kubernetes: how nodes may mount it (ReadWriteOnce: one node at a time, …), as the PersistentVolumeClaim says.' })),
  phase: Type.Optional(Type.String({ description: 'Kubernetes: the PersistentVolumeClaim\'s phase (Pending until a PersistentVolume is bound to it, Bound, Lost).' }))
}, { $id: 'Volume', additionalProperties: false, description: 'A named volume, as `docker volume inspect` shows it: data that outlives containers.' })
export type Volume = Static<typeof Volume>

export const CreateVolumeRequest = Type.Object({
  name: Type.Optional(Type.String({ pattern: VOLUME_NAME_PATTERN, description: 'Volume name; the engine\'s rule (on Kubernetes also a DNS subdomain: lower-case letters, digits, "-" and "."). Omit for a generated one.' })),
  node: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$', description: 'On a cluster: the node (name or id) it lives on; by default the ready node holding the fewest of berth\'s volumes. A single host has one node: leave it out.' })),
  size: Type.Optional(Type.Integer({
    minimum: 1,
    description: 'Bytes it may hold, where the backend bounds volumes (Kubernetes: the PersistentVolumeClaim\'s size; at most BERTH_KUBE_VOLUME_MAX_SIZE, and within the token\'s storage quota). ' +
      'Omitted: BERTH_KUBE_VOLUME_SIZE. docker answers 501 not_supported: a local volume has no size.'
  })),
  labels: Type.Optional(keyedMap('^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$', Type.String({ maxLength: 4096, pattern: printable }), {
    maxProperties: 64, description: 'Labels. Keys under `io.berth.` are berth\'s own and cannot be set.'
  }))
}, {
  $id: 'CreateVolumeRequest',
  additionalProperties: false,
  description: 'What `docker volume create` takes. The driver is always the backend\'s own (docker: `local`; Kubernetes: the configured storage class) and there are no driver options: those could mount host paths.',
  examples: [{ name: 'ada-datasets', labels: { project: 'imagenet' } }]
})
export type CreateVolumeRequest = Static<typeof CreateVolumeRequest>

export const VolumeParams = Type.Object({
  volume: Type.String({ pattern: VOLUME_NAME_PATTERN, description: 'Volume name.' })
})

export const ListVolumesQuery = Type.Object({
  label: Type.Optional(Type.Array(Type.String({ maxLength: 1024, pattern: printable }), { maxItems: 32, description: 'Only volumes with this label (`key` or `key=value`); repeat for several.' })),
  size: Type.Optional(Type.Boolean({ default: false, description: 'Also report each volume\'s size (`docker system df -v`): the engine walks every volume, which takes a while on big ones.' }))
}, { additionalProperties: false })

export const InspectVolumeQuery = Type.Object({
  size: Type.Optional(Type.Boolean({ default: false, description: 'Also report its size (`docker system df -v`).' }))
}, { additionalProperties: false })

export const RemoveVolumeQuery = Type.Object({
  force: Type.Optional(Type.Boolean({
    default: false,
    description: 'Also remove the containers that mount it (as `docker rm -f` would), when the token may remove every one of them. Without it a volume in use is 409 volume_in_use.'
  }))
}, { additionalProperties: false })

export const volumeSchemas = [Volume, CreateVolumeRequest]
