// The operations berth needs from a container engine, in berth's own types. Docker implements
// them today; a Kubernetes engine is meant to slot in behind the same interface.
import type { RegistryCredentials } from '../config.ts'
import type { ImageRef } from '../image-ref.ts'

export type Protocol = 'tcp' | 'udp' | 'sctp'

export interface PortBinding {
  container: number
  /** null when the container is not running and the host port is left to the engine. */
  host: number | null
  protocol: Protocol
  hostIp: string
}

export interface PortRequest {
  container: number
  host?: number
  protocol: Protocol
  hostIp?: string
}

export interface ImageSummary {
  id: string
  tags: string[]
  digests: string[]
  createdAt: string
  size: number
  labels: Record<string, string>
}

export interface Image extends ImageSummary {
  architecture: string
  os: string
}

export interface PulledImage {
  id: string
  reference: string
  digest: string | null
  tags: string[]
}

export interface ImageRemoval {
  untagged: string[]
  deleted: string[]
}

/** The engine's states, and `removed`: an autoRemove container that exited and was removed before berth could inspect it. */
export type ContainerState = 'created' | 'restarting' | 'running' | 'removing' | 'paused' | 'exited' | 'dead' | 'removed'

export interface ContainerSummary {
  id: string
  name: string
  image: string
  imageId: string
  command: string
  state: ContainerState
  status: string
  createdAt: string
  ports: PortBinding[]
  labels: Record<string, string>
}

export interface Container {
  id: string
  name: string
  image: string
  imageId: string
  imageDigest: string | null
  command: string[]
  state: ContainerState
  running: boolean
  exitCode: number | null
  createdAt: string
  startedAt: string | null
  finishedAt: string | null
  ports: PortBinding[]
  labels: Record<string, string>
  restart: { policy: RestartPolicy, maxRetries: number }
  resources: { memory: number | null, cpus: number | null }
  autoRemove: boolean
}

export type RestartPolicy = 'no' | 'always' | 'unless-stopped' | 'on-failure'
export type PullPolicy = 'missing' | 'always' | 'never'

export interface Mount {
  type: 'volume' | 'bind'
  source: string
  target: string
  readOnly: boolean
}

export interface RunSpec {
  image: { kind: 'ref', ref: ImageRef } | { kind: 'id', id: string }
  name?: string
  command?: string[]
  entrypoint?: string[]
  env: Record<string, string>
  workingDir?: string
  user?: string
  labels: Record<string, string>
  ports: PortRequest[]
  mounts: Mount[]
  restart: { policy: RestartPolicy, maxRetries?: number }
  memory?: number
  cpus?: number
  autoRemove: boolean
  pull: PullPolicy
  auth?: RegistryCredentials
}

export interface PullOptions {
  platform?: string
  auth?: RegistryCredentials
  signal?: AbortSignal
}

export interface ListContainersOptions {
  all: boolean
  status?: ContainerState[]
  labels?: string[]
  name?: string
}

export interface ListImagesOptions {
  reference?: string
  dangling?: boolean
  labels?: string[]
}

export interface EngineInfo {
  version: string
  apiVersion: string
  os: string
  arch: string
}

/** The result of start/stop: `changed` is false when the container already was in that state. */
export interface StateChange {
  changed: boolean
}

export interface Engine {
  info (): Promise<EngineInfo>
  pullImage (ref: ImageRef, options: PullOptions): Promise<PulledImage>
  listImages (options: ListImagesOptions): Promise<ImageSummary[]>
  inspectImage (reference: string): Promise<Image>
  removeImage (reference: string, options: { force: boolean }): Promise<ImageRemoval>
  listContainers (options: ListContainersOptions): Promise<ContainerSummary[]>
  inspectContainer (idOrName: string): Promise<Container>
  /** docker run -d: create (pulling per spec.pull) and start; never leaves a created-but-failed container. */
  run (spec: RunSpec): Promise<Container>
  startContainer (id: string): Promise<StateChange>
  stopContainer (id: string, options: { timeout?: number }): Promise<StateChange>
  restartContainer (id: string, options: { timeout?: number }): Promise<StateChange>
  removeContainer (id: string, options: { force: boolean, volumes: boolean }): Promise<void>
  close (): Promise<void>
}
