// Folds a pull's per-layer reports into one picture: every layer's latest state and one overall
// fraction, so a client can draw a single progress bar for a pull of many layers.
import type { LayerPhase, LayerProgress } from '../engine/types.ts'

export interface PullSnapshot {
  /** 0 to 1 over the work the pull has to do; never goes back. */
  fraction: number
  layers: LayerProgress[]
}

// Downloading and extracting are each half of a layer's work: the engine reports bytes for both.
function layerDone (layer: LayerProgress): number {
  const part = layer.total === null || layer.total === 0 ? 0 : Math.min(1, layer.current / layer.total)
  const done: Record<LayerPhase, number> = {
    waiting: 0, retrying: 0, downloading: part / 2, verifying: 0.5, downloaded: 0.5, extracting: 0.5 + part / 2, complete: 1, exists: 1
  }
  return done[layer.phase]
}

/** A layer as one pull knows it: by its id, and on a cluster by the node it goes to. */
export function layerKey (layer: Pick<LayerProgress, 'id' | 'node'>): string {
  return layer.node === undefined ? layer.id : `${layer.node}/${layer.id}`
}

export class PullTracker {
  readonly #layers = new Map<string, LayerProgress>()
  #fraction = 0

  /** Records a layer report and answers the layer as berth shows it: sizes remembered across phases. */
  update (report: LayerProgress): LayerProgress {
    // On a cluster each node pulls the same layers: each node's copy is work of its own.
    const key = layerKey(report)
    const known = this.#layers.get(key)
    const total = report.total ?? known?.total ?? null
    // The engine reports no bytes for the steps between download and extraction, nor after: the layer is whole.
    const whole = report.phase === 'verifying' || report.phase === 'downloaded' || report.phase === 'complete'
    const layer: LayerProgress = { id: report.id, phase: report.phase, current: whole && total !== null ? total : report.current, total, ...(report.node === undefined ? {} : { node: report.node }) }
    this.#layers.set(key, layer)
    this.#fraction = Math.max(this.#fraction, this.#compute())
    return layer
  }

  /** Rounded to 4 places: finer steps tell a client nothing and lengthen every event. */
  get fraction (): number {
    return Math.floor(this.#fraction * 10_000) / 10_000
  }

  get counts (): { total: number, done: number } {
    const layers = [...this.#layers.values()]
    return { total: layers.length, done: layers.filter(layer => layer.phase === 'complete' || layer.phase === 'exists').length }
  }

  snapshot (): PullSnapshot {
    return { fraction: this.fraction, layers: [...this.#layers.values()] }
  }

  /** The pull finished: all its work is done, whatever the last reports said. */
  finish (): void {
    this.#fraction = 1
  }

  // Each layer weighs what it has to move. Layers already on the engine have nothing to do and are
  // left out; a layer whose size is not known yet counts as the average of the known ones.
  #compute (): number {
    const work = [...this.#layers.values()].filter(layer => layer.phase !== 'exists')
    if (work.length === 0) return 0
    const sizes = work.flatMap(layer => layer.total === null ? [] : [layer.total])
    const average = sizes.length === 0 ? 1 : sizes.reduce((sum, size) => sum + size, 0) / sizes.length
    let weighted = 0
    let whole = 0
    for (const layer of work) {
      const weight = layer.total ?? average
      weighted += weight * layerDone(layer)
      whole += weight
    }
    return whole === 0 ? 0 : Math.min(1, weighted / whole)
  }
}
