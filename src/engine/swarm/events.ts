// berth's event stream on a cluster, from two sources: the manager's events of services and nodes,
// and task state changes, which the Docker API does not publish as events and berth reads by
// polling the manager's task list. A cursor holds a position in each, so a resume repeats nothing.
// What a resume cannot bring back: a task state that came and went between two polls, and the
// tasks of a service removed meanwhile (the manager deletes them with it).
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { BerthError } from '../../errors.ts'
import { Inbox } from '../inbox.ts'
import { LABEL_MANAGED } from '../../access/ownership.ts'
import { engineTime, isoFromNanos } from '../docker/streams.ts'
import type { EngineEvent, EventsOptions, TaskState } from '../types.ts'
import type { SwarmApi } from './api.ts'
import type { NodeRef, SwarmService, SwarmTask } from './mapping.ts'
import { nanosOf } from './streams.ts'

/** What berth remembers of a service for its events: the manager's events carry only its name. */
export interface ServiceFacts {
  name: string
  image: string
  labels: Record<string, string>
}

export interface EventSources {
  api: SwarmApi
  /** A service's facts, asking the manager when they are not known yet; null when it is gone. */
  service: (id: string) => Promise<ServiceFacts | null>
  nodes: () => Promise<Map<string, NodeRef>>
  pollMs: number
}

interface Position {
  nanos: bigint
  /** How many events before this one the manager reported with the very same timeNano. */
  index: number
}

interface Cursor {
  manager: Position
  /** The latest task state change reported, by the time the manager gave it. */
  tasks: bigint
}

export function parseSwarmCursor (text: string): Cursor | null {
  const match = /^(\d{1,20})-(\d{1,9})\.(\d{1,20})$/.exec(text)
  if (match === null) return null
  return { manager: { nanos: BigInt(match[1] as string), index: Number(match[2]) }, tasks: BigInt(match[3] as string) }
}

function formatCursor (cursor: Cursor): string {
  return `${cursor.manager.nanos}-${cursor.manager.index}.${cursor.tasks}`
}

/** Task states worth an event: placed nowhere (pending with a reason), running, and every end. */
const REPORTED: ReadonlySet<TaskState> = new Set(['pending', 'running', 'complete', 'failed', 'rejected', 'shutdown', 'orphaned'])

interface ManagerEvent {
  Type?: string
  Action?: string
  Actor?: { ID?: string, Attributes?: Record<string, string> }
}

export async function swarmEvents (sources: EventSources, options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
  const after = options.after === undefined ? null : parseSwarmCursor(options.after)
  if (options.after !== undefined && after === null) {
    throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
  }
  const now = BigInt(Date.now()) * 1_000_000n
  const since = options.since === undefined ? null : BigInt(options.since.getTime()) * 1_000_000n
  // Before the first event of a source, its position is when the stream began: a resume replays from there.
  const cursor: Cursor = after ?? { manager: { nanos: (since ?? now) - 1n, index: 999_999_999 }, tasks: (since ?? now) - 1n }
  const replay = after !== null || since !== null

  const connection = new AbortController()
  const stop = (): void => connection.abort()
  options.signal?.addEventListener('abort', stop, { once: true })
  let stream: Readable
  let baseline: SwarmTask[]
  try {
    stream = await sources.api.stream('/events', {
      ...(replay ? { since: engineTime(cursor.manager.nanos) } : {}),
      filters: { type: ['service', 'node'] }
    }, { target: 'events', signal: connection.signal })
    baseline = await sources.api.get<SwarmTask[]>('/tasks')
  } catch (error) {
    options.signal?.removeEventListener('abort', stop)
    connection.abort()
    throw error
  }

  const inbox = new Inbox<EngineEvent>()
  let failure: unknown = null
  const finish = (error: unknown): void => {
    if (inbox.closed) return
    if (!connection.signal.aborted) failure = error
    connection.abort()
    inbox.close()
  }

  const fromManager = async (): Promise<void> => {
    let last: Position = { nanos: -1n, index: 0 }
    let pending = ''
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending += chunk.toString('utf8')
      for (let newline = pending.indexOf('\n'); newline !== -1; newline = pending.indexOf('\n')) {
        const text = pending.slice(0, newline)
        pending = pending.slice(newline + 1)
        const nanos = /"timeNano":(\d+)/.exec(text)?.[1]
        if (nanos === undefined) continue
        const at = BigInt(nanos)
        last = at === last.nanos ? { nanos: at, index: last.index + 1 } : { nanos: at, index: 0 }
        if (at < cursor.manager.nanos || (at === cursor.manager.nanos && last.index <= cursor.manager.index)) continue
        const event = await managerEvent(sources, JSON.parse(text) as ManagerEvent, at)
        cursor.manager = last
        if (event !== null) push({ ...event, cursor: formatCursor(cursor) })
      }
    }
    throw new Error('the manager ended the event stream')
  }

  const seen = new Map<string, string>()
  const fromTasks = async (): Promise<void> => {
    let tasks = baseline
    // The first list is what was there when the stream began: reported only when replaying, and
    // then only what changed after the cursor. Every later change is reported as it is seen.
    let first = true
    for (;;) {
      const changed = tasks.filter(task => {
        // A task's timestamp moves within a state too (its ports are reported): only a new state is news.
        const key = `${task.Status.State}|${task.Status.Err ?? ''}`
        const known = seen.get(task.ID)
        seen.set(task.ID, key)
        return known !== key
      })
      const reported = changed
        .map(task => ({ task, at: nanosOf(task.Status.Timestamp) ?? 0n }))
        .filter(({ task, at }) => (!first || (replay && at > cursor.tasks)) && REPORTED.has(task.Status.State) && (task.Status.State !== 'pending' || Boolean(task.Status.Err)))
        .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0))
      first = false
      for (const { task, at } of reported) {
        const event = await taskEvent(sources, task, at)
        if (event === null) continue
        if (at > cursor.tasks) cursor.tasks = at
        push({ ...event, cursor: formatCursor(cursor) })
      }
      await sleep(sources.pollMs, undefined, { signal: connection.signal })
      tasks = await sources.api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' })
    }
  }

  function push (event: EngineEvent): void {
    inbox.push(event)
  }

  fromManager().catch(finish)
  fromTasks().catch(finish)

  async function * feed (): AsyncGenerator<EngineEvent> {
    try {
      for (let next = await inbox.take(); next !== undefined; next = await inbox.take()) yield next
      if (failure !== null && !(options.signal?.aborted ?? false)) {
        throw new BerthError('engine_unavailable', `the manager connection broke: ${(failure as Error).message}`, {}, { cause: failure, headers: { 'retry-after': '5' } })
      }
    } finally {
      options.signal?.removeEventListener('abort', stop)
      finish(null)
      stream.destroy()
    }
  }
  return feed()
}

async function managerEvent (sources: EventSources, raw: ManagerEvent, at: bigint): Promise<Omit<EngineEvent, 'cursor'> | null> {
  const id = raw.Actor?.ID ?? ''
  const attributes = raw.Actor?.Attributes ?? {}
  const time = isoFromNanos(at)
  if (raw.Type === 'node') {
    const changes = ['state', 'availability'].flatMap(what => attributes[`${what}.new`] === undefined ? [] : [`${what} ${attributes[`${what}.old`] ?? '?'} → ${attributes[`${what}.new`]}`])
    const name = attributes.name || (await sources.nodes()).get(id)?.name || null
    return { type: 'node', action: raw.Action ?? 'update', id, name, image: null, time, labels: {}, ...(changes.length > 0 ? { detail: changes.join(', ') } : {}) }
  }
  if (raw.Type !== 'service') return null
  const facts = await sources.service(id)
  // A service berth never saw and that is gone: whose it was is unknown, so nobody is shown it.
  if (facts === null) return null
  return { type: 'container', action: serviceAction(raw.Action, attributes), id, name: attributes.name ?? facts.name, image: facts.image, time, labels: facts.labels }
}

/** A service update in `docker events` words: scaled to none is a stop, back from none a start. */
function serviceAction (action: string | undefined, attributes: Record<string, string>): string {
  if (action === 'create') return 'create'
  if (action === 'remove') return 'destroy'
  const before = attributes['replicas.old']
  const now = attributes['replicas.new']
  if (now === '0' && before !== '0') return 'stop'
  if (before === '0' && now !== undefined && now !== '0') return 'start'
  if (now !== undefined && before !== now) return 'scale'
  return 'update'
}

async function taskEvent (sources: EventSources, task: SwarmTask, at: bigint): Promise<Omit<EngineEvent, 'cursor'> | null> {
  const facts = await sources.service(task.ServiceID)
  if (facts === null || facts.labels[LABEL_MANAGED] !== 'true') return null
  const node = task.NodeID ? (await sources.nodes()).get(task.NodeID)?.name : undefined
  const ended = task.Status.State !== 'running' && task.Status.ContainerStatus?.ContainerID
  const code = ended ? task.Status.ContainerStatus?.ExitCode : undefined
  return {
    type: 'task',
    action: task.Status.State,
    id: task.ID,
    name: `${facts.name}.${task.Slot ?? task.NodeID ?? ''}`,
    image: facts.image,
    time: isoFromNanos(at),
    labels: facts.labels,
    service: task.ServiceID,
    ...(node === undefined ? {} : { node }),
    ...(task.Status.Err ? { detail: task.Status.Err } : {}),
    ...(code === undefined ? {} : { exitCode: code })
  }
}

/** The facts events need, from a service as the manager shows it. */
export function factsOf (service: SwarmService): ServiceFacts {
  return { name: service.Spec.Name ?? service.ID, image: service.Spec.TaskTemplate.ContainerSpec.Image, labels: service.Spec.Labels ?? {} }
}
