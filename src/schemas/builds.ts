// Build, tag, push and prune models: what `docker build`, `docker tag`, `docker push`, `docker image
// prune` and `docker system df` take and answer, and a build as a job.
import { Type, type Static } from 'typebox'
import { Problem, ref } from './common.ts'
import { ImageReference, RegistryAuth } from './images.ts'

const platform = Type.String({ pattern: '^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$', maxLength: 64, description: 'Platform to build for, such as linux/amd64 (`--platform`).' })

export const BuildQuery = Type.Object({
  tag: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { maxItems: 16, description: 'Name the image `repo:tag` (`-t`); repeat for several. Each must be on the image allow-list; a non-admin token may only take a name that is free or names an image it built.' })),
  dockerfile: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, pattern: '^[^\\u0000-\\u001f\\u007f]*$', default: 'Dockerfile', description: 'Path of the Dockerfile inside the context (`-f`).' })),
  buildArg: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,255}=', maxLength: 32768 }), { maxItems: 64, description: 'A build argument `NAME=value` (`--build-arg`); repeat for several. Values are kept out of berth\'s logs, but the image\'s history may show them: never pass secrets.' })),
  label: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}=', maxLength: 4096 }), { maxItems: 64, description: 'A label `key=value` for the image (`--label`); keys under `io.berth.` are berth\'s own.' })),
  target: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$', description: 'Build up to this stage (`--target`).' })),
  platform: Type.Optional(platform),
  pull: Type.Optional(Type.Boolean({ default: false, description: 'Pull every base image even when the engine has it (`--pull`). A missing base is pulled anyway.' })),
  noCache: Type.Optional(Type.Boolean({ default: false, description: 'Do not use the cache (`--no-cache`).' })),
  network: Type.Optional(Type.Enum(['none', 'default'], { type: 'string', default: 'none', description: 'Network of RUN steps: none, or the engine\'s default network when policy allows it (BERTH_BUILD_NETWORK).' })),
  async: Type.Optional(Type.Boolean({ default: false, description: 'Answer 202 with the build as a job at once instead of waiting (also `Prefer: respond-async`).' }))
}, { additionalProperties: false })
/** As validated: the options a client left out have their defaults (Ajv fills them in). */
export type BuildQuery = Static<typeof BuildQuery> & { dockerfile: string, pull: boolean, noCache: boolean, network: 'none' | 'default', async: boolean }

export const BuiltImage = Type.Object({
  id: Type.String({ description: 'Image id (sha256:…).' }),
  tags: Type.Array(Type.String(), { description: 'The names the build gave it.' }),
  pushed: Type.Optional(Type.Array(Type.Unsafe<PushedImage>(Type.Ref('PushedImage')), {
    description: 'On a cluster: each tag as the builder pushed it, with the digest its registry stored — what the cluster\'s nodes pull (run `repo@digest` to get exactly this image anywhere).'
  }))
}, { $id: 'BuiltImage', additionalProperties: false, description: 'The image a build made. On one host it has no registry digest until it is pushed; on a cluster the build pushes it (`pushed`).' })
export type BuiltImage = Static<typeof BuiltImage>

const step = Type.Integer({ minimum: 0, description: 'The step number (1-based), as `docker build` prints it.' })

export const BuildEvent = Type.Union([
  Type.Object({ type: Type.Literal('queued'), build: Type.String({ description: 'Build id.' }) }, { additionalProperties: false, description: 'Waiting for a build slot (BERTH_MAX_CONCURRENT_BUILDS).' }),
  Type.Object({ type: Type.Literal('started'), build: Type.String({ description: 'Build id: GET /v1/builds/{id}.' }) }, { additionalProperties: false, description: 'The engine took the build.' }),
  Type.Object({
    type: Type.Literal('step'),
    step,
    total: Type.Integer({ minimum: 1, description: 'Steps in all.' }),
    instruction: Type.String({ description: 'The Dockerfile instruction, as the builder prints it.' })
  }, { additionalProperties: false, description: 'A step began.' }),
  Type.Object({
    type: Type.Literal('output'),
    step,
    stream: Type.Enum(['stdout', 'stderr'], { type: 'string', description: 'Which output of the step.' }),
    line: Type.String({ description: 'One line of the step\'s output, without its line break.' })
  }, { additionalProperties: false, description: 'A line a step printed.' }),
  Type.Object({
    type: Type.Literal('layer'),
    step,
    id: Type.String({ description: 'The image the step made (short id).' }),
    cached: Type.Boolean({ description: 'true: taken from the build cache, nothing ran.' })
  }, { additionalProperties: false, description: 'A step finished.' }),
  Type.Object({ type: Type.Literal('status'), message: Type.String({ description: 'What the engine reports, such as the pull of a base image.' }) }, { additionalProperties: false, description: 'Engine status.' }),
  Type.Object({ type: Type.Literal('built'), image: ref(BuiltImage) }, { additionalProperties: false, description: 'Final: the built image and its tags.' }),
  Type.Object({ type: Type.Literal('error'), problem: ref(Problem) }, { additionalProperties: false, description: 'Final: why the build failed (build_failed with the failing `step` and its `output`, build_cancelled, …), the same body an error response has.' })
], {
  $id: 'BuildEvent',
  description: 'One event of a streamed build: NDJSON lines, or the `data` of server-sent events (whose `id` resumes with Last-Event-ID). ' +
    'The last event is `built` or `error`, never both.'
})

export const BuildJob = Type.Object({
  id: Type.String({ description: 'Build id.' }),
  state: Type.Enum(['queued', 'building', 'succeeded', 'failed', 'cancelled'], { type: 'string', description: 'Where the build is.' }),
  owner: Type.String({ description: 'The token that started it; only it (and admins) can see it.' }),
  tags: Type.Array(Type.String(), { description: 'The names asked for.' }),
  dockerfile: Type.String({ description: 'The Dockerfile path in the context.' }),
  target: Type.Union([Type.String(), Type.Null()], { description: 'The target stage, if any.' }),
  platform: Type.Union([Type.String(), Type.Null()], { description: 'The platform asked for, if any.' }),
  contextSize: Type.Integer({ description: 'Bytes of build context received.' }),
  step: Type.Union([Type.Object({
    number: Type.Integer({ description: 'Step number.' }),
    total: Type.Integer({ description: 'Steps in all.' }),
    instruction: Type.String({ description: 'The instruction.' })
  }, { additionalProperties: false }), Type.Null()], { description: 'The step under way, or the last one reached.' }),
  createdAt: Type.String({ format: 'date-time', description: 'When the build was started.' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it ended; it is kept for BERTH_JOB_RETENTION_MS after that.' }),
  result: Type.Union([ref(BuiltImage), Type.Null()], { description: 'The built image, once succeeded.' }),
  error: Type.Union([ref(Problem), Type.Null()], { description: 'Why it failed or was cancelled.' }),
  links: Type.Object({
    self: Type.String({ description: 'This build.' }),
    events: Type.String({ description: 'Its events: what happened so far, then live (NDJSON or server-sent events).' })
  }, { additionalProperties: false, description: 'Where to follow the build.' })
}, { $id: 'BuildJob', additionalProperties: false, description: 'A build. A build that fails or is cancelled leaves no image and no container behind.' })
export type BuildJob = Static<typeof BuildJob>

export const BuildParams = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f-]{36}$', description: 'Build id.' })
})

export const TagRequest = Type.Object({
  source: ImageReference,
  tag: Type.String({ minLength: 1, maxLength: 512, description: 'The new name, `repo:tag`. It must be on the image allow-list; a non-admin token may only take a name that is free or names an image it built.' })
}, { $id: 'TagRequest', additionalProperties: false, description: 'What `docker tag SOURCE TAG` takes: the source is an image id or reference.' })

export const TaggedImage = Type.Object({
  id: Type.String({ description: 'Image id.' }),
  tag: Type.String({ description: 'The name it now has.' })
}, { $id: 'TaggedImage', additionalProperties: false, description: 'The image and its new name.' })

export const UntagRequest = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 512, description: 'The name to remove, `repo:tag`.' })
}, { $id: 'UntagRequest', additionalProperties: false, description: 'A name to remove from its image. The image goes with its last name unless a container uses it.' })

export const PushRequest = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 512, description: 'The tag to push, `registry/repo:tag`; it must be on the image allow-list.' }),
  auth: Type.Optional(Type.Unsafe<Static<typeof RegistryAuth>>(Type.Ref('RegistryAuth')))
}, { $id: 'PushRequest', additionalProperties: false, description: 'What `docker push` takes. Without `auth`, the server\'s credentials for that registry (BERTH_REGISTRY_AUTH_FILE) are used, if any.' })

export const PushedImage = Type.Object({
  reference: Type.String({ description: 'The tag pushed.' }),
  digest: Type.String({ description: 'The manifest digest the registry stored: `repo@digest` pulls exactly this image from now on.' }),
  size: Type.Union([Type.Integer(), Type.Null()], { description: 'Size of the manifest in bytes.' })
}, { $id: 'PushedImage', additionalProperties: false, description: 'What a push stored.' })
export type PushedImage = Static<typeof PushedImage>

export const PushLayer = Type.Object({
  id: Type.String({ description: 'The layer\'s short id.' }),
  phase: Type.Enum(['preparing', 'waiting', 'pushing', 'pushed', 'exists', 'mounted', 'retrying'], { type: 'string', description: 'Where the layer is. `exists`: the registry has it already.' }),
  current: Type.Integer({ minimum: 0, description: 'Bytes pushed.' }),
  total: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'The layer\'s size; null until known.' })
}, { $id: 'PushLayer', additionalProperties: false, description: 'One layer of a push.' })

export const PushEvent = Type.Union([
  Type.Object({ type: Type.Literal('progress'), layer: ref(PushLayer) }, { additionalProperties: false, description: 'A layer moved on.' }),
  Type.Object({ type: Type.Literal('pushed'), image: ref(PushedImage) }, { additionalProperties: false, description: 'Final: what the registry stored.' }),
  Type.Object({ type: Type.Literal('error'), problem: ref(Problem) }, { additionalProperties: false, description: 'Final: why the push failed (push_failed with `reason`, …).' })
], { $id: 'PushEvent', description: 'One event of a streamed push; the last is `pushed` or `error`.' })

export const PruneRequest = Type.Object({
  all: Type.Optional(Type.Boolean({ default: false, description: 'Every image no container uses, not only untagged ones (`docker image prune -a`).' })),
  label: Type.Optional(Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 32, description: 'Only images with this label (`key` or `key=value`).' })),
  buildCache: Type.Optional(Type.Boolean({ default: true, description: 'Also clear the engine\'s build cache (`docker builder prune`); with the classic builder, untagged intermediate images are its cache.' }))
}, { $id: 'PruneRequest', additionalProperties: false, description: 'What `docker image prune` takes.' })

export const PruneReport = Type.Object({
  images: Type.Array(Type.String(), { description: 'Image ids deleted.' }),
  buildCache: Type.Array(Type.String(), { description: 'Build cache records deleted.' }),
  spaceReclaimed: Type.Integer({ description: 'Bytes freed.' })
}, { $id: 'PruneReport', additionalProperties: false, description: 'What a prune removed.' })

const usage = (what: string) => Type.Object({
  count: Type.Integer({ description: `${what} on the engine.` }),
  size: Type.Integer({ description: 'Bytes on disk.' })
}, { additionalProperties: false, description: what })

export const DiskUsage = Type.Object({
  images: Type.Object({
    count: Type.Integer({ description: 'Images on the engine.' }),
    size: Type.Integer({ description: 'Bytes of all their layers.' }),
    reclaimable: Type.Integer({ description: 'Bytes an `all` prune would free (images no container uses).' })
  }, { additionalProperties: false, description: 'Images.' }),
  containers: usage('Containers'),
  volumes: usage('Volumes'),
  buildCache: Type.Object({
    count: Type.Integer({ description: 'Build cache records.' }),
    size: Type.Integer({ description: 'Bytes.' }),
    reclaimable: Type.Integer({ description: 'Bytes a prune would free.' })
  }, { additionalProperties: false, description: 'The build cache.' })
}, { $id: 'DiskUsage', additionalProperties: false, description: 'What `docker system df` shows.' })
export type DiskUsage = Static<typeof DiskUsage>

export const buildSchemas = [BuiltImage, BuildEvent, BuildJob, TagRequest, TaggedImage, UntagRequest, PushRequest, PushedImage, PushLayer, PushEvent, PruneRequest, PruneReport, DiskUsage]
