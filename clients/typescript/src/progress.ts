// A pull's progress for people: at a terminal, bars (cli-progress) for the whole pull and for each
// layer; anywhere else docker's plain lines, one per layer state, so a log stays readable.
import cliProgress, { type SingleBar } from 'cli-progress'
import { humanSize } from './format.ts'
import type { components } from './generated/api.ts'

type PullEvent = components['schemas']['PullEvent']
type Phase = components['schemas']['LayerProgress']['phase']

/** docker pull's words for each layer state. */
export const PHASE_WORDS: Record<Phase, string> = {
  waiting: 'Waiting',
  downloading: 'Downloading',
  verifying: 'Verifying Checksum',
  downloaded: 'Download complete',
  extracting: 'Extracting',
  complete: 'Pull complete',
  exists: 'Already exists',
  retrying: 'Retrying'
}

export interface PullRenderer {
  event (event: PullEvent): void
  /** Ends the display (bars stay on screen as they last were). */
  stop (): void
}

/** "1: Pulling from demo/web" — the tag, and the repository without its registry. */
function pullingLine (image: string): string {
  const at = image.indexOf('@')
  const colon = image.lastIndexOf(':')
  const [name, tag] = at !== -1
    ? [image.slice(0, at), image.slice(at + 1)]
    : colon > image.lastIndexOf('/') ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest']
  const slash = name.indexOf('/')
  const first = name.slice(0, slash)
  const path = slash !== -1 && (first.includes('.') || first.includes(':') || first === 'localhost') ? name.slice(slash + 1) : name
  return `${tag}: Pulling from ${path}`
}

/** docker's non-terminal output: a line when the pull starts, then one each time a layer changes state. */
export function lineRenderer (write: (text: string) => void): PullRenderer {
  const phases = new Map<string, Phase>()
  return {
    event (event) {
      if (event.type === 'queued') write(`${event.image}: Waiting for a pull slot\n`)
      else if (event.type === 'started') write(`${pullingLine(event.image)}\n`)
      else if (event.type === 'progress' && phases.get(event.layer.id) !== event.layer.phase) {
        phases.set(event.layer.id, event.layer.phase)
        write(`${event.layer.id}: ${PHASE_WORDS[event.layer.phase]}\n`)
      }
    },
    stop () {}
  }
}

/**
 * Bars at a terminal, under docker's "Pulling from" line: the first for the whole pull (by size, and
 * layers done), then one per layer, labelled as docker labels them (12 characters: they line up).
 */
export function barRenderer (stream: NodeJS.WriteStream): PullRenderer {
  let bars: cliProgress.MultiBar | undefined
  let overall: SingleBar | undefined
  const layers = new Map<string, SingleBar>()
  const start = (line: string) => {
    stream.write(`${line}\n`)
    bars = new cliProgress.MultiBar({
      stream,
      format: '{label} {bar} {detail}',
      barsize: 30,
      hideCursor: true,
      autopadding: true,
      // Ctrl-C while pulling gives the cursor back.
      gracefulExit: true
    }, cliProgress.Presets.shades_classic)
    overall = bars.create(100, 0, { label: 'total'.padEnd(12), detail: '' }, { format: '{label} {bar} {percentage}% {detail}' })
  }
  return {
    event (event) {
      if (event.type === 'queued') stream.write(`${event.image}: Waiting for a pull slot\n`)
      else if (event.type === 'started') start(pullingLine(event.image))
      else if (event.type === 'progress' && bars) {
        const { layer } = event
        overall?.update(Math.floor(event.fraction * 100), { detail: `${event.layers.done}/${event.layers.total} layers` })
        let bar = layers.get(layer.id)
        if (!bar) {
          bar = bars.create(1, 0, { label: layer.id, detail: '' })
          layers.set(layer.id, bar)
        }
        const finished = layer.phase === 'complete' || layer.phase === 'exists' || layer.phase === 'downloaded'
        const total = Math.max(layer.total ?? 0, 1)
        bar.setTotal(total)
        bar.update(finished ? total : Math.min(layer.current, total), {
          detail: layer.total && !finished ? `${PHASE_WORDS[layer.phase]} ${humanSize(layer.current)}/${humanSize(layer.total)}` : PHASE_WORDS[layer.phase]
        })
      } else if (event.type === 'pulled') overall?.update(100)
    },
    stop () { bars?.stop() }
  }
}
