// `--format` as docker reads it: a Go template over each row's fields (`{{.ID}}\t{{.Names}}`), `table`
// in front for aligned columns under a header, `json` for one JSON object a line. The part of Go's
// template language people type: fields, `json .`, `json .Field`, `.Label "key"`, `upper`, `lower`.
import { UsageError } from './args.ts'
import { table } from './format.ts'

/** A row: each field's text (docker's names), plus its labels for `.Label "key"`. */
export interface Row {
  fields: Record<string, string>
  labels?: Record<string, string>
  /** What `json .` prints; the fields when absent. */
  json?: unknown
}

type Piece = string | ((row: Row) => string)

/** `{{.ID}}` and friends, compiled once; an unknown field is an error before anything is printed. */
function compile (template: string, known: readonly string[]): Piece[] {
  const pieces: Piece[] = []
  let rest = template
  while (rest !== '') {
    const open = rest.indexOf('{{')
    if (open === -1) { pieces.push(rest); break }
    if (open > 0) pieces.push(rest.slice(0, open))
    const close = rest.indexOf('}}', open)
    if (close === -1) throw new TemplateError(`unclosed action in ${JSON.stringify(template)}`)
    pieces.push(action(rest.slice(open + 2, close).trim(), known))
    rest = rest.slice(close + 2)
  }
  return pieces
}

export class TemplateError extends UsageError {
  constructor (message: string) {
    // docker: a template it cannot run is status 1, as the message says it failed.
    super(`template parsing error: ${message}`, 1)
  }
}

function action (text: string, known: readonly string[]): (row: Row) => string {
  const field = (name: string) => {
    if (!known.includes(name)) throw new TemplateError(`can't evaluate field ${name} (fields: ${known.map(k => `.${k}`).join(' ')})`)
    return (row: Row) => row.fields[name] ?? ''
  }
  let match: RegExpExecArray | null
  if ((match = /^\.([A-Za-z]+)$/.exec(text))) return field(match[1] as string)
  if (text === '.' || text === 'json .') return row => JSON.stringify(row.json ?? row.fields)
  if ((match = /^json \.([A-Za-z]+)$/.exec(text))) { const get = field(match[1] as string); return row => JSON.stringify(get(row)) }
  if ((match = /^\.Label "([^"]*)"$/.exec(text))) { const key = match[1] as string; return row => row.labels?.[key] ?? '' }
  if ((match = /^(upper|lower) \.([A-Za-z]+)$/.exec(text))) {
    const get = field(match[2] as string)
    return match[1] === 'upper' ? row => get(row).toUpperCase() : row => get(row).toLowerCase()
  }
  throw new TemplateError(`berth's --format takes {{.Field}}, {{json .}}, {{json .Field}}, {{.Label "key"}}, {{upper .Field}} and {{lower .Field}}, not {{${text}}}`)
}

/** docker's column titles for its field names, where they are not the name in capitals. */
const TITLES: Record<string, string> = {
  ID: 'CONTAINER ID', Names: 'NAMES', RunningFor: 'CREATED', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', Repository: 'REPOSITORY'
}

/**
 * The rows as `format` says: `table …` (columns aligned, docker's titles over them), `json`, or a
 * template per line. Shells pass `\t` as two characters; docker reads it as a tab, and so does this.
 */
export function formatRows (format: string, rows: Row[], known: readonly string[], titles: Record<string, string> = {}): string {
  if (format === 'json') return rows.map(row => `${JSON.stringify(row.json ?? row.fields)}\n`).join('')
  const text = format.replace(/\\t/g, '\t').replace(/\\n/g, '\n')
  const isTable = /^table\s/.test(text) || text === 'table'
  const body = isTable ? text.replace(/^table\s*/, '') : text
  const pieces = compile(body, known)
  const render = (row: Row) => pieces.map(piece => typeof piece === 'string' ? piece : piece(row)).join('')
  if (!isTable) return rows.map(row => `${render(row)}\n`).join('')
  // A table: cells are split at tabs; the header holds each field's title in place of its action.
  const header = compile(body, known).map(piece => piece)
  const headerRow: Row = { fields: Object.fromEntries(known.map(name => [name, titles[name] ?? TITLES[name] ?? name.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase()])) }
  const headerText = header.map(piece => typeof piece === 'string' ? piece : piece(headerRow)).join('')
  return table(headerText.split('\t'), rows.map(row => render(row).split('\t')))
}
