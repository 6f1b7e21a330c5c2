// Volumes, networks, nodes and disk usage: docker volume, docker network, docker node ls, docker system df.

import { humanSize, shortId, table } from '../format.ts'
import { ok } from '../index.ts'
import { command, eachName, keyValues } from './command.ts'

export const volumeLs = command({
  name: 'volume ls',
  usage: '[OPTIONS]',
  summary: 'List volumes',
  options: { quiet: { type: 'bool', short: 'q', description: 'Only display volume names' } },
  max: 0,
  async run (ctx, { values }) {
    const volumes = await ok(ctx.berth.GET('/v1/volumes'))
    ctx.io.stdout.write(values.quiet ? volumes.map(volume => `${volume.name}\n`).join('') : table(['DRIVER', 'VOLUME NAME'], volumes.map(volume => [volume.driver, volume.name])))
    return 0
  }
})

export const volumeCreate = command({
  name: 'volume create',
  usage: '[OPTIONS] [VOLUME]',
  summary: 'Create a volume',
  options: { label: { type: 'list', description: 'Set metadata for a volume' } },
  max: 1,
  async run (ctx, { values, positionals }) {
    const labels = keyValues(values.label, '--label')
    const volume = await ok(ctx.berth.POST('/v1/volumes', { body: { ...(positionals[0] ? { name: positionals[0] } : {}), ...(labels ? { labels } : {}) } }))
    ctx.io.stdout.write(`${volume.name}\n`)
    return 0
  }
})

export const volumeInspect = command({
  name: 'volume inspect',
  usage: 'VOLUME [VOLUME...]',
  summary: 'Display detailed information on one or more volumes',
  options: {},
  min: 1,
  async run (ctx, { positionals }) {
    const found = []
    let status = 0
    for (const volume of positionals) {
      try { found.push(await ok(ctx.berth.GET('/v1/volumes/{volume}', { params: { path: { volume } } }))) } catch (error) { ctx.io.stderr.write(`${ctx.describe(error)}\n`); status = 1 }
    }
    ctx.io.stdout.write(`${JSON.stringify(found, null, 4)}\n`)
    return status
  }
})

export const volumeRm = command({
  name: 'volume rm',
  usage: '[OPTIONS] VOLUME [VOLUME...]',
  summary: 'Remove one or more volumes',
  options: { force: { type: 'bool', short: 'f', description: 'Force the removal of one or more volumes' } },
  min: 1,
  async run (ctx, { values, positionals }) {
    return await eachName(ctx, positionals, async volume => { await ok(ctx.berth.DELETE('/v1/volumes/{volume}', { params: { path: { volume }, query: { force: values.force === true } } })) })
  }
})

export const networkLs = command({
  name: 'network ls',
  usage: '[OPTIONS]',
  summary: 'List networks',
  options: { quiet: { type: 'bool', short: 'q', description: 'Only display network IDs' }, 'no-trunc': { type: 'bool', description: 'Do not truncate the output' } },
  max: 0,
  async run (ctx, { values }) {
    const networks = await ok(ctx.berth.GET('/v1/networks'))
    const id = (value: string) => values['no-trunc'] ? value : shortId(value)
    ctx.io.stdout.write(values.quiet
      ? networks.map(network => `${id(network.id)}\n`).join('')
      : table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'], networks.map(network => [id(network.id), network.name, network.driver, 'local'])))
    return 0
  }
})

export const networkCreate = command({
  name: 'network create',
  usage: '[OPTIONS] NETWORK',
  summary: 'Create a network',
  options: {
    internal: { type: 'bool', description: 'Restrict external access to the network' },
    label: { type: 'list', description: 'Set metadata on a network' }
  },
  min: 1,
  max: 1,
  async run (ctx, { values, positionals }) {
    const labels = keyValues(values.label, '--label')
    const network = await ok(ctx.berth.POST('/v1/networks', { body: { name: positionals[0] as string, ...(values.internal ? { internal: true } : {}), ...(labels ? { labels } : {}) } }))
    ctx.io.stdout.write(`${network.id}\n`)
    return 0
  }
})

export const networkInspect = command({
  name: 'network inspect',
  usage: 'NETWORK [NETWORK...]',
  summary: 'Display detailed information on one or more networks',
  options: {},
  min: 1,
  async run (ctx, { positionals }) {
    const found = []
    let status = 0
    for (const network of positionals) {
      try { found.push(await ok(ctx.berth.GET('/v1/networks/{network}', { params: { path: { network } } }))) } catch (error) { ctx.io.stderr.write(`${ctx.describe(error)}\n`); status = 1 }
    }
    ctx.io.stdout.write(`${JSON.stringify(found, null, 4)}\n`)
    return status
  }
})

export const networkRm = command({
  name: 'network rm',
  usage: 'NETWORK [NETWORK...]',
  summary: 'Remove one or more networks',
  options: {},
  min: 1,
  async run (ctx, { positionals }) {
    return await eachName(ctx, positionals, async network => { await ok(ctx.berth.DELETE('/v1/networks/{network}', { params: { path: { network } } })) })
  }
})

export const networkConnect = command({
  name: 'network connect',
  usage: '[OPTIONS] NETWORK CONTAINER',
  summary: 'Connect a container to a network',
  options: { alias: { type: 'list', description: 'Add network-scoped alias for the container' } },
  min: 2,
  max: 2,
  async run (ctx, { values, positionals }) {
    const [network, container] = positionals as [string, string]
    await ok(ctx.berth.POST('/v1/networks/{network}/connect', { params: { path: { network } }, body: { container, ...(values.alias ? { aliases: values.alias } : {}) } }))
    return 0
  }
})

export const networkDisconnect = command({
  name: 'network disconnect',
  usage: '[OPTIONS] NETWORK CONTAINER',
  summary: 'Disconnect a container from a network',
  options: { force: { type: 'bool', short: 'f', description: 'Force the container to disconnect from a network' } },
  min: 2,
  max: 2,
  async run (ctx, { values, positionals }) {
    const [network, container] = positionals as [string, string]
    await ok(ctx.berth.POST('/v1/networks/{network}/disconnect', { params: { path: { network } }, body: { container, ...(values.force ? { force: true } : {}) } }))
    return 0
  }
})

export const nodes = command({
  name: 'nodes',
  usage: '',
  summary: 'List the nodes containers run on (docker node ls)',
  options: { quiet: { type: 'bool', short: 'q', description: 'Only display IDs' } },
  max: 0,
  async run (ctx, { values }) {
    const list = await ok(ctx.berth.GET('/v1/nodes'))
    const titled = (word: string) => word.charAt(0).toUpperCase() + word.slice(1)
    ctx.io.stdout.write(values.quiet
      ? list.map(node => `${node.id}\n`).join('')
      : table(['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS', 'ENGINE VERSION'], list.map(node => [
        node.id, node.name, titled(node.state), titled(node.availability), node.leader ? 'Leader' : node.role === 'manager' ? 'Reachable' : '', node.engineVersion
      ])))
    return 0
  }
})

export const systemDf = command({
  name: 'system df',
  usage: '',
  summary: 'Show disk usage',
  options: {},
  max: 0,
  async run (ctx) {
    const usage = await ok(ctx.berth.GET('/v1/system/df'))
    const reclaim = (reclaimable: number, size: number) => `${humanSize(reclaimable)}${size > 0 ? ` (${Math.round(reclaimable / size * 100)}%)` : ''}`
    ctx.io.stdout.write(table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], [
      ['Images', String(usage.images.count), '', humanSize(usage.images.size), reclaim(usage.images.reclaimable, usage.images.size)],
      ['Containers', String(usage.containers.count), '', humanSize(usage.containers.size), ''],
      ['Local Volumes', String(usage.volumes.count), '', humanSize(usage.volumes.size), ''],
      ['Build Cache', String(usage.buildCache.count), '', humanSize(usage.buildCache.size), reclaim(usage.buildCache.reclaimable, usage.buildCache.size)]
    ]))
    return 0
  }
})
