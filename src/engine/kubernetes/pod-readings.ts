// What berth reads from a pod through the apiserver, as pure functions the suites without a cluster
// test: how an exec ended (its status channel), what a path is (the first entry of tar's archive),
// and stats readings from the metrics API or a kubelet's summary, summed over a container's replicas.
import { posix } from 'node:path'
import type { V1Pod } from '@kubernetes/client-node'
import type { ContainerStats, PathStat } from '../types.ts'
import { statusOf } from './errors.ts'
import { CONTAINER_NAME, bytesOf, coresOf } from './mapping.ts'
import { timeOf } from './reading.ts'

const BLOCK = 512

/** How the command ended, as the apiserver's status channel said it. */
export type ExecOutcome =
  | { kind: 'exited', exitCode: number }
  /** It never ran, or the runtime failed it: the message says why (an executable not found…). */
  | { kind: 'failed', message: string }

/** The status channel's Status object: success, the command's exit code, or why it did not run. */
export function outcomeOf (text: string): ExecOutcome {
  let status: { status?: string, reason?: string, message?: string, details?: { causes?: Array<{ reason?: string, message?: string }> } }
  try {
    status = JSON.parse(text)
  } catch {
    return { kind: 'failed', message: text }
  }
  if (status.status === 'Success') return { kind: 'exited', exitCode: 0 }
  const code = status.details?.causes?.find(cause => cause.reason === 'ExitCode')?.message
  if (status.reason === 'NonZeroExitCode' && code !== undefined && /^\d+$/.test(code)) return { kind: 'exited', exitCode: Number(code) }
  return { kind: 'failed', message: status.message ?? statusOf(text).message ?? text }
}

/**
 * A command that did not run, as docker exec reports it: the runtime's message on stderr and 127
 * when there is no such executable, 126 when it cannot be run.
 */
export function failedExitCode (message: string): number {
  return /executable file not found|no such file or directory/i.test(message) ? 127 : 126
}

/**
 * What the path is, from the first entry of the archive tar makes of it: 'more' until the archive
 * has that far, 'empty' when it ended without one (tar found nothing to put in it).
 */
export function statOf (archive: Buffer, path: string): PathStat | 'more' | 'empty' {
  let offset = 0
  let longLink: string | null = null
  for (;;) {
    if (archive.length < offset + BLOCK) return 'more'
    const header = archive.subarray(offset, offset + BLOCK)
    if (header.every(byte => byte === 0)) return 'empty'
    const type = String.fromCharCode(header[156] as number)
    const size = parseInt(cString(header.subarray(124, 136)).trim() || '0', 8)
    const body = offset + BLOCK
    const next = body + Math.ceil(size / BLOCK) * BLOCK
    // Long names and pax records come before the entry they are about.
    if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
      if (type === 'K') {
        if (archive.length < body + size) return 'more'
        longLink = cString(archive.subarray(body, body + size))
      }
      offset = next
      continue
    }
    const permissions = parseInt(cString(header.subarray(100, 108)).trim() || '0', 8) & 0o7777
    const seconds = parseInt(cString(header.subarray(136, 148)).trim() || '0', 8)
    const kind = type === '5' ? 2 ** 31 : type === '2' ? 2 ** 27 : 0
    return {
      name: path === '/' ? '/' : posix.basename(path),
      size,
      // Go's os.FileMode, as docker reports it: the type bit above the permissions.
      mode: kind + permissions,
      mtime: new Date(seconds * 1000).toISOString(),
      linkTarget: type === '2' ? longLink ?? cString(header.subarray(157, 257)) : ''
    }
  }
}

function cString (bytes: Buffer): string {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8')
}

/** One replica's counters at one instant, whichever source gave them. */
export interface PodReading {
  at: number
  /** CPU time used since it started, in seconds (estimated from the rate on the metrics API). */
  cpuSeconds: number
  /** Cores in use now, as the source averaged them. */
  cores: number
  memory: number
  /** Its node's memory, when the source says: the limit of a container that has none. */
  nodeMemory: number | null
  rxBytes: number
  txBytes: number
  pids: number
}

export interface KubeletSummary {
  node?: { memory?: { availableBytes?: number, workingSetBytes?: number } }
  pods?: Array<{
    podRef?: { name?: string, namespace?: string }
    containers?: Array<{ name?: string, cpu?: { time?: string, usageNanoCores?: number, usageCoreNanoSeconds?: number }, memory?: { workingSetBytes?: number } }>
    network?: { rxBytes?: number, txBytes?: number }
    process_stats?: { process_count?: number }
  }>
}

export interface PodMetrics {
  timestamp?: string
  containers?: Array<{ name?: string, usage?: { cpu?: string, memory?: string } }>
}

/** A pod's reading from its node's kubelet summary (zeros for what the kubelet does not report, as pids before 1.26). */
export function readingOfSummary (summary: KubeletSummary, pod: V1Pod, namespace: string): PodReading {
  const entry = summary.pods?.find(candidate => candidate.podRef?.name === pod.metadata?.name && candidate.podRef?.namespace === namespace)
  const main = entry?.containers?.find(container => container.name === CONTAINER_NAME)
  const nodeMemory = summary.node?.memory?.availableBytes !== undefined && summary.node.memory.workingSetBytes !== undefined ? summary.node.memory.availableBytes + summary.node.memory.workingSetBytes : null
  return {
    at: main?.cpu?.time === undefined ? Date.now() : Date.parse(main.cpu.time),
    cpuSeconds: (main?.cpu?.usageCoreNanoSeconds ?? 0) / 1e9,
    cores: (main?.cpu?.usageNanoCores ?? 0) / 1e9,
    memory: main?.memory?.workingSetBytes ?? 0,
    nodeMemory,
    rxBytes: entry?.network?.rxBytes ?? 0,
    txBytes: entry?.network?.txBytes ?? 0,
    pids: entry?.process_stats?.process_count ?? 0
  }
}

/** The metrics API's reading of a pod; its CPU time is the rate summed over the readings berth took. */
export function readingOfMetrics (metrics: PodMetrics, pod: V1Pod, integrals: Map<string, { seconds: number, at: number }>): PodReading {
  const main = metrics.containers?.find(container => container.name === CONTAINER_NAME)
  const cores = coresOf(main?.usage?.cpu) ?? 0
  const at = metrics.timestamp === undefined ? Date.now() : Date.parse(metrics.timestamp)
  const uid = pod.metadata?.uid ?? ''
  const known = integrals.get(uid)
  const started = timeOf(pod.status?.startTime)
  // First seen: as if it had used this rate since it started.
  const seconds = known === undefined ? cores * Math.max(0, (at - (started === null ? at : Date.parse(started))) / 1000) : known.seconds + cores * Math.max(0, (at - known.at) / 1000)
  integrals.set(uid, { seconds, at })
  if (integrals.size > 10_000) integrals.delete(integrals.keys().next().value as string)
  return { at, cpuSeconds: seconds, cores, memory: bytesOf(main?.usage?.memory) ?? 0, nodeMemory: null, rxBytes: 0, txBytes: 0, pids: 0 }
}

/** A container's reading from its replicas': summed, CPU % from the previous reading when there is one (as docker stats), else from the source's rate. */
export function statsOf (now: { pods: V1Pod[], readings: PodReading[] }, previous: { readings: PodReading[] } | null, nodeCpus: number | null): ContainerStats {
  const sum = (pick: (reading: PodReading) => number, of: PodReading[]): number => of.reduce((total, reading) => total + pick(reading), 0)
  const cpuSeconds = sum(reading => reading.cpuSeconds, now.readings)
  const at = Math.max(...now.readings.map(reading => reading.at))
  let cpuPercent = sum(reading => reading.cores, now.readings) * 100
  if (previous !== null) {
    const elapsed = (at - Math.max(...previous.readings.map(reading => reading.at))) / 1000
    const used = cpuSeconds - sum(reading => reading.cpuSeconds, previous.readings)
    if (elapsed > 0 && used >= 0) cpuPercent = used / elapsed * 100
  }
  const limits = now.pods.map(pod => bytesOf(pod.spec?.containers.find(container => container.name === CONTAINER_NAME)?.resources?.limits?.memory))
  const limit = limits.every(value => value !== null)
    ? (limits as number[]).reduce((total, value) => total + value, 0)
    : Math.max(0, ...now.readings.map(reading => reading.nodeMemory ?? 0))
  const memory = sum(reading => reading.memory, now.readings)
  const cpuLimit = now.pods.map(pod => coresOf(pod.spec?.containers.find(container => container.name === CONTAINER_NAME)?.resources?.limits?.cpu)).find(value => value !== null)
  return {
    time: new Date(at).toISOString(),
    cpuPercent: Math.round(cpuPercent * 100) / 100,
    onlineCpus: nodeCpus ?? Math.max(1, Math.ceil(cpuLimit ?? 1)),
    cpuSeconds,
    memory: { used: memory, limit, percent: limit > 0 ? Math.round(memory / limit * 10_000) / 100 : 0 },
    network: { rxBytes: sum(reading => reading.rxBytes, now.readings), txBytes: sum(reading => reading.txBytes, now.readings) },
    blockIo: { readBytes: 0, writeBytes: 0 },
    pids: sum(reading => reading.pids, now.readings)
  }
}
