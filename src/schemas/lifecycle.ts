// A container's life after `docker run -d`: waiting for it to stop (`docker wait`), for batch jobs,
// and when it expires — after a time to live, or idle — and what berth then does to it.
import { Type, type Static } from 'typebox'

export const WaitQuery = Type.Object({
  timeout: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 86_400,
    description: 'Seconds to wait at most; then the answer says it has not stopped (`stopped: false`). Without it the request stays open until the container stops.'
  }))
}, { additionalProperties: false })

export const ReplicaExit = Type.Object({
  slot: Type.Union([Type.Integer(), Type.Null()], { description: 'Which replica.' }),
  task: Type.String({ description: 'Its last task.' }),
  node: Type.Union([Type.String(), Type.Null()], { description: 'The node it ran on.' }),
  state: Type.String({ description: 'How its task ended: complete, failed, shutdown (stopped), rejected — or lost, with a node the cluster lost.' }),
  exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'Its exit code; null when it has none (lost, or it never started).' }),
  oomKilled: Type.Boolean({ description: 'Killed for want of memory (as its node\'s engine reports; false when the node cannot be asked).' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why it ended, as the cluster says; null when it simply exited 0.' })
}, { $id: 'ReplicaExit', additionalProperties: false, description: 'How one replica of a container on a cluster ended.' })

export const WaitResult = Type.Object({
  stopped: Type.Boolean({ description: 'Whether it stopped; false only when `timeout` passed first.' }),
  exitCode: Type.Union([Type.Integer(), Type.Null()], {
    description: 'Its exit code (137: killed, by a stop or the OOM killer); null when it has not stopped. On a cluster, the summary of `replicas`: ' +
      'the first non-zero exit code (by slot), else 0; null when no replica left one (all lost with their nodes).'
  }),
  oomKilled: Type.Boolean({ description: 'The kernel killed a process of it for want of memory: raise `resources.memory`.' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'What the engine reports went wrong waiting, if anything; on a cluster, which replicas were lost with their nodes.' }),
  removed: Type.Boolean({ description: 'An autoRemove container: berth removed it once this answer was ready (read its logs before waiting).' }),
  replicas: Type.Optional(Type.Array(Type.Unsafe<Static<typeof ReplicaExit>>(Type.Ref('ReplicaExit')), { description: 'On a cluster: how each replica ended, in slot order.' }))
}, { $id: 'WaitResult', additionalProperties: false, description: 'How a container ended, as `docker wait` reports it, and a little more.' })
export type WaitResult = Static<typeof WaitResult>

const action = Type.Enum(['stop', 'remove'], { type: 'string', description: 'What berth does when it expires: stop it (its data and logs stay), or remove it (as `docker rm -f`).' })

export const ExpiryRequest = Type.Object({
  ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: 366 * 86_400, description: 'Seconds it may live from now; the owner can extend it (PUT …/expiry).' })),
  idleTimeout: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 366 * 86_400,
    description: 'Seconds it may sit idle: no CPU use above 1 % of a core, no network traffic above 4 KiB and no exec through berth between two looks (every BERTH_SWEEP_INTERVAL_MS). Checked while it runs; a restart of berth starts the idle clock again.'
  })),
  action: Type.Optional(action)
}, { additionalProperties: false, description: 'When the container expires and what happens then: a time to live, an idle timeout, or both (whichever comes first). No Docker tool has this.' })
export type ExpiryRequest = Static<typeof ExpiryRequest>

export const Expiry = Type.Object({
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When its time to live ends; null for none.' }),
  idleTimeout: Type.Union([Type.Integer(), Type.Null()], { description: 'Seconds it may sit idle; null for no idle timeout.' }),
  action
}, { $id: 'Expiry', additionalProperties: false, description: 'When a container expires, and what berth then does to it. Kept in the engine\'s labels, so a restarted berth keeps to it.' })
export type Expiry = Static<typeof Expiry>

export const SetExpiryRequest = Type.Object({
  ttl: Type.Integer({ minimum: 1, maximum: 366 * 86_400, description: 'Seconds it may live from now on: the new end of its time to live.' })
}, { $id: 'SetExpiryRequest', additionalProperties: false, description: 'A new time to live, from now: extends (or shortens) it.' })

export const lifecycleSchemas = [ReplicaExit, WaitResult, Expiry, SetExpiryRequest]
