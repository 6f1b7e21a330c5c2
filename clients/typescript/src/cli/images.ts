// Image verbs: pull, images, rmi, tag, push, build — docker's output, progress bars at a terminal.
import { resolve } from 'node:path'
import { stat } from 'node:fs/promises'
import { UsageError, type OptionSpecs } from '../args.ts'
import { buildContext } from '../build-context.ts'
import { ago, humanSize, imagesTable, shortId, splitTag } from '../format.ts'
import { BerthProblem, ok, type BerthClient, type Schemas } from '../index.ts'
import { problemOf } from '../problem.ts'
import { ndjson } from '../streams.ts'
import { barRenderer, lineRenderer } from '../progress.ts'
import { formatRows, type Row } from '../template.ts'
import { command, keyValues } from './command.ts'

/** Pulls with a progress display on `out`, then docker's closing lines; answers the pulled image. */
export async function pullWithProgress (berth: BerthClient, image: string, out: NodeJS.WriteStream): Promise<Schemas['PulledImage']> {
  const renderer = out.isTTY ? barRenderer(out) : lineRenderer(text => out.write(text))
  let pulled: Schemas['PulledImage'] | undefined
  let downloaded = false
  try {
    for await (const event of berth.pull({ image })) {
      renderer.event(event)
      if (event.type === 'progress' && event.layer.phase !== 'exists') downloaded = true
      if (event.type === 'pulled') pulled = event.image
    }
  } finally {
    renderer.stop()
  }
  // berth.pull ends with `pulled` or throws: this is only for the type checker.
  if (!pulled) throw new Error('the pull ended without its image')
  if (pulled.digest) out.write(`Digest: ${pulled.digest}\n`)
  out.write(`Status: ${downloaded ? 'Downloaded newer image' : 'Image is up to date'} for ${pulled.reference}\n${pulled.reference}\n`)
  return pulled
}

export const pull = command({
  name: 'pull',
  usage: '[OPTIONS] NAME[:TAG|@DIGEST]',
  summary: 'Download an image from a registry',
  options: { quiet: { type: 'bool', short: 'q', description: 'Suppress verbose output' } },
  min: 1,
  max: 1,
  async run (ctx, { values, positionals }) {
    const image = positionals[0] as string
    if (!values.quiet) {
      await pullWithProgress(ctx.berth, image, ctx.io.stdout)
      return 0
    }
    // docker pull -q: the reference alone, once pulled.
    for await (const event of ctx.berth.pull({ image })) {
      if (event.type === 'pulled') ctx.io.stdout.write(`${event.image.reference}\n`)
    }
    return 0
  }
})

const IMAGE_FIELDS = ['ID', 'Repository', 'Tag', 'Digest', 'CreatedSince', 'CreatedAt', 'Size', 'Containers'] as const

export const images = command({
  name: 'images',
  usage: '[OPTIONS] [REPOSITORY[:TAG]]',
  summary: 'List images',
  options: {
    quiet: { type: 'bool', short: 'q', description: 'Only show image IDs' },
    all: { type: 'bool', short: 'a', description: 'Show all images (berth lists them all anyway)' },
    'no-trunc': { type: 'bool', description: 'Don\'t truncate output' },
    format: { type: 'string', value: 'string', description: 'Format output using a template: \'table\', \'table TEMPLATE\', \'json\', \'TEMPLATE\'' }
  },
  max: 1,
  async run (ctx, { values, positionals }) {
    const query = positionals[0] ? { reference: positionals[0] } : {}
    const list = await ok(ctx.berth.GET('/v1/images', { params: { query } }))
    const id = (image: Schemas['ImageSummary']) => values['no-trunc'] ? image.id : shortId(image.id)
    if (values.quiet) {
      ctx.io.stdout.write([...new Set(list.map(id))].map(each => `${each}\n`).join(''))
      return 0
    }
    if (values.format === undefined || values.format === 'table') {
      ctx.io.stdout.write(imagesTable(list))
      return 0
    }
    const rows: Row[] = list.flatMap(image => (image.tags.length > 0 ? image.tags.map(splitTag) : [['<none>', '<none>'] as [string, string]]).map(([repository, tag]) => ({
      fields: {
        ID: id(image),
        Repository: repository,
        Tag: tag,
        Digest: image.digests[0]?.split('@')[1] ?? '<none>',
        CreatedSince: ago(image.createdAt),
        CreatedAt: image.createdAt,
        Size: humanSize(image.size),
        Containers: String(image.containers)
      },
      labels: image.labels
    })))
    ctx.io.stdout.write(formatRows(values.format, rows, IMAGE_FIELDS, { ID: 'IMAGE ID' }))
    return 0
  }
})

export const rmi = command({
  name: 'rmi',
  usage: '[OPTIONS] IMAGE [IMAGE...]',
  summary: 'Remove one or more images',
  options: { force: { type: 'bool', short: 'f', description: 'Force removal of the image' } },
  min: 1,
  async run (ctx, { values, positionals }) {
    let status = 0
    for (const ref of positionals) {
      try {
        const removal = await ok(ctx.berth.DELETE('/v1/images/{ref}', { params: { path: { ref }, query: { force: values.force === true } } }))
        ctx.io.stdout.write([...removal.untagged.map(tag => `Untagged: ${tag}\n`), ...removal.deleted.map(id => `Deleted: ${id}\n`)].join(''))
      } catch (error) {
        ctx.io.stderr.write(`${ctx.describe(error)}\n`)
        status = 1
      }
    }
    return status
  }
})

export const tag = command({
  name: 'tag',
  usage: 'SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  options: {},
  min: 2,
  max: 2,
  async run (ctx, { positionals }) {
    const [source, target] = positionals as [string, string]
    await ok(ctx.berth.POST('/v1/images/tag', { body: { source, tag: target } }))
    return 0
  }
})

const PUSH_WORDS: Record<Schemas['PushLayer']['phase'], string> = {
  preparing: 'Preparing', waiting: 'Waiting', pushing: 'Pushing', pushed: 'Pushed', exists: 'Layer already exists', mounted: 'Mounted from another repository', retrying: 'Retrying'
}

export const push = command({
  name: 'push',
  usage: '[OPTIONS] NAME[:TAG]',
  summary: 'Upload an image to a registry',
  options: { quiet: { type: 'bool', short: 'q', description: 'Suppress verbose output' } },
  min: 1,
  max: 1,
  async run (ctx, { values, positionals }) {
    const image = positionals[0] as string
    const out = ctx.io.stdout
    const { data, error, response } = await ctx.berth.POST('/v1/images/push', { body: { image }, headers: { accept: 'application/x-ndjson' }, parseAs: 'stream' })
    if (!response.ok || !data) throw problemOf(error, response)
    const [repository] = splitTag(image)
    if (!values.quiet) out.write(`The push refers to repository [${repository}]\n`)
    const phases = new Map<string, string>()
    for await (const event of ndjson<Schemas['PushEvent']>(data)) {
      if (event.type === 'error') throw new BerthProblem(event.problem)
      if (event.type === 'progress' && !values.quiet) {
        const words = PUSH_WORDS[event.layer.phase]
        // One line each time a layer changes state (docker's lines when not at a terminal).
        if (phases.get(event.layer.id) !== words) {
          phases.set(event.layer.id, words)
          out.write(`${event.layer.id}: ${words}${event.layer.phase === 'pushing' && event.layer.total ? ` ${humanSize(event.layer.current)}/${humanSize(event.layer.total)}` : ''}\n`)
        }
      }
      if (event.type === 'pushed') {
        out.write(values.quiet ? `${event.image.reference}\n` : `${splitTag(event.image.reference)[1]}: digest: ${event.image.digest} size: ${event.image.size ?? 0}\n`)
        return 0
      }
    }
    throw new Error('the push stream ended before its outcome')
  }
})

export const build = command({
  name: 'build',
  usage: '[OPTIONS] PATH',
  summary: 'Build an image from a Dockerfile and a context directory (.dockerignore honoured)',
  options: {
    tag: { type: 'list', short: 't', description: 'Name and optionally a tag in the "name:tag" format' },
    file: { type: 'string', short: 'f', description: 'Name of the Dockerfile (default: "PATH/Dockerfile")' },
    'build-arg': { type: 'list', description: 'Set build-time variables (NAME=VALUE)' },
    label: { type: 'list', description: 'Set metadata for an image' },
    target: { type: 'string', description: 'Set the target build stage to build' },
    platform: { type: 'string', description: 'Set platform if server is multi-platform capable' },
    pull: { type: 'bool', description: 'Always attempt to pull a newer version of the image' },
    'no-cache': { type: 'bool', description: 'Do not use cache when building the image' },
    network: { type: 'string', description: 'Networking mode for the RUN instructions during build ("none" or "default")' },
    quiet: { type: 'bool', short: 'q', description: 'Suppress the build output and print image ID on success' }
  } satisfies OptionSpecs,
  min: 1,
  max: 1,
  async run (ctx, { values, positionals }) {
    const directory = positionals[0] as string
    const info = await stat(directory).catch(() => null)
    if (!info?.isDirectory()) throw new UsageError(`unable to prepare context: path ${JSON.stringify(directory)} not found or not a directory`, 1)
    let dockerfile = values.file
    if (dockerfile !== undefined && dockerfile.startsWith('/')) {
      const relative = resolve(dockerfile).slice(resolve(directory).length + 1)
      if (!resolve(dockerfile).startsWith(resolve(directory) + '/')) throw new UsageError(`the Dockerfile (-f ${dockerfile}) must be inside the context ${directory}`)
      dockerfile = relative
    }
    const context = await buildContext(directory, dockerfile ?? 'Dockerfile')
    const out = ctx.io.stdout
    if (!values.quiet) out.write(`Sending build context to berth  ${humanSize(context.archive.size)}\n`)
    const buildArgs = keyValues(values['build-arg'], '--build-arg', { bare: name => ctx.io.env[name] })
    const labels = keyValues(values.label, '--label')
    const query = {
      ...(values.tag ? { tag: values.tag } : {}),
      ...(dockerfile ? { dockerfile } : {}),
      ...(buildArgs ? { buildArg: Object.entries(buildArgs).map(([key, value]) => `${key}=${value}`) } : {}),
      ...(labels ? { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) } : {}),
      ...(values.target ? { target: values.target } : {}),
      ...(values.platform ? { platform: values.platform } : {}),
      ...(values.pull ? { pull: true } : {}),
      ...(values['no-cache'] ? { noCache: true } : {}),
      ...(values.network ? { network: values.network as 'none' } : {})
    }
    for await (const event of ctx.berth.build(context.archive, query)) {
      if (values.quiet) {
        if (event.type === 'built') out.write(`${event.image.id}\n`)
        continue
      }
      if (event.type === 'queued') out.write('Waiting for a build slot\n')
      else if (event.type === 'step') out.write(`Step ${event.step}/${event.total} : ${event.instruction}\n`)
      else if (event.type === 'output') (event.stream === 'stderr' ? ctx.io.stderr : out).write(`${event.line}\n`)
      else if (event.type === 'layer') out.write(`${event.cached ? ' ---> Using cache\n' : ''} ---> ${shortId(event.id)}\n`)
      else if (event.type === 'status') out.write(`${event.message}\n`)
      else if (event.type === 'built') {
        out.write(`Successfully built ${shortId(event.image.id)}\n`)
        for (const name of event.image.tags) out.write(`Successfully tagged ${name}\n`)
      }
    }
    return 0
  }
})
