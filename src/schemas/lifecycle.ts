// A container's life after `docker run -d`: waiting for it to stop (`docker wait`), for batch jobs.
import { Type, type Static } from 'typebox'

export const WaitQuery = Type.Object({
  timeout: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 86_400,
    description: 'Seconds to wait at most; then the answer says it has not stopped (`stopped: false`). Without it the request stays open until the container stops.'
  }))
}, { additionalProperties: false })

export const WaitResult = Type.Object({
  stopped: Type.Boolean({ description: 'Whether it stopped; false only when `timeout` passed first.' }),
  exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'Its exit code (137: killed, by a stop or the OOM killer); null when it has not stopped.' }),
  oomKilled: Type.Boolean({ description: 'The kernel killed a process of it for want of memory: raise `resources.memory`.' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'What the engine reports went wrong waiting, if anything.' }),
  removed: Type.Boolean({ description: 'An autoRemove container: berth removed it once this answer was ready (read its logs before waiting).' })
}, { $id: 'WaitResult', additionalProperties: false, description: 'How a container ended, as `docker wait` reports it, and a little more.' })
export type WaitResult = Static<typeof WaitResult>

export const lifecycleSchemas = [WaitResult]
