// Images big enough for pull progress to show, pushed straight over the registry protocol, plus a
// throttling TCP proxy in front of the registry so a pull lasts long enough to watch, share or cancel.
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, unlinkSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { gzipSync } from 'node:zlib'
import { RUN, docker, env } from './helpers.ts'

export interface SyntheticImage {
  /** registry/repository:tag, as a pull names it. */
  reference: string
  repository: string
  /** Manifest digest. */
  digest: string
  /** Compressed layer blobs, in manifest order. */
  layers: Array<{ digest: string, size: number }>
}

function sha256 (data: Buffer): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

// A minimal ustar archive holding one file: enough for the engine to unpack as a layer.
function tarWithFile (name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512)
  const field = (value: string, offset: number, length: number) => header.write(value, offset, length, 'ascii')
  field(name, 0, 100)
  field('0000644\0', 100, 8)
  field('0000000\0', 108, 8)
  field('0000000\0', 116, 8)
  field(content.length.toString(8).padStart(11, '0') + '\0', 124, 12)
  field(Math.floor(Date.now() / 1000).toString(8).padStart(11, '0') + '\0', 136, 12)
  field('        ', 148, 8)
  field('0', 156, 1)
  field('ustar\0', 257, 6)
  field('00', 263, 2)
  let sum = 0
  for (const byte of header) sum += byte
  field(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512)
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)])
}

async function uploadBlob (registry: string, repository: string, blob: Buffer): Promise<string> {
  const digest = sha256(blob)
  const start = await fetch(`http://${registry}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  if (start.status !== 202) throw new Error(`starting a blob upload answered ${start.status}`)
  const location = new URL(start.headers.get('location') ?? '', `http://${registry}`)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`uploading blob ${digest} answered ${put.status}: ${await put.text()}`)
  return digest
}

/**
 * Pushes an image of `layerSizes.length` layers of random (incompressible) bytes to the unauthenticated
 * test registry as `registry/RUN-suffix/web:1`. Nothing of it is on the engine until something pulls it,
 * and its layers are unique to this call, so a layer blob can be broken without touching anybody else's.
 */
export async function pushLayeredImage (suffix: string, layerSizes: number[]): Promise<SyntheticImage> {
  const registry = env.registry
  const path = `${RUN}-${suffix}/web`
  const { Arch: architecture } = await docker.version()
  const layers: Array<{ digest: string, size: number }> = []
  const diffIds: string[] = []
  for (const [index, size] of layerSizes.entries()) {
    const tar = tarWithFile(`layer${index}.bin`, randomBytes(size))
    diffIds.push(sha256(tar))
    const blob = gzipSync(tar, { level: 1 })
    layers.push({ digest: await uploadBlob(registry, path, blob), size: blob.length })
  }
  const created = new Date().toISOString()
  const config = Buffer.from(JSON.stringify({
    architecture,
    os: 'linux',
    created,
    config: { Env: ['PATH=/bin'], Labels: { 'berth.test.run': RUN } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layerSizes.map((_, index) => ({ created, created_by: `berth test layer ${index}` }))
  }))
  const configDigest = await uploadBlob(registry, path, config)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
    layers: layers.map(layer => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.size, digest: layer.digest }))
  }))
  const put = await fetch(`http://${registry}/v2/${path}/manifests/1`, {
    method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' }
  })
  if (put.status !== 201) throw new Error(`pushing the manifest of ${path} answered ${put.status}: ${await put.text()}`)
  return { reference: `${registry}/${path}:1`, repository: `${registry}/${path}`, digest: sha256(manifest), layers }
}

/**
 * Deletes the data of one blob from the registry's storage, as a disk fault would: the registry still
 * lists the blob, so the engine answers 200 and fails inside the stream when it comes to that layer.
 */
export function breakBlob (digest: string): void {
  const hex = digest.replace(/^sha256:/, '')
  const file = `${registryStorage()}/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`
  if (!existsSync(file)) throw new Error(`no blob data at ${file}`)
  unlinkSync(file)
}

// The storage of the registry that listens now, which may have been started from another checkout:
// found from the listening process's config file; this checkout's .test-env when that cannot be read.
function registryStorage (): string {
  const fallback = new URL('../.test-env/registry/data', import.meta.url).pathname
  try {
    const listening = execFileSync('ss', ['-ltnpH', `sport = :${env.registry.split(':')[1]}`], { encoding: 'utf8' })
    const pid = /pid=(\d+)/.exec(listening)?.[1]
    const config = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').find(arg => arg.endsWith('.yml'))
    return /rootdirectory:\s*([^,}\s]+)/.exec(readFileSync(config ?? '', 'utf8'))?.[1] ?? fallback
  } catch {
    return fallback
  }
}

/**
 * A TCP proxy in front of the test registry that passes registry→engine bytes at a bounded rate,
 * and can hold them back entirely. The engine trusts any registry on 127.0.0.0/8, so pulling
 * `127.0.0.1:<port>/…` is a real pull from the same storage, only slower.
 */
export class RegistryProxy {
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  #held = false
  readonly #waiting: Array<() => void> = []
  /** How many connections the engine opened to the registry through this proxy. */
  connections = 0
  /** How many bytes went from the registry to the engine. */
  bytes = 0
  /** Connections the engine closed while the registry was still sending it something (a layer cut off). */
  cutOff = 0
  readonly #clients = new Set<Socket>()

  readonly bytesPerSecond: number

  constructor (bytesPerSecond: number) {
    this.bytesPerSecond = bytesPerSecond
    this.#server = createServer(client => this.#relay(client))
  }

  async listen (): Promise<string> {
    await new Promise<void>(resolve => this.#server.listen(0, '127.0.0.1', resolve))
    return `127.0.0.1:${(this.#server.address() as { port: number }).port}`
  }

  /** Holds back every registry→engine byte until release(): a pull stalls mid-layer. */
  hold (): void {
    this.#held = true
  }

  release (): void {
    this.#held = false
    for (const resume of this.#waiting.splice(0)) resume()
  }

  async close (): Promise<void> {
    this.release()
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>(resolve => this.#server.close(() => resolve()))
  }

  /** Connections the engine holds open to the registry through this proxy now. */
  get open (): number {
    return this.#clients.size
  }

  #relay (client: Socket): void {
    this.connections++
    this.#clients.add(client)
    // Throttled, the proxy is always behind the registry while a layer flows: a relay pass under way
    // when the engine hangs up means it hung up in the middle of one.
    let sending = false
    client.once('close', () => {
      if (sending) this.cutOff++
      this.#clients.delete(client)
    })
    const [host, port] = env.registry.split(':')
    const upstream = createConnection({ host, port: Number(port) })
    this.#sockets.add(client).add(upstream)
    const drop = () => { client.destroy(); upstream.destroy(); this.#sockets.delete(client); this.#sockets.delete(upstream) }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    // Registry→engine in slices of 1/20 s worth of bytes, each after its share of time.
    const slice = Math.max(1024, Math.floor(this.bytesPerSecond / 20))
    upstream.on('data', (chunk: Buffer) => {
      upstream.pause()
      sending = true
      const pass = async (): Promise<void> => {
        for (let offset = 0; offset < chunk.length; offset += slice) {
          if (this.#held) await new Promise<void>(resolve => this.#waiting.push(resolve))
          const part = chunk.subarray(offset, offset + slice)
          if (client.destroyed) return
          client.write(part)
          this.bytes += part.length
          await new Promise(resolve => setTimeout(resolve, (part.length / this.bytesPerSecond) * 1000))
        }
        sending = false
        upstream.resume()
      }
      pass().catch(drop)
    })
    upstream.on('end', () => client.end())
  }
}
