// Host ports berth chooses on a cluster, where the orchestrator has no port ranges: for each port a
// run gives no fixed host port, the first in its range (the policy's, else the one an engine would
// use) that nothing holds and no earlier attempt of the run tried. Pure.
import { PortConflictError, type PortRequest } from './types.ts'

/** The ports an engine hands out when a run names none (Linux's ip_local_port_range), as the policy assumes (src/access/policy.ts). */
export const ENGINE_CHOSEN_PORTS = { min: 32768, max: 60999 }

/** By index into `ports`; what it chooses is added to `tried`, so a retry after a conflict moves on. */
export function chooseHostPorts (ports: PortRequest[], held: Iterable<number>, tried: Set<number>): Map<number, number> {
  const taken = new Set([...tried, ...held])
  const chosen = new Map<number, number>()
  ports.forEach((port, index) => {
    if (port.host !== undefined) return
    const range = port.hostRange ?? ENGINE_CHOSEN_PORTS
    for (let candidate = range.min; candidate <= range.max; candidate++) {
      if (taken.has(candidate)) continue
      chosen.set(index, candidate)
      taken.add(candidate)
      tried.add(candidate)
      return
    }
    throw new PortConflictError(null, null, 'no host port is free in the allowed range')
  })
  return chosen
}
