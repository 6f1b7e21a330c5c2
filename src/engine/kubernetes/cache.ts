// A watch-fed copy of one kind of object in berth's namespace (an informer), in the one shape of
// copy the backends share (../copy.ts): a session lists, says it is current, and watches — again and
// again from where it was, as the apiserver ends each watch after a while — so `ps` costs the
// apiserver nothing. berth's own writes are applied as soon as the apiserver answers them
// (read-your-writes), and a watch event older than what is held never replaces it. A watch whose
// history the apiserver no longer has (410 Gone) is caught up by a new list within the session; one
// that breaks ends the session: until the next has listed again the copy cannot be trusted, and
// reads answer engine_unavailable.
import type { KubernetesObject, Watch } from '@kubernetes/client-node'
import { WatchedCopy, type CopySession } from '../copy.ts'

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
  readonly #copy: WatchedCopy
  readonly #objects = new Map<string, T>()
  /** Objects berth deleted (by uid) that a late watch event must not bring back. */
  readonly #deleted = new Set<string>()
  /** The last state of objects the watch saw deleted, by uid (bounded): how a pod ended once it is gone. */
  readonly #departed = new Map<string, T>()
  #resourceVersion = ''
  /** When recent versions were seen (oldest first, bounded): where a replay from a time starts. */
  readonly #history: Array<{ at: number, version: string }> = []

  constructor (source: CacheSource<T>) {
    this.#source = source
    this.#copy = new WatchedCopy({
      what: `the cluster's ${source.what}`,
      session: async session => { await this.#session(session) },
      retryMs: source.retryMs ?? { first: 250, max: 2000 }
    })
  }

  start (): void {
    this.#copy.start()
  }

  async stop (): Promise<void> {
    await this.#copy.stop()
  }

  /** Resolves once the copy is current, or rejects with why not (engine_unavailable) by the deadline. */
  async ready (timeoutMs: number): Promise<void> {
    await this.#copy.ready(timeoutMs)
  }

  get healthy (): boolean {
    return this.#copy.current
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
    if (!this.#copy.current) throw this.#copy.unavailable()
    return [...this.#objects.values()]
  }

  get (name: string): T | undefined {
    if (!this.#copy.current) throw this.#copy.unavailable()
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

  /** One session: the list, then watch after watch from where the copy is, until one breaks or the copy stops. */
  async #session ({ signal, synced }: CopySession): Promise<void> {
    await this.#relist()
    synced()
    while (!signal.aborted) {
      try {
        await this.#watchOnce(signal)
      } catch (error) {
        // The client's own idle timeout ends a quiet watch: watch again from the same version.
        if ((error as { name?: string }).name !== 'TimeoutError') throw error
      }
      // 410 Gone: the apiserver no longer has history from there; a new list catches up. What was
      // held stays readable meanwhile: it was current up to that version, and the list replaces it at once.
      if (this.#resourceVersion === '' && !signal.aborted) await this.#relist()
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
  }

  async #watchOnce (signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      let abort: AbortController | null = null
      const stop = (): void => { abort?.abort() }
      signal.addEventListener('abort', stop, { once: true })
      this.#source.watch.watch(this.#source.path, {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: WATCH_SECONDS
      }, (type: string, object: T & { code?: number }) => { this.#event(type, object) }, (error: unknown) => {
        signal.removeEventListener('abort', stop)
        if (error === null || error === undefined || signal.aborted) resolve()
        else reject(error)
      }).then(controller => {
        abort = controller
        if (signal.aborted) controller.abort()
      }, (error: unknown) => {
        signal.removeEventListener('abort', stop)
        if ((error as { statusCode?: number }).statusCode === 410) {
          this.#resourceVersion = ''
          resolve()
        } else reject(error)
      })
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
