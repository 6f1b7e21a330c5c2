// docker cp on Kubernetes, as kubectl cp does it: tar in the container, through the exec
// subresource. Out: `tar c` of the path, whose first entry says what the path is; in: berth's
// checked archive (src/access/files.ts read it whole and refused what writes outside its directory
// before anything reached here) into `tar x`. The container's image needs a tar — its own, or
// busybox's applet in the minimal images that link no `tar` (found once per pod); files go in and
// out as the container's user, which is never root here.
import { posix } from 'node:path'
import { Readable } from 'node:stream'
import { BerthError } from '../../errors.ts'
import { notSupported, type FilesPart } from '../parts.ts'
import type { OutputChunk, PathStat } from '../types.ts'
import { openExec, type ExecChannel } from './exec-channel.ts'
import { runningPod } from './exec.ts'
import { CONTAINER_NAME } from './mapping.ts'
import { statOf, type ExecOutcome } from './pod-readings.ts'
import { K8S, type KubeShared } from './shared.ts'

/** tar reads in records of 20 blocks: an archive ending on one is read to its end marker, and no further. */
const RECORD = 20 * 512
/** Bytes of a download read before its first entry must have come (long-name headers included). */
const MAX_LEAD = 64 * 1024
/** The tars tried, in order: the image's own, then busybox's. */
const TARS = [['tar'], ['busybox', 'tar']]
/** Pods whose tar berth remembers; beyond this the oldest is forgotten (and found again when needed). */
const MAX_REMEMBERED = 1000

export function kubeFiles (shared: KubeShared): FilesPart {
  const tars = new Map<string, string[]>()

  /** The tar a pod's container has, found by running each candidate's --help (any exit but 127 means it ran). */
  async function tarOf (pod: string, id: string): Promise<string[]> {
    const known = tars.get(pod)
    if (known !== undefined) return known
    const said: string[] = []
    for (const candidate of TARS) {
      const channel = await openExec(shared.client, { pod, container: CONTAINER_NAME, command: [...candidate, '--help'], stdin: false, tty: false })
      try {
        // Its usage text says nothing berth needs: read to the end, for the exit status.
        const drained = channel.output[Symbol.asyncIterator]()
        while ((await drained.next()).done !== true);
        const outcome = await channel.outcome.catch(() => null)
        if (outcome === null) throw new BerthError('engine_unavailable', `the exec connection to pod ${pod} broke while looking for its tar`, {}, { headers: { 'retry-after': '5' } })
        if (outcome.kind === 'exited' && outcome.exitCode !== 127) {
          if (tars.size >= MAX_REMEMBERED) tars.delete(tars.keys().next().value as string)
          tars.set(pod, candidate)
          return candidate
        }
        said.push(outcome.kind === 'failed' ? outcome.message : `${candidate.join(' ')}: exit code 127`)
      } finally {
        channel.close()
      }
    }
    throw notSupported(K8S, `files in and out of a container on Kubernetes go through tar in the container, as kubectl cp does: container ${id}'s image has no tar (${said.join('; ')})`)
  }

  /** tar of the path (its first entry read, to say what the path is); the failure in berth's codes when there is none. */
  async function archiveOf (id: string, path: string, options: { signal?: AbortSignal, alone?: boolean }) {
    const pod = await runningPod(shared, id)
    const tar = await tarOf(pod, id)
    const [directory, name] = path === '/' ? ['/', '.'] : [posix.dirname(path), posix.basename(path)]
    const command = [...tar, 'cf', '-', ...(options.alone === true ? ['--no-recursion'] : []), '-C', directory, name]
    const channel = await openExec(shared.client, { pod, container: CONTAINER_NAME, command, stdin: false, tty: false, ...(options.signal === undefined ? {} : { signal: options.signal }) })
    const output = channel.output[Symbol.asyncIterator]()
    const stderr: Buffer[] = []
    let lead = Buffer.alloc(0)
    let stat: PathStat | 'more' | 'empty' = 'more'
    while (stat === 'more' && lead.length <= MAX_LEAD) {
      const next = await output.next()
      if (next.done === true) break
      if (next.value.stream === 'stderr') stderr.push(next.value.data)
      else lead = Buffer.concat([lead, next.value.data])
      stat = statOf(lead, path)
    }
    if (typeof stat === 'string') {
      // Read to the end: tar says why there was nothing to archive on stderr, and in its exit code.
      if (stat === 'empty') for (let next = await output.next(); next.done !== true; next = await output.next()) if (next.value.stream === 'stderr') stderr.push(next.value.data)
      channel.close()
      throw failure(await channel.outcome.catch(() => null), Buffer.concat(stderr).toString('utf8'), id, path)
    }
    return { stat, lead, output, channel, stderr }
  }

  return {
    async get (id: string, path: string, options: { signal?: AbortSignal }): Promise<{ stat: PathStat, archive: NodeJS.ReadableStream }> {
      const { stat, lead, output, channel, stderr } = await archiveOf(id, path, options)
      return { stat, archive: Readable.from(rest(lead, output, channel, stderr, id, path)) }
    },

    /** The path's own entry (tar does not follow its last component, nor descend into it): one exec round trip. */
    async stat (id: string, path: string): Promise<PathStat | null> {
      try {
        const { stat, channel } = await archiveOf(id, path, { alone: true })
        channel.close()
        return stat
      } catch (error) {
        if (error instanceof BerthError && error.code === 'not_found') return null
        throw error
      }
    },

    async put (id: string, path: string, archive: NodeJS.ReadableStream, options: { size: number }): Promise<void> {
      const pod = await runningPod(shared, id)
      const tar = await tarOf(pod, id)
      // Zeros to the end of a record and one more: tar finds its end marker there, stdin open or not.
      const total = options.size + RECORD - (options.size % RECORD) + RECORD
      // busybox's tar reads its input to the end, past the end marker; a connection that cannot close
      // stdin alone (protocol v4, before Kubernetes 1.29) never ends it: head does, after the archive.
      const command = tar[0] === 'busybox' ? ['busybox', 'sh', '-c', 'busybox head -c "$0" | busybox tar xf - -C "$1"', String(total), path] : [...tar, 'xf', '-', '-C', path]
      const channel = await openExec(shared.client, { pod, container: CONTAINER_NAME, command, stdin: true, tty: false })
      const stderr: Buffer[] = []
      const reading = (async () => { for await (const chunk of channel.output) if (chunk.stream === 'stderr') stderr.push(chunk.data) })()
      // tar answers once it has unpacked it all: give it the time to read it at 1 MB/s at least.
      const timeoutMs = shared.client.timeoutMs + Math.ceil(options.size / 1_000_000) * 1000
      const deadline = setTimeout(() => channel.close(), timeoutMs)
      try {
        let sent = 0
        for await (const chunk of archive as AsyncIterable<Buffer>) {
          await channel.write(chunk)
          sent += chunk.length
        }
        if (sent !== options.size) throw new Error(`the archive was ${sent} bytes, not the ${options.size} it was said to be`)
        await channel.write(Buffer.alloc(total - sent))
        channel.closeStdin()
        const outcome = await channel.outcome.catch(() => null)
        await reading
        if (outcome?.kind !== 'exited' || outcome.exitCode !== 0) throw failure(outcome, Buffer.concat(stderr).toString('utf8'), id, path)
      } finally {
        clearTimeout(deadline)
        channel.close()
      }
    }
  }
}

/** The rest of a download after its first entry; a tar that failed part-way ends it with an error, never as a shorter archive. */
async function * rest (lead: Buffer, output: AsyncIterator<OutputChunk>, channel: ExecChannel, stderr: Buffer[], id: string, path: string): AsyncGenerator<Buffer> {
  try {
    yield lead
    for (let next = await output.next(); next.done !== true; next = await output.next()) {
      if (next.value.stream === 'stderr') stderr.push(next.value.data)
      else yield next.value.data
    }
    const outcome = await channel.outcome
    if (outcome.kind !== 'exited' || outcome.exitCode !== 0) throw failure(outcome, Buffer.concat(stderr).toString('utf8'), id, path)
  } finally {
    channel.close()
  }
}

/** tar's complaint (or the runtime's) in berth's codes. */
function failure (outcome: ExecOutcome | null, stderr: string, id: string, path: string): BerthError {
  const said = [stderr.trim(), outcome?.kind === 'failed' ? outcome.message : ''].filter(text => text !== '').join('; ')
  if (outcome?.kind === 'failed' && /executable file not found|no such file or directory/i.test(outcome.message)) {
    return notSupported(K8S, `files in and out of a container on Kubernetes go through tar in the container, as kubectl cp does: container ${id}'s image has no tar (${outcome.message})`)
  }
  if (/read-only file system/i.test(said)) return new BerthError('validation_failed', `container ${id} has a read-only root filesystem: write into one of its volumes`, { path })
  if (/permission denied/i.test(said)) {
    return new BerthError('validation_failed', `the container's user may not do that at ${path}: on Kubernetes files go in and out as the container's (non-root) user (${said})`, { path })
  }
  if (/no such file or directory|can't change directory|cannot (open|stat|change)/i.test(said)) return new BerthError('not_found', `no such path ${path} in container ${id}`, { path })
  if (outcome === null) return new BerthError('engine_unavailable', `the exec connection broke while copying ${path} of container ${id}`, { path }, { headers: { 'retry-after': '5' } })
  return new BerthError('engine_error', `tar in container ${id} failed at ${path}: ${said === '' ? 'it said nothing' : said}`, { path })
}
