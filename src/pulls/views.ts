// Pulls and pull jobs as a client sees them: events on the wire, and a job as GET /v1/jobs/{id} shows it.
import { problemOf } from '../errors.ts'
import type { PullJob } from '../schemas/jobs.ts'
import type { Job } from './job.ts'
import type { PullEvent } from './shared-pull.ts'

/** A pull event as a client receives it: an error becomes the same problem body the error handler writes. */
export function wirePullEvent (event: PullEvent, requestId: string, instance: string): Record<string, unknown> {
  if (event.type === 'error') return { type: 'error', problem: problemOf(event.error, requestId, instance) }
  return event
}

/** The job as GET /v1/jobs/{id} shows it. */
export function describeJob (job: Job, requestId: string): PullJob {
  const self = `/v1/jobs/${job.id}`
  const error = job.error
  return {
    id: job.id,
    kind: 'pull',
    state: job.state,
    image: job.pull.ref.reference,
    platform: job.pull.platform,
    owner: job.owner,
    createdAt: job.createdAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
    progress: job.progress,
    result: job.state === 'succeeded' ? job.pull.result : null,
    error: error === null ? null : problemOf(error, requestId, self),
    links: { self, events: `${self}/events` }
  }
}
