// Reads the classic builder's progress stream ("Step 2/5 : RUN …", the step's output, " ---> Using
// cache", " ---> <id>", aux image ids) into berth's build progress. Like a pull, a build that fails
// still answers 200: the failure is an `error` line in the stream, caught here with its step.
import type { Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import type { BuildProgress } from '../types.ts'

/** A long line of output is cut into pieces of this size: a step printing without newlines must not grow berth's memory. */
const MAX_LINE = 8 * 1024
/** The output lines of the failing step a failure carries. */
export const FAILURE_OUTPUT_LINES = 20

interface BuildLine {
  stream?: string
  status?: string
  id?: string
  progress?: string
  aux?: { ID?: string }
  error?: string
  errorDetail?: { message?: string, code?: number }
}

export interface BuildStep {
  number: number
  total: number
  instruction: string
}

export interface BuildStreamResult {
  /** The last image id the builder reported: the built image, when there is no error. */
  imageId: string | null
  error: { message: string, exitCode: number | null, step: BuildStep | null, output: string[] } | null
  /** Images this build committed itself (not taken from the cache), oldest first. */
  created: string[]
  /** The container of the step that was running when the stream ended, if one was. */
  running: string | null
  /** The last image a step reported (a FROM's base included): the image the next step's container is made from. */
  lastImage: string | null
}

// The builder marks a step's stderr with these terminal colour codes.
const STDERR_START = '\u001b[91m'
const STDERR_END = '\u001b[0m'
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g

export class BuildStreamReader {
  readonly #onProgress: ((progress: BuildProgress) => void) | undefined
  #step: BuildStep | null = null
  #cached = false
  #pending = ''
  #pendingStream: 'stdout' | 'stderr' = 'stdout'
  #stepOutput: string[] = []
  #lastStatus = new Map<string, string>()
  readonly result: BuildStreamResult = { imageId: null, error: null, created: [], running: null, lastImage: null }

  constructor (onProgress?: (progress: BuildProgress) => void) {
    this.#onProgress = onProgress
  }

  /** One JSON line of the engine's stream. */
  line (text: string): void {
    if (text.trim() === '') return
    let line: BuildLine
    try {
      line = JSON.parse(text)
    } catch {
      return
    }
    if (line.error !== undefined || line.errorDetail !== undefined) {
      this.#flush()
      const message = line.errorDetail?.message ?? line.error ?? 'unknown error'
      const exitCode = typeof line.errorDetail?.code === 'number' ? line.errorDetail.code : null
      this.result.error = { message, exitCode, step: this.#step, output: this.#stepOutput.slice(-FAILURE_OUTPUT_LINES) }
      return
    }
    if (typeof line.aux?.ID === 'string') {
      this.result.imageId = line.aux.ID
      return
    }
    if (typeof line.status === 'string') {
      // Pulling a base: one event per layer and phase, not one per progress tick.
      const key = line.id ?? ''
      if (this.#lastStatus.get(key) === line.status) return
      this.#lastStatus.set(key, line.status)
      this.#onProgress?.({ kind: 'status', message: (line.id === undefined ? '' : `${line.id}: `) + line.status })
      return
    }
    if (typeof line.stream === 'string') this.#text(line.stream)
  }

  /** The stream ended: what is left of an unfinished line is output too. */
  end (): void {
    this.#flush()
  }

  #text (text: string): void {
    const step = /^Step (\d+)\/(\d+) : (.*)$/s.exec(text)
    if (step !== null) {
      this.#flush()
      this.#step = { number: Number(step[1]), total: Number(step[2]), instruction: (step[3] as string).trim() }
      this.#cached = false
      this.#stepOutput = []
      this.result.running = null
      this.#onProgress?.({ kind: 'step', ...this.#step })
      return
    }
    // The builder's own lines come whole; output a step left without its line break ends before them.
    if (text === ' ---> Using cache\n') {
      this.#flush()
      this.#cached = true
      return
    }
    const running = /^ ---> Running in ([0-9a-f]{12,64})\n$/.exec(text)
    if (running !== null) {
      this.#flush()
      this.result.running = running[1] as string
      return
    }
    // FROM scratch reports no image: " ---> \n".
    const layer = /^ ---> ([0-9a-f]{12,64})?\n$/.exec(text)
    if (layer !== null) {
      this.#flush()
      if (layer[1] !== undefined) this.#layer(layer[1])
      return
    }
    if (/^Removing intermediate container [0-9a-f]+\n$/.test(text) || /^Successfully (built|tagged) /.test(text)) {
      this.#flush()
      return
    }
    if (this.#step === null && text === '\n') return
    this.#output(text)
  }

  #layer (id: string): void {
    const step = this.#step
    this.result.running = null
    this.result.lastImage = id
    // A FROM step reports its base image: nothing was built.
    if (step === null || /^FROM\s/i.test(step.instruction)) return
    if (!this.#cached) this.result.created.push(id)
    this.#onProgress?.({ kind: 'layer', step: step.number, id, cached: this.#cached })
  }

  #output (text: string): void {
    let rest = text
    if (rest.startsWith(STDERR_START)) {
      this.#pendingStream = 'stderr'
      rest = rest.slice(STDERR_START.length)
    }
    const endsStderr = rest.endsWith(STDERR_END)
    if (endsStderr) rest = rest.slice(0, -STDERR_END.length)
    this.#pending += rest.replace(ANSI, '')
    let newline = this.#pending.indexOf('\n')
    while (newline !== -1) {
      this.#emit(this.#pending.slice(0, newline))
      this.#pending = this.#pending.slice(newline + 1)
      newline = this.#pending.indexOf('\n')
    }
    while (this.#pending.length >= MAX_LINE) {
      this.#emit(this.#pending.slice(0, MAX_LINE))
      this.#pending = this.#pending.slice(MAX_LINE)
    }
    if (endsStderr) {
      this.#flush()
      this.#pendingStream = 'stdout'
    }
  }

  #flush (): void {
    if (this.#pending !== '') this.#emit(this.#pending)
    this.#pending = ''
  }

  #emit (raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    // The builder separates a step's header from its output with a bare newline.
    if (line === '' && this.#stepOutput.length === 0) return
    this.#stepOutput.push(line)
    if (this.#stepOutput.length > FAILURE_OUTPUT_LINES * 2) this.#stepOutput.splice(0, FAILURE_OUTPUT_LINES)
    this.#onProgress?.({ kind: 'output', step: this.#step?.number ?? 0, stream: this.#pendingStream, line })
  }
}

/** Reads a whole build stream; a connection cut by the signal throws its reason. */
export async function readBuildStream (stream: Readable, signal: AbortSignal | undefined, reader: BuildStreamReader): Promise<BuildStreamResult> {
  const decoder = new StringDecoder('utf8')
  let pending = ''
  const abort = (): void => { stream.destroy() }
  signal?.addEventListener('abort', abort, { once: true })
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending += decoder.write(chunk)
      let newline = pending.indexOf('\n')
      while (newline !== -1) {
        reader.line(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
        newline = pending.indexOf('\n')
      }
    }
    reader.line(pending + decoder.end())
  } catch (failure) {
    if (signal?.aborted) throw signal.reason
    reader.end()
    reader.result.error ??= { message: `the build stream broke: ${(failure as Error).message}`, exitCode: null, step: null, output: [] }
  } finally {
    signal?.removeEventListener('abort', abort)
  }
  if (signal?.aborted) throw signal.reason
  reader.end()
  return reader.result
}
