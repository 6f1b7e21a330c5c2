// Reads the engine's pull stream line by line. The engine answers 200 before it knows whether the
// pull will work, and reports a failure as an `error` line inside the stream: this is where it is caught.
import type { Readable } from 'node:stream'
import type { PullLine } from './streams.ts'

export interface PullStreamResult {
  error: string | null
  digest: string | null
}

export async function readPullStream (stream: Readable, signal?: AbortSignal, onLine?: (line: PullLine) => void): Promise<PullStreamResult> {
  let error: string | null = null
  let digest: string | null = null
  let pending = ''
  const handle = (text: string): void => {
    if (text.trim() === '') return
    let line: PullLine & { error?: string, errorDetail?: { message?: string } }
    try {
      line = JSON.parse(text)
    } catch {
      return
    }
    if (line.error !== undefined || line.errorDetail !== undefined) {
      error = line.errorDetail?.message ?? line.error ?? 'unknown error'
      return
    }
    const found = /^Digest: (\S+)/.exec(line.status ?? '')
    if (found) digest = found[1] ?? null
    onLine?.(line)
  }
  const abort = (): void => { stream.destroy() }
  signal?.addEventListener('abort', abort, { once: true })
  try {
    for await (const chunk of stream) {
      pending += chunk.toString('utf8')
      let newline = pending.indexOf('\n')
      while (newline !== -1) {
        handle(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
        newline = pending.indexOf('\n')
      }
    }
    handle(pending)
  } catch (failure) {
    if (signal?.aborted) throw signal.reason
    error = `the pull stream broke: ${(failure as Error).message}`
  } finally {
    signal?.removeEventListener('abort', abort)
  }
  // A connection cut mid-pull raised above and is the error; after a clean end the caller inspects
  // the image, so a pull that delivered nothing still cannot be reported as a success.
  return { error, digest }
}
