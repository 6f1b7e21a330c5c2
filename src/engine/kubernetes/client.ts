// The apiserver as berth talks to it: one kubeconfig (a file, or the pod's service account), the
// typed clients of @kubernetes/client-node, and every call bounded by a deadline and mapped to
// berth's errors. Nothing here knows what a berth container is.
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import { ApiException, AppsV1Api, BatchV1Api, CoreV1Api, KubeConfig, PatchStrategy, VersionApi, Watch } from '@kubernetes/client-node'
import type { ConfigurationOptions } from '@kubernetes/client-node'
import { of } from '@kubernetes/client-node/dist/gen/rxjsStub.js'
import { mapKubeError, type Subject } from './errors.ts'

export interface KubeClientOptions {
  /** A kubeconfig file, a loaded config, or null for the service account of the pod berth runs in. */
  kubeconfig: string | KubeConfig | null
  /** The kubeconfig context to use; its current one when absent. */
  context?: string
  namespace: string
  timeoutMs: number
}

export class KubeClient {
  readonly config: KubeConfig
  readonly namespace: string
  readonly apps: AppsV1Api
  readonly batch: BatchV1Api
  readonly core: CoreV1Api
  readonly version: VersionApi
  readonly watch: Watch
  readonly timeoutMs: number

  constructor (options: KubeClientOptions) {
    this.config = loadConfig(options)
    this.namespace = options.namespace
    this.timeoutMs = options.timeoutMs
    this.apps = this.config.makeApiClient(AppsV1Api)
    this.batch = this.config.makeApiClient(BatchV1Api)
    this.core = this.config.makeApiClient(CoreV1Api)
    this.version = this.config.makeApiClient(VersionApi)
    this.watch = new Watch(this.config)
  }

  /**
   * A long-lived GET (a pod's log): resolves with the response once the apiserver answered within
   * the call deadline; the signal ends it. Not through the generated client, which cannot be cut
   * cleanly mid-stream.
   */
  async stream (path: string, query: Record<string, string>, about: { subject: Subject, target: string, signal: AbortSignal }): Promise<IncomingMessage> {
    const url = new URL(`${this.server}${path}`)
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value)
    const options: https.RequestOptions = { method: 'GET', hostname: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, signal: about.signal }
    const deadline = AbortSignal.timeout(this.timeoutMs)
    try {
      await this.config.applyToHTTPSOptions(options)
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = (url.protocol === 'https:' ? https : http).request(options, resolve)
        request.on('error', reject)
        const timeout = (): void => { request.destroy(deadline.reason as Error) }
        deadline.addEventListener('abort', timeout, { once: true })
        request.on('response', () => deadline.removeEventListener('abort', timeout))
        request.end()
      })
      if (response.statusCode !== undefined && response.statusCode >= 400) {
        const body = await readAll(response)
        throw new ApiException(response.statusCode, body, body, {})
      }
      return response
    } catch (error) {
      throw mapKubeError(error, about.subject, about.target, { timedOut: deadline.aborted, timeoutMs: this.timeoutMs, server: this.server })
    }
  }

  /** A GET of JSON outside the generated clients (an aggregated API, a node's proxy), within the call deadline. */
  async getJson<T> (path: string, query: Record<string, string>, about: { subject: Subject, target: string, signal?: AbortSignal }): Promise<T> {
    const deadline = AbortSignal.timeout(this.timeoutMs)
    const signal = about.signal === undefined ? deadline : AbortSignal.any([deadline, about.signal])
    const response = await this.stream(path, query, { ...about, signal })
    try {
      return JSON.parse(await readAll(response)) as T
    } catch (error) {
      throw mapKubeError(error, about.subject, about.target, { timedOut: deadline.aborted, timeoutMs: this.timeoutMs, server: this.server })
    }
  }

  /** The apiserver's address, for messages. */
  get server (): string {
    return this.config.getCurrentCluster()?.server ?? 'the apiserver'
  }

  /**
   * One apiserver call, given the options that carry its deadline (and the caller's signal): a call
   * that does not answer in time is cancelled and answered as engine_unavailable.
   */
  async call<T> (about: { subject: Subject, target: string, signal?: AbortSignal }, request: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
    const deadline = AbortSignal.timeout(this.timeoutMs)
    const signal = about.signal === undefined ? deadline : AbortSignal.any([deadline, about.signal])
    try {
      return await request(withSignal(signal))
    } catch (error) {
      throw mapKubeError(error, about.subject, about.target, { timedOut: deadline.aborted, timeoutMs: this.timeoutMs, server: this.server })
    }
  }
}

/** Per-call options that make the request abortable. */
export function withSignal (signal: AbortSignal, options: ConfigurationOptions = {}): ConfigurationOptions {
  return {
    ...options,
    middleware: [...(options.middleware ?? []), {
      pre: (context) => {
        context.setSignal(signal)
        return of(context)
      },
      post: (response) => of(response)
    }],
    middlewareMergeStrategy: 'append'
  }
}

/** A JSON merge patch: the fields given replace those of the object, null removes one. */
export function mergePatch (options: ConfigurationOptions): ConfigurationOptions {
  return {
    ...options,
    middleware: [...(options.middleware ?? []), {
      pre: (context) => {
        context.setHeaderParam('Content-Type', PatchStrategy.MergePatch)
        return of(context)
      },
      post: (response) => of(response)
    }],
    middlewareMergeStrategy: 'append'
  }
}

function loadConfig (options: KubeClientOptions): KubeConfig {
  if (options.kubeconfig instanceof KubeConfig) return options.kubeconfig
  const config = new KubeConfig()
  if (options.kubeconfig === null) config.loadFromCluster()
  else config.loadFromFile(options.kubeconfig)
  if (options.context !== undefined) config.setCurrentContext(options.context)
  return config
}

async function readAll (stream: IncomingMessage): Promise<string> {
  let text = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) text += chunk as string
  return text
}
