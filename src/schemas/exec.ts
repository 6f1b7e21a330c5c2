// docker exec: a command run in a running container, its output streamed and its exit code last.
import { Type, type Static } from 'typebox'
import { Problem, keyedMap, ref, replicaField } from './common.ts'

const absolutePath = '^/[^\\u0000-\\u001f\\u007f]*$'
const arg = Type.String({ maxLength: 4096, pattern: '^[^\\u0000]*$' })

const execFields = {
  env: Type.Optional(keyedMap('^[A-Za-z_][A-Za-z0-9_]{0,255}$', Type.String({ maxLength: 32768, pattern: '^[^\\u0000]*$' }), {
    maxProperties: 256, description: 'More environment variables (`-e`). Values are never logged.'
  })),
  workingDir: Type.Optional(Type.String({ maxLength: 4096, pattern: absolutePath, description: 'Working directory (`-w`); the container\'s by default.' })),
  user: Type.Optional(Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$', description: 'User (and group) to run as (`-u`); the container\'s by default.' }))
}

export const ExecRequest = Type.Object({
  command: Type.Array(arg, { minItems: 1, maxItems: 256, description: 'Command and arguments, exec form.' }),
  ...execFields,
  tty: Type.Optional(Type.Boolean({ default: false, description: 'Allocate a terminal (`-t`): its output is then one stream.' }))
}, {
  $id: 'ExecRequest',
  additionalProperties: false,
  description: 'What `docker exec` takes. No privileged mode.',
  examples: [{ command: ['python', '-c', 'import torch; print(torch.cuda.is_available())'] }]
})
export type ExecRequest = Static<typeof ExecRequest>

export const ExecQuery = Type.Object({
  command: Type.Array(arg, { minItems: 1, maxItems: 256, description: 'Command and arguments, one `command=` per argument, in order: `?command=sh&command=-l`.' }),
  tty: Type.Optional(Type.Boolean({ default: true, description: 'Allocate a terminal (the default here: this is for people at a terminal).' })),
  workingDir: execFields.workingDir,
  user: execFields.user,
  cols: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Terminal width to start with.' })),
  rows: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Terminal height to start with.' })),
  replica: replicaField
}, { additionalProperties: false })

export const ExecEvent = Type.Union([
  Type.Object({
    type: Type.Literal('output'),
    stream: Type.Enum(['stdout', 'stderr'], { type: 'string', description: 'Which stream; with a TTY, stdout only.' }),
    line: Type.String({ description: 'The line, without its line break.' })
  }, { additionalProperties: false, description: 'A line of output.' }),
  Type.Object({
    type: Type.Literal('exit'),
    exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'The command\'s exit code; always the last event.' })
  }, { additionalProperties: false, description: 'The command ended.' }),
  Type.Object({
    type: Type.Literal('error'),
    problem: ref(Problem)
  }, { additionalProperties: false, description: 'The stream broke (the engine went away); the last event.' })
], { $id: 'ExecEvent', description: 'One event of an exec, as an NDJSON line or an SSE `data`: its output line by line, then its exit code.' })
export type ExecEvent = Static<typeof ExecEvent>

export const ExecResult = Type.Object({
  exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'The command\'s exit code.' }),
  stdout: Type.String({ description: 'What it wrote to stdout (all of it, with a TTY), up to 1 MiB.' }),
  stderr: Type.String({ description: 'What it wrote to stderr, up to 1 MiB.' }),
  truncated: Type.Boolean({ description: 'More was written than is kept here: stream it (NDJSON) to see all.' })
}, { $id: 'ExecResult', additionalProperties: false, description: 'An exec run to its end, its output collected.' })
export type ExecResult = Static<typeof ExecResult>

export const execSchemas = [ExecRequest, ExecEvent, ExecResult]
