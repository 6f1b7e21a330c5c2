// Host ports on a cluster: those a service publishes, those berth picks from a range (the manager has
// none), and who holds a port a run could not have — named only to whoever may see that service.
import { notSupported } from '../parts.ts'
import { chooseHostPorts } from '../host-ports.ts'
import { PortConflictError, type PortRequest } from '../types.ts'
import type { SwarmCluster } from './cluster.ts'
import type { ServiceSpec, SwarmService } from './mapping.ts'

/** The host ports a service publishes (fixed ones; the manager picks the others per node). */
export function publishedPorts (spec: ServiceSpec): number[] {
  return (spec.EndpointSpec?.Ports ?? []).flatMap(port => port.PublishedPort === undefined ? [] : [port.PublishedPort])
}

/**
 * Host ports from a range (the policy's) for the ports that have no fixed one: the manager has no
 * ranges, so berth picks ports no service publishes, trying others when a node has one taken.
 */
export async function choosePorts (cluster: SwarmCluster, ports: PortRequest[], tried: Set<number>): Promise<Map<number, number>> {
  const services = await cluster.reads.services()
  return chooseHostPorts(ports, services.flatMap(service => publishedPorts(service.Spec)), tried)
}

/** Names the service holding a conflicting port, when it is one: its labels say who may be told. */
export async function withHolder (cluster: SwarmCluster, error: unknown, self: string | null): Promise<unknown> {
  if (!(error instanceof PortConflictError) || error.port === null) return error
  const port = error.port
  let holder: SwarmService | undefined
  if (error.holder !== null) {
    holder = await cluster.reads.service(error.holder.id).catch(() => undefined)
  } else {
    const services = await cluster.reads.services().catch(() => [])
    holder = services.find(service => service.ID !== self && publishedPorts(service.Spec).includes(port))
  }
  if (holder === undefined) return new PortConflictError(port, null, error.message, error)
  return new PortConflictError(port, { id: holder.ID, name: holder.Spec.Name ?? holder.ID, labels: holder.Spec.Labels ?? {} }, error.message, error)
}

/**
 * A node stops a task with the grace period the task was started with: a stop cannot shorten it for
 * replicas already running, so it is not offered rather than ignored.
 */
export function refuseTimeout (timeout: number | undefined): void {
  if (timeout === undefined) return
  throw notSupported('swarm', 'on a Swarm cluster replicas stop with the grace period they were started with: give stopTimeout when running the container, and stop or restart without a timeout')
}
