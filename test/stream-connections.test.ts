// Every stream releases its engine connection when its client goes away: counted for real, as the
// sockets this process holds to the engine's socket (ss), before, during and after many hang-ups.
import t from 'tap'
import { auth, build, cleanupAfter, env, name, runContainer, waitFor } from './helpers.ts'
import { engineConnections } from './engine-spies.ts'
import { RegistryProxy, pushLayeredImage } from './pull-fixtures.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

t.test('many streams hung up mid-way leave no engine connection behind', async t => {
  // Without the copy, whose event stream and pings hold connections of their own: counted here are the streams'.
  const app = await build(t, { copy: false })
  const base = await listen(app)
  // One line, then silence: a followed log with nothing to say must still let go when its client does.
  const run = await runContainer(app, 'admin', { name: name('quiet'), command: ['sh', '-c', 'echo ready; sleep 600'] })
  t.equal(run.statusCode, 201, run.body)
  const quiet = run.json().id as string

  // Connections that ended normally may idle in the HTTP agent's pool for its timeout (5 s) first.
  const baseline = await waitFor('the run\'s engine connections to close', engineConnections, count => count === 0)
  t.comment(`engine connections before: ${baseline}`)

  const LOGS = 8
  const EVENTS = 8
  const SHARED_PULL_CLIENTS = 4
  const ROUNDS = 3
  let hungUp = 0
  for (let round = 1; round <= ROUNDS; round++) {
    const image = await pushLayeredImage(`conn${round}`, [4_000_000])
    const proxy = new RegistryProxy(500_000)
    t.teardown(() => proxy.close())
    const reference = image.reference.replace(env.registry, await proxy.listen())

    const clients: StreamClient[] = []
    for (let i = 0; i < LOGS; i++) {
      const client = await StreamClient.open(`${base}/v1/containers/${quiet}/logs?follow=true`, { headers: { ...auth(), accept: 'application/x-ndjson' } })
      t.equal(client.status, 200)
      t.same(await client.json(), { stream: 'stdout', line: 'ready' }, 'the log stream runs')
      clients.push(client)
    }
    for (let i = 0; i < EVENTS; i++) {
      const client = await StreamClient.open(`${base}/v1/events`, { headers: auth() })
      t.equal(client.status, 200)
      t.same(await client.sse(), { comments: [], retry: 2000 }, 'the event stream runs')
      clients.push(client)
    }
    for (let i = 0; i < SHARED_PULL_CLIENTS; i++) {
      const client = await StreamClient.open(`${base}/v1/images/pull`, {
        method: 'POST', headers: { ...auth(), 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify({ image: reference })
      })
      t.equal(client.status, 200)
      t.match(await client.json(), { type: 'started' }, 'the pull runs')
      clients.push(client)
    }

    // Every stream holds its own engine connection, except the pulls, which share one.
    const during = engineConnections()
    t.ok(during >= baseline + LOGS + EVENTS + 1, `round ${round}: ${during} engine connections while ${clients.length} streams run`)
    t.equal(app.streams.open, clients.length)

    for (const client of clients) client.close()
    hungUp += clients.length
    const after = await waitFor(`round ${round}: the engine connections to go back to ${baseline}`, engineConnections, count => count <= baseline)
    t.equal(after, baseline, `round ${round}: ${after} engine connections after all ${clients.length} clients hung up`)
    t.equal(app.streams.open, 0, 'berth tracks no stream any more')
    // The engine closes its registry connections a moment after it cancels the pull (seen once at
    // 2 open right after berth's side had settled). 2 s is far shorter than the 8 s the throttled
    // 4 MB layer would still need, so a pull that went on would still be caught here.
    t.equal(await waitFor('the engine to close its registry connections', () => proxy.open, open => open === 0), 0, 'the abandoned pull stopped at the engine too')
  }
  t.comment(`${hungUp} streams hung up; engine connections ${baseline} before, ${engineConnections()} after`)
})
