// Image models: pull requests and results, image summaries and details.
import { Type, type Static } from 'typebox'
import { ref } from './common.ts'

export const RegistryAuth = Type.Object({
  username: Type.Optional(Type.String({ maxLength: 512, description: 'Registry user name.' })),
  password: Type.Optional(Type.String({ maxLength: 4096, description: 'Registry password or access token. Never logged.' })),
  identitytoken: Type.Optional(Type.String({ maxLength: 8192, description: 'An identity (refresh) token instead of a password.' }))
}, { $id: 'RegistryAuth', additionalProperties: false, description: 'Credentials for the registry the image comes from. Sent to the engine in a header, never in a URL, never logged. Registries configured on the server need none.' })

export const ImageReference = Type.String({
  minLength: 1,
  maxLength: 512,
  description: 'An image reference as the Docker CLI takes it: `repo`, `repo:tag`, `registry:port/repo:tag` or `repo@sha256:…`. No tag means `latest`.',
  examples: ['127.0.0.1:5000/jupyter/base-notebook:2024-01']
})

export const PullRequest = Type.Object({
  image: ImageReference,
  platform: Type.Optional(Type.String({ pattern: '^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$', maxLength: 64, description: 'Platform to pull, such as linux/amd64.' })),
  auth: Type.Optional(Type.Unsafe<Static<typeof RegistryAuth>>(Type.Ref('RegistryAuth')))
}, { $id: 'PullRequest', additionalProperties: false, description: 'What to pull.' })

export const NodePull = Type.Object({
  node: Type.String({ description: 'The node.' }),
  state: Type.Enum(['pulled', 'failed'], { type: 'string', description: 'Whether the image is on it now.' }),
  reason: Type.Union([Type.Enum(['registry_auth', 'not_found', 'node_down', 'registry_unreachable', 'other'], { type: 'string' }), Type.Null()], {
    description: 'Why it failed: the registry wants credentials, has no such image, the node (or its engine) is down, or cannot be reached from the node; null when pulled.'
  }),
  detail: Type.Union([Type.String(), Type.Null()], { description: 'What the node said, when it failed.' })
}, { $id: 'NodePull', additionalProperties: false, description: 'How a pull went on one node of a cluster.' })

export const PulledImage = Type.Object({
  id: Type.String({ description: 'Image id (sha256:…).' }),
  reference: Type.String({ description: 'The reference pulled, with its tag made explicit.' }),
  digest: Type.Union([Type.String(), Type.Null()], { description: 'The manifest digest the registry served; pull `repo@digest` to get exactly this image again.' }),
  tags: Type.Array(Type.String(), { description: 'Tags the image has on the engine.' }),
  nodes: Type.Optional(Type.Array(Type.Unsafe<Static<typeof NodePull>>(Type.Ref('NodePull')), {
    description: 'On a cluster: how the pull went on each node it was for (every active node; a node that is down is one that failed). The pull succeeds when one node has the image.'
  }))
}, { $id: 'PulledImage', additionalProperties: false, description: 'The image a pull produced.' })
export type PulledImage = Static<typeof PulledImage>

const imageSummaryProperties = {
  id: Type.String({ description: 'Image id (sha256:…).' }),
  tags: Type.Array(Type.String(), { description: 'repo:tag names of the image.' }),
  digests: Type.Array(Type.String(), { description: 'repo@digest references of the image.' }),
  createdAt: Type.String({ format: 'date-time', description: 'When the image was built.' }),
  size: Type.Integer({ description: 'Size in bytes.' }),
  labels: Type.Record(Type.String(), Type.String(), { description: 'Image labels.' }),
  nodes: Type.Optional(Type.Array(Type.String(), { description: 'On a cluster: the nodes that have it (among those that answer), by name.' }))
}

export const ImageSummary = Type.Object({
  ...imageSummaryProperties,
  containers: Type.Optional(Type.Integer({ minimum: 0, description: 'How many containers the token may see use it (any state).' }))
}, { $id: 'ImageSummary', additionalProperties: false, description: 'An image, as `docker images` lists it.' })
export type ImageSummary = Static<typeof ImageSummary>

export const Image = Type.Object({
  ...imageSummaryProperties,
  architecture: Type.String({ description: 'CPU architecture.' }),
  os: Type.String({ description: 'Operating system.' })
}, { $id: 'Image', additionalProperties: false, description: 'An image, as `docker image inspect` shows it.' })
export type Image = Static<typeof Image>

export const ImageHistoryEntry = Type.Object({
  id: Type.Union([Type.String(), Type.Null()], { description: 'The image this step made; null for steps whose image is not on this engine (they came with a pull).' }),
  createdAt: Type.String({ format: 'date-time', description: 'When the step ran.' }),
  createdBy: Type.String({ description: 'The instruction that made it.' }),
  size: Type.Integer({ description: 'Bytes the step added.' }),
  comment: Type.String({ description: 'The step\'s comment, if any.' }),
  tags: Type.Array(Type.String(), { description: 'Names of the image the step made.' })
}, { $id: 'ImageHistoryEntry', additionalProperties: false, description: 'One step of an image\'s history, as `docker history` shows it.' })
export type ImageHistoryEntry = Static<typeof ImageHistoryEntry>

export const ImageDetails = Type.Object({
  ...imageSummaryProperties,
  architecture: Type.String({ description: 'CPU architecture.' }),
  os: Type.String({ description: 'Operating system.' }),
  history: Type.Array(ref(ImageHistoryEntry), { description: 'The steps that made it, newest first (docker history).' }),
  usedBy: Type.Array(Type.Object({
    id: Type.String({ description: 'Container id.' }),
    name: Type.String({ description: 'Container name.' }),
    state: Type.String({ description: 'Container state.' })
  }, { additionalProperties: false }), { description: 'The containers using it that the token may see.' })
}, { $id: 'ImageDetails', additionalProperties: false, description: 'An image, as `docker image inspect` and `docker history` show it, with the containers that use it.' })
export type ImageDetails = Static<typeof ImageDetails>

export const ImageRemoval = Type.Object({
  untagged: Type.Array(Type.String(), { description: 'References removed.' }),
  deleted: Type.Array(Type.String(), { description: 'Image and layer ids deleted.' })
}, { $id: 'ImageRemoval', additionalProperties: false, description: 'What removing an image did.' })
export type ImageRemoval = Static<typeof ImageRemoval>

export const ListImagesQuery = Type.Object({
  reference: Type.Optional(Type.String({ maxLength: 512, description: 'Only images matching this reference (wildcards as in `docker images --filter reference=`); the tags and digests listed are narrowed to those matching it.' })),
  dangling: Type.Optional(Type.Boolean({ description: 'Only untagged images (true) or only tagged ones (false).' })),
  label: Type.Optional(Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 32, description: 'Only images with this label (`key` or `key=value`); repeat for several.' }))
}, { additionalProperties: false })

export const ImageParams = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 512, description: 'Image id, or a reference with `/` and `:` URL-encoded (127.0.0.1%3A5000%2Fweb%3A1).' })
})

export const RemoveImageQuery = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'Remove even when containers use it (docker rmi -f).' }))
}, { additionalProperties: false })

export const imageSchemas = [RegistryAuth, PullRequest, NodePull, PulledImage, ImageSummary, ImageHistoryEntry, ImageDetails, ImageRemoval]
