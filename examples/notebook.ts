// A notebook server per user, through berth's TypeScript client: pull the image (reporting progress),
// run it with a token of its own on a host port, wait until it answers HTTP, and let berth stop it once
// it sits idle — then say so. Run from the repository (Node 22.18+ runs TypeScript as it is):
//
//   BERTH_URL=http://127.0.0.1:8080 BERTH_TOKEN=… node examples/notebook.ts ada
//
// Options: --image (default $NOTEBOOK_IMAGE, else quay.io/jupyter/base-notebook:latest), --port (the
// server's port in the container, 8888), --host-port (default: one the engine picks), --idle (seconds
// idle before berth stops it, 3600); after `--`, the command to run instead of the image's.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { BerthProblem, createBerthClient, ok } from '../clients/typescript/src/index.ts'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    image: { type: 'string', default: process.env.NOTEBOOK_IMAGE ?? 'quay.io/jupyter/base-notebook:latest' },
    port: { type: 'string', default: '8888' },
    'host-port': { type: 'string' },
    idle: { type: 'string', default: '3600' }
  }
})
const [user, ...command] = positionals
if (!user || !/^[a-z0-9][a-z0-9-]*$/.test(user)) {
  console.error('usage: node examples/notebook.ts USER [--image IMAGE] [--port PORT] [--host-port PORT] [--idle SECONDS] [-- COMMAND...]')
  process.exit(2)
}

const url = process.env.BERTH_URL ?? 'http://127.0.0.1:8080'
const berth = createBerthClient({ url, token: process.env.BERTH_TOKEN ?? '' })
const name = `nb-${user}`
// The notebook's own secret: Jupyter reads JUPYTER_TOKEN; anything else can read NOTEBOOK_TOKEN.
const token = randomBytes(24).toString('hex')

// Ends the event feed however this ends.
const watching = new AbortController()
try {
  // 1. The image, with its progress every 10 %.
  let shown = -10
  for await (const event of berth.pull({ image: values.image })) {
    if (event.type === 'progress' && event.fraction * 100 >= shown + 10) {
      shown = Math.floor(event.fraction * 10) * 10
      console.log(`pull: ${shown}% (${event.layers.done}/${event.layers.total} layers)`)
    } else if (event.type === 'pulled') console.log(`pulled: ${event.image.reference} ${event.image.digest ?? ''}`.trimEnd())
  }

  // 2. Watch the feed from before the run, so its stop cannot slip by; it reconnects by itself.
  const stopped = (async () => {
    for await (const { event } of berth.events({ signal: watching.signal })) {
      if (event.type === 'container' && event.name === name && (event.action === 'die' || event.action === 'stop')) return event
    }
  })()
  // Awaited at step 5; a failure before then is reported there, not as an unhandled rejection.
  stopped.catch(() => {})

  // 3. Run it: the token in its environment, its port on a host port, stopped by berth when idle.
  const container = await ok(berth.POST('/v1/containers', {
    body: {
      image: values.image,
      name,
      env: { JUPYTER_TOKEN: token, NOTEBOOK_TOKEN: token },
      ports: [{ container: Number(values.port), ...(values['host-port'] ? { host: Number(values['host-port']) } : {}) }],
      labels: { 'notebook.user': user },
      expiry: { idleTimeout: Number(values.idle), action: 'stop' },
      ...(command.length ? { command } : {})
    }
  }))
  const binding = container.ports.find(port => port.container === Number(values.port))
  const host = !binding?.hostIp || binding.hostIp === '0.0.0.0' || binding.hostIp === '::' ? new URL(url).hostname : binding.hostIp
  const address = `http://${host}:${binding?.host}/`
  console.log(`running: ${name} (${container.id.slice(0, 12)}) on ${address}`)

  // 4. Until it answers HTTP (any answer: a login page is an answer).
  const started = Date.now()
  let answer: Response | undefined
  while (!answer) {
    answer = await fetch(address, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
    if (!answer) {
      if (Date.now() - started > 120_000) throw new Error(`${address} did not answer within 120 s`)
      await sleep(250)
    }
  }
  console.log(`ready: ${address}?token=${token} (HTTP ${answer.status} after ${((Date.now() - started) / 1000).toFixed(1)} s)`)

  // 5. berth stops it after --idle seconds without use; its data stays for the next start.
  console.log(`waiting: berth stops it after ${values.idle} s idle`)
  const stop = await stopped
  const after = await ok(berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: name } } }))
  console.log(`stopped: ${name} is ${after.state}${stop?.exitCode === undefined ? '' : ` (exit code ${stop.exitCode})`}; start it again with berth start ${name}`)
} catch (error) {
  // berth's refusals are typed: name_conflict means this user has a notebook already.
  if (error instanceof BerthProblem && error.code === 'name_conflict') console.error(`${name} exists already: start it (berth start ${name}) or remove it (berth rm -f ${name})`)
  else console.error(error instanceof BerthProblem ? `berth refused: ${error.detail} (${error.status} ${error.code})` : error)
  process.exitCode = 1
} finally {
  watching.abort()
}
