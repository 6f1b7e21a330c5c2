// A container as a run request: what GET /v1/containers/{id}/spec answers, for someone to run the
// same environment again, here or on another berth.
import { Type, type Static } from 'typebox'
import { ref } from './common.ts'
import { RunRequest } from './containers.ts'

export const ContainerSpec = Type.Object({
  run: ref(RunRequest, 'The run request: POST it to /v1/containers (of this berth or another) to run the same environment.'),
  image: Type.Object({
    id: Type.String({ description: 'Id of the image the container runs.' }),
    digest: Type.Union([Type.String(), Type.Null()], { description: 'The registry digest `run.image` is pinned to; null when the image has none (built here and never pushed).' }),
    pinned: Type.Boolean({ description: 'true: `run.image` is `repo@digest`, exactly this image wherever it runs. false: it is the name the container was run with, which may name another image elsewhere or later; push the image to pin it.' })
  }, { additionalProperties: false, description: 'The image, and whether the spec pins it.' }),
  redactedEnv: Type.Array(Type.String(), { description: 'Environment variables whose values are only shown to the token that ran the container: their values in `run.env` are empty here.' })
}, { $id: 'ContainerSpec', additionalProperties: false, description: 'A container as a run request someone else can POST: the image pinned by digest, and only what the run set (what the image sets by itself is left to the image).' })
export type ContainerSpec = Static<typeof ContainerSpec>

export const containerSpecSchemas = [ContainerSpec]
