// berth's errors as exceptions: a BerthProblem carries the problem+json body, typed from the document's
// Problem schema, so `code` is the enum the document declares.
import type { components } from './generated/api.ts'

/** An RFC 9457 problem as berth sends it, with the members some codes add (`port`, `holder`, `errors`, `rule`…). */
export type Problem = components['schemas']['Problem']
export type ProblemCode = Problem['code']

export class BerthProblem extends Error {
  override readonly name = 'BerthProblem'
  readonly status: number
  readonly code: ProblemCode
  readonly type: string
  readonly title: string
  readonly detail: string
  readonly instance: string | undefined
  readonly requestId: string
  /** The whole body: the members above and those its code adds. */
  readonly problem: Problem

  constructor (problem: Problem) {
    super(problem.detail)
    this.problem = problem
    this.status = problem.status
    this.code = problem.code
    this.type = problem.type
    this.title = problem.title
    this.detail = problem.detail
    this.instance = problem.instance
    this.requestId = problem.requestId
  }
}

/** An error answer that is not a problem (a proxy's page, say): its status and the start of its body. */
export class BerthResponseError extends Error {
  override readonly name = 'BerthResponseError'
  readonly status: number
  readonly body: string

  constructor (status: number, body: string) {
    const start = body.trim().slice(0, 200)
    super(`HTTP ${status}${start ? `: ${start}` : ''}`)
    this.status = status
    this.body = body
  }
}

function isProblem (value: unknown): value is Problem {
  if (typeof value !== 'object' || value === null) return false
  const { status, code, detail } = value as Record<string, unknown>
  return typeof status === 'number' && typeof code === 'string' && typeof detail === 'string'
}

/** The exception for an error answer: openapi-fetch has already parsed its body (JSON when it is). */
export function problemOf (error: unknown, response: Response): BerthProblem | BerthResponseError {
  if (isProblem(error)) return new BerthProblem(error)
  return new BerthResponseError(response.status, typeof error === 'string' ? error : JSON.stringify(error) ?? '')
}
