// A watch-fed copy of one kind of object in berth's namespace (an informer): listed once, then kept
// current by a watch that resumes from where it was, so `ps` costs the apiserver nothing. berth's
// own writes are applied as soon as the apiserver answers them (read-your-writes), and a watch event
// older than what is held never replaces it. While the watch is broken the copy cannot be trusted:
// reads answer engine_unavailable until a new list and watch have caught up.
import type { KubernetesObject, Watch } from '@kubernetes/client-node'
import { setTimeout as sleep } from 'node:timers/promises'
import { unavailable } from './errors.ts'

export interface CacheSource<T extends KubernetesObject> {
  /** What it holds, for messages: "deployments". */
  what: string
  /** The watch path: /apis/apps/v1/namespaces/NS/deployments. */
  path: string
  list: () => Promise<{ items: T[], metadata?: { resourceVersion?: string } }>
  watch: Watch
  /** Where a broken watch is retried from; doubles up to max. */
  retryMs?: { first: number, max: number }
}

/** Seconds after which the apiserver ends a watch cleanly, before the client's 30 s idle timeout. */
const WATCH_SECONDS = 25
/** How many versions a copy remembers the time of. */
const HISTORY = 2000
/** How many deleted objects a copy remembers the last state of. */
const DEPARTED = 500

/** The apiserver's resource versions are opaque, but etcd's are increasing integers: compared as such. */
export function versionOf (object: KubernetesObject | undefined): bigint {
  const text = object?.metadata?.resourceVersion
  return text !== undefined && /^\d{1,20}$/.test(text) ? BigInt(text) : 0n
}

export class ResourceCache<T extends KubernetesObject> {
  readonly #source: CacheSource<T>
  readonly #objects = new Map<string, T>()
  /** Objects berth deleted (by uid) that a late watch event must not bring back. */
  readonly #deleted = new Set<string>()
  /** The last state of objects the watch saw deleted, by uid (bounded): how a pod ended once it is gone. */
  readonly #departed = new Map<string, T>()
  #resourceVersion = ''
  #healthy = false
  #failure: unknown = null
  #stopped = false
  #abort: AbortController | null = null
  /** When recent versions were seen (oldest first, bounded): where a replay from a time starts. */
  readonly #history: Array<{ at: number, version: string }> = []
  readonly #firstSync: Promise<void>
  #synced: () => void = () => {}

  constructor (source: CacheSource<T>) {
    this.#source = source
    this.#firstSync = new Promise(resolve => { this.#synced = resolve })
  }

  start (): void {
    this.#run().catch(() => {})
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#abort?.abort()
  }

  /** Resolves once the first list is in, or rejects with why not by the deadline. */
  async ready (timeoutMs: number): Promise<void> {
    if (this.#healthy) return
    const timer = sleep(timeoutMs, 'timeout' as const)
    const outcome = await Promise.race([this.#firstSync.then(() => 'synced' as const), timer])
    if (outcome === 'timeout' || !this.#healthy) throw this.#unavailable()
  }

  get healthy (): boolean {
    return this.#healthy
  }

  /** The version the copy is current to: a watch from it misses nothing. */
  get resourceVersion (): string {
    return this.#resourceVersion
  }

  /**
   * The version to watch from to see every change after `time`, as far as this copy remembers;
   * before what it remembers, the oldest version it knows.
   */
  versionAt (time: Date): string {
    const at = time.getTime()
    let version = this.#history[0]?.version ?? this.#resourceVersion
    for (const seen of this.#history) {
      if (seen.at > at) break
      version = seen.version
    }
    return version
  }

  list (): T[] {
    if (!this.#healthy) throw this.#unavailable()
    return [...this.#objects.values()]
  }

  get (name: string): T | undefined {
    if (!this.#healthy) throw this.#unavailable()
    return this.#objects.get(name)
  }

  /** Applies what the apiserver answered to one of berth's own writes. */
  apply (object: T): void {
    const name = object.metadata?.name
    if (name === undefined) return
    const held = this.#objects.get(name)
    if (held !== undefined && held.metadata?.uid === object.metadata?.uid && versionOf(held) > versionOf(object)) return
    this.#objects.set(name, object)
  }

  /** The last state the watch saw of a deleted object, while the copy remembers it. */
  departed (uid: string): T | undefined {
    return this.#departed.get(uid)
  }

  /** Forgets an object berth deleted, for good (a late event of it is ignored). */
  forget (object: T): void {
    const name = object.metadata?.name
    const uid = object.metadata?.uid
    if (uid !== undefined) this.#deleted.add(uid)
    if (name !== undefined && this.#objects.get(name)?.metadata?.uid === uid) this.#objects.delete(name)
  }

  #unavailable (): Error {
    const why = this.#failure instanceof Error ? `: ${this.#failure.message}` : ''
    return unavailable(`berth has lost its watch of the cluster's ${this.#source.what} and is catching up${why}`, this.#failure ?? undefined)
  }

  async #run (): Promise<void> {
    const retry = this.#source.retryMs ?? { first: 250, max: 2000 }
    let delay = retry.first
    while (!this.#stopped) {
      try {
        if (this.#resourceVersion === '') await this.#relist()
        await this.#watchOnce()
        delay = retry.first
      } catch (error) {
        if (this.#stopped) return
        const gone = (error as { statusCode?: number }).statusCode === 410
        if (gone) {
          // The apiserver no longer has history from there: list again.
          this.#resourceVersion = ''
          continue
        }
        if ((error as { name?: string }).name !== 'TimeoutError') {
          this.#healthy = false
          this.#failure = error
          this.#resourceVersion = ''
          await sleep(delay)
          delay = Math.min(delay * 2, retry.max)
        }
      }
    }
  }

  async #relist (): Promise<void> {
    const list = await this.#source.list()
    const fresh = new Map<string, T>()
    for (const item of list.items) {
      const name = item.metadata?.name
      if (name !== undefined) fresh.set(name, item)
    }
    this.#objects.clear()
    for (const [name, item] of fresh) this.#objects.set(name, item)
    // What berth deleted and the list no longer has needs no guard any more.
    const present = new Set(list.items.map(item => item.metadata?.uid))
    for (const uid of this.#deleted) if (!present.has(uid)) this.#deleted.delete(uid)
    this.#resourceVersion = list.metadata?.resourceVersion ?? ''
    this.#remember(this.#resourceVersion)
    this.#healthy = true
    this.#failure = null
    this.#synced()
  }

  async #watchOnce (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#source.watch.watch(this.#source.path, {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: WATCH_SECONDS
      }, (type: string, object: T & { code?: number }) => this.#event(type, object), (error: unknown) => {
        this.#abort = null
        if (error === null || error === undefined) resolve()
        else reject(error)
      }).then(abort => {
        this.#abort = abort
        if (this.#stopped) abort.abort()
      }, reject)
    })
  }

  #remember (version: string): void {
    if (version === '') return
    this.#history.push({ at: Date.now(), version })
    if (this.#history.length > HISTORY) this.#history.shift()
  }

  #event (type: string, object: T & { code?: number }): void {
    if (type === 'ERROR') {
      // 410 Gone: the version watched from is too old; the watch ends and a new list follows.
      if (object.code === 410) this.#resourceVersion = ''
      return
    }
    const version = object.metadata?.resourceVersion
    if (type === 'BOOKMARK') {
      if (version !== undefined) this.#resourceVersion = version
      return
    }
    const name = object.metadata?.name
    const uid = object.metadata?.uid
    if (name === undefined) return
    if (version !== undefined) {
      this.#resourceVersion = version
      this.#remember(version)
    }
    if (type === 'DELETED') {
      if (uid !== undefined) {
        this.#deleted.delete(uid)
        this.#departed.set(uid, object)
        if (this.#departed.size > DEPARTED) this.#departed.delete(this.#departed.keys().next().value as string)
      }
      if (this.#objects.get(name)?.metadata?.uid === uid) this.#objects.delete(name)
      return
    }
    if (uid !== undefined && this.#deleted.has(uid)) return
    const held = this.#objects.get(name)
    if (held !== undefined && held.metadata?.uid === uid && versionOf(held) > versionOf(object)) return
    this.#objects.set(name, object)
  }
}
