// The copy under churn, for as long as asked (BERTH_TEST_SOAK_SECONDS, 30 by default; minutes with
// `BERTH_TEST_SOAK_SECONDS=600 npx tap --timeout=1200 test/copy-soak.test.ts`). Workers change
// containers, volumes and image tags behind berth's back (straight on the engine) and through berth,
// while berth's connections to the engine are cut now and then. Every few seconds the workers pause,
// the copy catches up (test/copy-compare.ts) and every read is compared with the engine's own answer.
// Each of berth's own writes is read back at once, whatever else is going on.
import Docker from 'dockerode'
import t from 'tap'
import { caughtUp, compareWithEngine, openDocker } from './copy-compare.ts'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, env, name, runContainer, waitFor } from './helpers.ts'
import { SocketProxy } from './socket-proxy.ts'

cleanupAfter(t)

const SECONDS = Number(process.env.BERTH_TEST_SOAK_SECONDS ?? 30)
const CHECK_EVERY_MS = 5000
const WORKERS = 3
/** Containers each worker keeps at most. */
const POOL = 5

const engine = new Docker({ socketPath: env.socket })
const LABELS = { [RUN_LABEL]: RUN, 'berth.test.copy': 'soak', 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'admin' }

t.test(`${SECONDS} s of churn, a comparison with the engine every ${CHECK_EVERY_MS / 1000} s`, async t => {
  const proxy = new SocketProxy(env.socket)
  await proxy.start()
  t.teardown(() => proxy.close())
  t.teardown(async () => {
    for (let w = 0; w < WORKERS; w++) await engine.getImage(`${RUN}-soak/img${w}:1`).remove().catch(() => {})
  })
  const { copy, backend } = await openDocker(t, proxy.socketPath)
  const truth = (await openDocker(t, env.socket, { copy: false })).backend
  const app = await build(t, { engine: backend, config: { limits: { rateLimitPerMinute: 1_000_000 } } })
  await copy.ready(60_000)
  const scope = { labels: ['berth.test.copy=soak', `${RUN_LABEL}=${RUN}`], images: (image: string) => image.includes(`${RUN}-soak`), app }

  let pausing: Promise<void> | null = null
  let resume: () => void = () => {}
  const run = { stopping: false }
  const busy = new Set<number>()
  const counts: Record<string, number> = {}
  let ownReads = 0
  const random = (n: number): number => Math.floor(Math.random() * n)

  /** One worker's containers: the names it made and has not removed. */
  const worker = async (w: number): Promise<void> => {
    const mine: string[] = []
    let made = 0
    while (!run.stopping) {
      if (pausing !== null) {
        busy.delete(w)
        await pausing
        continue
      }
      busy.add(w)
      const target = mine[random(mine.length)]
      const choices = target === undefined ? ['create', 'run'] : mine.length >= POOL ? ['rm', 'berth-rm'] : OPERATIONS
      const operation = choices[random(choices.length)] as string
      counts[operation] = (counts[operation] ?? 0) + 1
      try {
        await act(operation, w, target, mine, () => name(`soak-${w}-${made++}`))
      } catch (error) {
        // Racing its own earlier operation (already stopped, not paused…) is churn, not a failure.
        if ((error as { statusCode?: number }).statusCode === 304) continue
        if (!/(is not running|is not paused|already|No such|not found|conflict|cannot|is paused|in progress|is restarting)/i.test(String((error as Error).message))) throw error
      }
    }
    busy.delete(w)
  }

  const OPERATIONS = ['create', 'run', 'start', 'stop', 'kill', 'restart', 'pause', 'unpause', 'rename', 'rm', 'volume', 'tag',
    'berth-run', 'berth-stop', 'berth-start', 'berth-rm']

  const act = async (operation: string, w: number, target: string | undefined, mine: string[], fresh: () => string): Promise<void> => {
    const container = target === undefined ? null : engine.getContainer(target)
    switch (operation) {
      case 'create':
      case 'run': {
        const id = fresh()
        const made = await engine.createContainer({ name: id, Image: env.image, Cmd: ['sleep', '300'], Labels: LABELS, StopTimeout: 1, HostConfig: { Mounts: [{ Type: 'volume', Source: `${RUN}-soak-vol-${w}`, Target: '/data' }] } } as Docker.ContainerCreateOptions)
        mine.push(id)
        if (operation === 'run') await made.start()
        return
      }
      case 'start': await container?.start(); return
      case 'stop': await container?.stop({ t: 0 }); return
      case 'kill': await container?.kill(); return
      case 'restart': await container?.restart({ t: 0 }); return
      case 'pause': await container?.pause(); return
      case 'unpause': await container?.unpause(); return
      case 'rename': {
        const to = fresh()
        await container?.rename({ name: to })
        mine.splice(mine.indexOf(target as string), 1, to)
        return
      }
      case 'rm':
        await container?.remove({ force: true })
        mine.splice(mine.indexOf(target as string), 1)
        return
      case 'volume': {
        const volume = `${RUN}-soak-spare-${w}`
        await engine.createVolume({ Name: volume, Labels: LABELS })
        await engine.getVolume(volume).remove()
        return
      }
      case 'tag': {
        const repo = `${RUN}-soak/img${w}`
        await engine.getImage(env.image).tag({ repo, tag: '1' })
        if (random(2) === 0) await engine.getImage(`${repo}:1`).remove()
        return
      }
      case 'berth-run': {
        const id = fresh()
        const response = await runContainer(app, 'admin', { name: id, labels: { 'berth.test.copy': 'soak' }, stopTimeout: 1 })
        if (response.statusCode !== 201) throw new Error(`berth run answered ${response.statusCode}: ${response.body}`)
        mine.push(id)
        await readsBack(id)
        return
      }
      case 'berth-stop':
      case 'berth-start': {
        const action = operation.slice(6)
        const response = await app.inject({ method: 'POST', url: `/v1/containers/${target}/${action}${action === 'stop' ? '?timeout=0' : ''}`, headers: auth() })
        if (response.statusCode !== 200) throw new Error(`berth ${action} answered ${response.statusCode}: ${response.body}`)
        await readsBack(target as string)
        return
      }
      case 'berth-rm': {
        const response = await app.inject({ method: 'DELETE', url: `/v1/containers/${target}?force=true`, headers: auth() })
        if (response.statusCode !== 204) throw new Error(`berth rm answered ${response.statusCode}: ${response.body}`)
        mine.splice(mine.indexOf(target as string), 1)
        const gone = await app.inject({ method: 'GET', url: `/v1/containers/${target}`, headers: auth() })
        t.equal(gone.statusCode, 404, `removed through berth, ${target} is gone at once`)
        ownReads++
      }
    }
  }

  /**
   * A container berth just changed reads back as the engine has it now (its worker alone touches it,
   * so the engine's answer holds still): a stop of a container never started leaves it created.
   */
  const readsBack = async (id: string): Promise<void> => {
    const state = (await engine.getContainer(id).inspect()).State.Status
    const [inspected, listed] = await Promise.all([
      app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth() }),
      app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${id}`, headers: auth() })
    ])
    t.equal(inspected.json().state, state, `${id} reads back ${state} at once`)
    t.same((listed.json() as Array<{ state: string }>).map(container => container.state), [state], `${id} is listed ${state} at once`)
    ownReads++
  }

  // A worker that fails stops the churn; the failure is reported once everything has stopped.
  const failures: unknown[] = []
  const workers = Array.from({ length: WORKERS }, async (_, w) => {
    try {
      await worker(w)
    } catch (error) {
      failures.push(error)
      run.stopping = true
      busy.delete(w)
    }
  })
  // A removal whose request was cut goes on in the engine, which lists the container nameless and
  // "removing" until it is gone (and its destroy event out): the comparison waits for the engine to be done.
  const quiet = async (): Promise<void> => {
    await waitFor('the engine to finish the removals under way', async () => (await engine.listContainers({ all: true, filters: { label: scope.labels } })).filter(container => container.State === 'removing').length, removing => removing === 0, 60_000)
  }
  const deadline = Date.now() + SECONDS * 1000
  let checks = 0
  let cutsAsked = 0
  try {
    while (Date.now() < deadline && !run.stopping) {
      await new Promise(resolve => setTimeout(resolve, CHECK_EVERY_MS / 2))
      // Now and then berth's connections are cut in the middle of the churn: the copy lists again.
      if (random(3) === 0) {
        proxy.cut()
        cutsAsked++
      }
      await new Promise(resolve => setTimeout(resolve, CHECK_EVERY_MS / 2))
      pausing = new Promise(resolve => { resume = resolve })
      await waitFor('the workers to pause', () => busy.size, size => size === 0, 120_000)
      await quiet()
      await caughtUp(copy, engine)
      await compareWithEngine(t, backend, truth, scope, `check ${++checks}`)
      const release = resume
      pausing = null
      release()
    }
  } finally {
    run.stopping = true
    const release = resume
    pausing = null
    release()
    await Promise.all(workers)
  }
  t.same(failures.map(error => String((error as Error).message)), [], 'no operation failed but for racing its own worker')
  await quiet()
  await caughtUp(copy, engine)
  await compareWithEngine(t, backend, truth, scope, 'at the end')
  t.comment(`${checks} comparisons; operations: ${JSON.stringify(counts)}; ${ownReads} of berth's own writes read back at once; ${cutsAsked} cuts (${proxy.cuts} connections), ${copy.generation} lists`)
  t.ok(checks > 0, 'compared at least once')
})
