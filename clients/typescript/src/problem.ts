// berth's errors as exceptions: a BerthProblem carries the problem+json body, typed from the document,
// which declares each code's problem as a schema of its own (PortConflictProblem…) with the members
// that code adds: Problem is their union, so narrowing on `code` types those members.
import type { components } from './generated/api.ts'

type Schemas = components['schemas']
/** The document's schemas of one code's problems: every `…Problem` but the Problem they all extend. */
type ProblemSchema = Exclude<Extract<keyof Schemas, `${string}Problem`>, 'Problem'>

/**
 * An RFC 9457 problem as berth sends it: a union by `code`, so that `if (problem.code === 'port_conflict')`
 * types `problem.port` and `problem.holder`.
 */
export type Problem = Schemas[ProblemSchema]
export type ProblemCode = Problem['code']
/** The problem of one code: `ProblemOf<'quota_exceeded'>` has `limit`, `quota` and `used`. */
export type ProblemOf<C extends ProblemCode> = Extract<Problem, { code: C }>

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

  /** Whether it is a problem of `code`: then `problem` is typed as that code's, with its members. */
  is<C extends ProblemCode> (code: C): this is BerthProblem & { code: C, problem: ProblemOf<C> } {
    return this.code === code
  }

  /**
   * A problem as an answer's body types it, or as a stream's `error` event does: there the schema is
   * Problem itself, whose members the document declares per code all the same.
   */
  constructor (problem: Problem | Schemas['Problem']) {
    super(problem.detail)
    this.problem = problem as Problem
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
