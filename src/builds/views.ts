// Builds as a client sees them: events on the wire, and a build as GET /v1/builds/{id} shows it.
import { problemOf } from '../errors.ts'
import type { BuildJob } from '../schemas/builds.ts'
import type { Build, BuildEvent } from './build.ts'

/** A build event as a client receives it: an error becomes the same problem body the error handler writes; ids are short, as `docker build` prints them. */
export function wireBuildEvent (build: Build, event: BuildEvent, requestId: string, instance: string): Record<string, unknown> {
  switch (event.type) {
    case 'error': return { type: 'error', problem: problemOf(event.error, requestId, instance) }
    case 'queued':
    case 'started': return { type: event.type, build: build.id }
    case 'layer': return { ...event, id: event.id.replace(/^sha256:/, '').slice(0, 12) }
    default: return event
  }
}

/** The build as GET /v1/builds/{id} shows it. */
export function describeBuild (build: Build, requestId: string): BuildJob {
  const self = `/v1/builds/${build.id}`
  return {
    id: build.id,
    state: build.state,
    owner: build.owner,
    tags: build.summary.tags,
    dockerfile: build.summary.dockerfile,
    target: build.summary.target,
    platform: build.summary.platform,
    contextSize: build.summary.contextSize,
    step: build.step,
    createdAt: build.createdAt.toISOString(),
    finishedAt: build.finishedAt?.toISOString() ?? null,
    result: build.result,
    error: build.error === null ? null : problemOf(build.error, requestId, self),
    links: { self, events: `${self}/events` }
  }
}
