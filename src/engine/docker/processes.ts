// What happens inside one engine's containers, as the docker backend's exec, stats, files and wait
// parts. Each takes the engine's transport; a cluster backend that reaches a node's engine (through
// an agent) can make the same parts for that node.
import type { Duplex } from 'node:stream'
import { BerthError } from '../../errors.ts'
import type { ExecPart, FilesPart, ReplicaChoice, StatsPart, WaitPart } from '../parts.ts'
import type { ContainerExit, ContainerStats, ExecSession, ExecSpec, PathStat } from '../types.ts'
import { statsOf, type RawStats } from './mapping.ts'
import { linesOf, readAll, readFrames, readJsonLines } from './streams.ts'
import type { DockerTransport } from './transport.ts'
import type { DockerCopy } from './copy.ts'

/** A container on one host is its one replica: `1` names it, anything else is no replica of it. */
function oneReplica (id: string, replica: string | undefined): void {
  if (replica !== undefined && replica !== '1') throw new BerthError('not_found', `container ${id} runs on one host and has one replica, 1; there is no replica ${replica}`)
}

export function dockerExec (transport: DockerTransport): ExecPart {
  return {
    async exec (containerId: string, spec: ExecSpec, options: { signal: AbortSignal, replica?: string }): Promise<ExecSession> {
      oneReplica(containerId, options.replica)
      const target = { subject: 'container' as const, target: containerId }
      let created: { Id: string }
      try {
        // The command and its env go in the body, never in a URL.
        created = await transport.request<{ Id: string }>(target, {
          method: 'POST',
          path: `/containers/${encodeURIComponent(containerId)}/exec`,
          body: {
            Cmd: spec.command,
            Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
            ...(spec.workingDir === undefined ? {} : { WorkingDir: spec.workingDir }),
            ...(spec.user === undefined ? {} : { User: spec.user }),
            Tty: spec.tty,
            AttachStdin: spec.stdin,
            AttachStdout: true,
            AttachStderr: true
          }
        })
      } catch (error) {
        // "Container x is not running" (409), or paused: there is nothing to run a command in.
        if (error instanceof BerthError && (error.extensions.engineStatus === 409 || error.code === 'container_running')) {
          throw new BerthError('container_not_running', `container ${containerId} is not running: start it first`, {}, { cause: error })
        }
        throw error
      }
      const id = created.Id
      const execTarget = { subject: 'container' as const, target: containerId, signal: options.signal }
      const start = { path: `/exec/${encodeURIComponent(id)}/start`, body: { Detach: false, Tty: spec.tty } }
      const stream = spec.stdin
        ? await transport.hijack(execTarget, start)
        : await transport.streamRequest(execTarget, { method: 'POST', ...start })
      const output = readFrames(stream, spec.tty, options.signal)
      return {
        id,
        output,
        lines: () => linesOf(output, spec.tty),
        stdin: spec.stdin ? stream as Duplex : null,
        async resize ({ cols, rows }) {
          await transport.request({ subject: 'container', target: containerId }, { method: 'POST', path: `/exec/${encodeURIComponent(id)}/resize`, query: { h: rows, w: cols } })
        },
        async exitCode () {
          // The output ends as the process exits; the engine records its exit a moment later.
          for (let attempt = 0; attempt < 20; attempt++) {
            const info = await transport.request<{ Running: boolean, ExitCode: number | null }>({ subject: 'container', target: containerId }, { method: 'GET', path: `/exec/${encodeURIComponent(id)}/json` })
            if (!info.Running) return info.ExitCode
            if (options.signal.aborted) return null
            await new Promise(resolve => setTimeout(resolve, 50))
          }
          return null
        }
      }
    }
  }
}

export function dockerStats (transport: DockerTransport): StatsPart {
  return {
    async stats (id: string, options: { stream: boolean, signal?: AbortSignal, oneShot?: boolean, replica?: string }): Promise<AsyncIterable<ContainerStats>> {
      oneReplica(id, options.replica)
      const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
      // One reading makes the engine take two a second apart, for the CPU delta, unless it is one-shot.
      const query = { stream: options.stream, ...(options.oneShot === true ? { 'one-shot': true } : {}) }
      const stream = await transport.streamGet(target, `/containers/${encodeURIComponent(id)}/stats`, query)
      return mapStats(readJsonLines<RawStats>(stream, options.signal))
    }
  }
}

export function dockerFiles (transport: DockerTransport): FilesPart {
  return {
    async get (id: string, path: string, options: { signal?: AbortSignal, replica?: string }): Promise<{ stat: PathStat, archive: NodeJS.ReadableStream }> {
      oneReplica(id, options.replica)
      const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
      const response = await transport.streamGet(target, `/containers/${encodeURIComponent(id)}/archive`, { path }).catch((error: unknown) => { throw pathError(error, id, path) })
      const header = response.headers['x-docker-container-path-stat']
      const stat = typeof header === 'string' ? JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat : { name: path.split('/').pop() ?? '', size: 0, mode: 0, mtime: '', linkTarget: '' }
      options.signal?.addEventListener('abort', () => { response.destroy() }, { once: true })
      return { stat, archive: response }
    },

    async stat (id: string, path: string, options: ReplicaChoice = {}): Promise<PathStat | null> {
      oneReplica(id, options.replica)
      try {
        const response = await transport.streamRequest({ subject: 'container', target: id }, { method: 'HEAD', path: `/containers/${encodeURIComponent(id)}/archive`, query: { path } })
        response.resume()
        const header = response.headers['x-docker-container-path-stat']
        return typeof header === 'string' ? JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat : null
      } catch (error) {
        if (error instanceof BerthError && error.code === 'not_found') return null
        throw pathError(error, id, path)
      }
    },

    async put (id: string, path: string, archive: NodeJS.ReadableStream, options: { size: number, replica?: string }): Promise<void> {
      oneReplica(id, options.replica)
      // The engine answers once it has unpacked it all: give it the time to read it at 1 MB/s at least.
      const timeoutMs = transport.timeoutMs + Math.ceil(options.size / 1_000_000) * 1000
      const response = await transport.streamRequest({ subject: 'container', target: id, timeoutMs },
        { method: 'PUT', path: `/containers/${encodeURIComponent(id)}/archive`, query: { path, noOverwriteDirNonDir: true }, body: archive })
        .catch((error: unknown) => { throw pathError(error, id, path) })
      response.resume()
    }
  }
}

export function dockerWait (transport: DockerTransport, copy: DockerCopy | null = null): WaitPart {
  return {
    async wait (id: string, options: { signal?: AbortSignal }): Promise<ContainerExit> {
      const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
      // The engine sends its headers at once and the body when the container stops: only the setup is bounded.
      const stream = await transport.streamRequest(target, { method: 'POST', path: `/containers/${encodeURIComponent(id)}/wait`, query: { condition: 'not-running' } })
      let body: { StatusCode?: number, Error?: { Message?: string } | null }
      try {
        body = JSON.parse((await readAll(stream, options.signal)).toString('utf8'))
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason
        throw new BerthError('engine_unavailable', `the engine connection broke while waiting for ${id}`, {}, { cause: error, headers: { 'retry-after': '5' } })
      }
      const info = await transport.call({ subject: 'container', target: id }, (docker, signal) => docker.getContainer(id).inspect({ abortSignal: signal }))
      // What berth says has happened is what it reads next: the copy has the stop before the wait answers.
      await copy?.refreshContainer(id)
      return { exitCode: body.StatusCode ?? info.State.ExitCode, oomKilled: info.State.OOMKilled, error: body.Error?.Message || null }
    }
  }
}

async function * mapStats (raw: AsyncIterable<RawStats>): AsyncGenerator<ContainerStats> {
  for await (const reading of raw) {
    // A container that stopped is read as empty readings of no time, for ever: its stream ends there.
    if (reading.read.startsWith('0001-01-01')) return
    yield statsOf(reading)
  }
}

/**
 * The engine's 404 on an archive is about the path (the container was found first); a read-only root
 * or volume says so; and an unpacking the engine stopped because a path was in the way (the container
 * changed after berth looked) is a conflict, not the engine failing.
 */
function pathError (error: unknown, id: string, path: string): unknown {
  if (!(error instanceof BerthError)) return error
  if (error.code === 'not_found') return new BerthError('not_found', `no such path ${path} in container ${id}`, { path }, { cause: error })
  if (/rootfs is marked read-only/.test(error.message)) {
    return new BerthError('validation_failed', `container ${id} has a read-only root filesystem: write into one of its volumes`, { path }, { cause: error })
  }
  if (/mounted volume is marked read-only/.test(error.message)) {
    return new BerthError('validation_failed', `${path} is in a volume container ${id} mounts read-only`, { path }, { cause: error })
  }
  const inTheWay = /cannot overwrite (?:non-)?directory "([^"]*)"|extraction point is not a directory|not a directory/.exec(error.message)
  if (inTheWay !== null) {
    return new BerthError('path_conflict', `the container changed while berth checked the upload, and the engine stopped unpacking it (${inTheWay[0]}): what came before may be written`, { path }, { cause: error })
  }
  return error
}
