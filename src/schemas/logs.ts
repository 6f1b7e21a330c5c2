// Container logs and engine events: the lines of `docker logs` and the events of `docker events`, in berth's shape.
import { Type, type Static } from 'typebox'
import { TIME_PATTERN } from '../http/times.ts'

const time = (what: string) => Type.String({ pattern: TIME_PATTERN, maxLength: 64, description: `${what}: an RFC 3339 time, Unix seconds (\`1700000000.5\`), or a duration back from now (\`10m\`, \`1h30m\`).` })

export const LogsQuery = Type.Object({
  follow: Type.Optional(Type.Boolean({ default: false, description: 'Keep streaming new output until the container stops (`docker logs -f`).' })),
  tail: Type.Optional(Type.String({ pattern: '^(all|[0-9]{1,9})$', default: 'all', description: 'Only the last n lines, or `all` (`--tail`).' })),
  since: Type.Optional(time('Only lines at or after this time (`--since`)')),
  until: Type.Optional(time('Only lines up to this time (`--until`)')),
  timestamps: Type.Optional(Type.Boolean({ default: false, description: 'Add each line\'s time, to the nanosecond (`-t`); in NDJSON as `time`.' }))
}, { additionalProperties: false })

export const LogEntry = Type.Object({
  stream: Type.Enum(['stdout', 'stderr'], { type: 'string', description: 'Which stream the line was written to; a TTY container has stdout only.' }),
  line: Type.String({ description: 'The line, without its line break.' }),
  time: Type.Optional(Type.String({ description: 'When the engine recorded it (RFC 3339, nanoseconds); with timestamps=true.' })),
  task: Type.Optional(Type.String({ description: 'On a cluster: the task (replica) that wrote the line.' })),
  node: Type.Optional(Type.String({ description: 'On a cluster: the node that task ran on.' }))
}, { $id: 'LogEntry', additionalProperties: false, description: 'One line of a container\'s output, as an NDJSON line.' })
export type LogEntry = Static<typeof LogEntry>

export const Event = Type.Object({
  type: Type.Enum(['container', 'image', 'node', 'task'], { type: 'string', description: 'What changed. node and task events come from a cluster, where container events are about services.' }),
  action: Type.String({ description: 'What happened, as the engine names it: create, start, die, stop, destroy, pull, tag, untag, delete…' }),
  id: Type.String({ description: 'Container id, or image id or reference.' }),
  name: Type.Union([Type.String(), Type.Null()], { description: 'Container name, or image name.' }),
  image: Type.Union([Type.String(), Type.Null()], { description: 'The image the container runs, or the image the event is about.' }),
  time: Type.String({ format: 'date-time', description: 'When it happened, to the nanosecond.' }),
  exitCode: Type.Optional(Type.Integer({ description: 'The container\'s exit code, on `die`.' })),
  service: Type.Optional(Type.String({ description: 'On a task event: the container (service) it is a replica of.' })),
  node: Type.Optional(Type.String({ description: 'On a task event: the node it runs on.' })),
  detail: Type.Optional(Type.String({ description: 'On a task event: why it failed or waits; on a node event: what changed.' }))
}, {
  $id: 'Event',
  additionalProperties: false,
  description: 'A change on the engine, as the `data` of a server-sent event. The SSE `id` is exact (it keeps the engine\'s nanoseconds); send it back as Last-Event-ID to resume.'
})

export const logSchemas = [LogEntry, Event]
