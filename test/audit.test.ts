// Issue 10, item 9: every mutation's audit line names what it acted on — the container's id and
// name, the image and its digest, the volumes, the job — and a mutation that failed still names
// what was asked for.
import t from 'tap'
import { LogCapture, RUN, auth, build, cleanupAfter, env, freePort, name, pushImage, runBody } from './helpers.ts'

cleanupAfter(t)

function auditsOf (logs: LogCapture, requestId: string): unknown[] {
  return logs.lines.filter(line => line.msg === 'audit' && line.requestId === requestId).map(line => line.audit)
}

t.test('containers: run names id, name, image, digest and volumes; start, stop, restart and rm name the container', async t => {
  const { reference, digest } = await pushImage('audit-run')
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const run = await app.inject({
    method: 'POST',
    url: '/v1/containers',
    headers: { ...auth('alice'), 'x-request-id': 'audit-run' },
    payload: runBody({ image: reference, name: name('audit'), volumes: [{ source: name('audit-data'), target: '/data' }] })
  })
  t.equal(run.statusCode, 201, run.body)
  const { id, imageId } = run.json()
  t.equal(run.json().imageDigest, digest, 'the run is of the pushed digest')
  t.same(auditsOf(logs, 'audit-run'), [{
    actor: 'alice',
    action: 'POST /v1/containers',
    target: { container: { id, name: name('audit') }, image: reference, imageId, digest, volumes: [name('audit-data')] },
    status: 201
  }])

  for (const [method, path, status] of [['POST', '/stop?timeout=0', 200], ['POST', '/start', 200], ['POST', '/restart?timeout=0', 200], ['DELETE', '?force=true', 204]] as const) {
    const requestId = `audit-${method}-${path.replace(/\W/g, '')}`
    const response = await app.inject({ method, url: `/v1/containers/${id.slice(0, 12)}${path}`, headers: { ...auth('alice'), 'x-request-id': requestId } })
    t.equal(response.statusCode, status, `${method} ${path}`)
    t.match(auditsOf(logs, requestId), [{ actor: 'alice', status, target: { container: { requested: id.slice(0, 12), id, name: name('audit') } } }], `${method} ${path}`)
  }
})

t.test('a mutation that fails still names the requested target', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs, config: { policy: { images: ['docker.io/berth-test/*'] } } })
  const call = async (requestId: string, method: 'POST' | 'DELETE', url: string, payload?: object, who: 'alice' | null = 'alice') => {
    const response = await app.inject({ method, url, headers: { ...(who === null ? {} : auth(who)), 'x-request-id': requestId }, ...(payload === undefined ? {} : { payload }) })
    return { status: response.statusCode, audits: auditsOf(logs, requestId) }
  }
  const denied = await call('fail-policy', 'POST', '/v1/containers', runBody({ image: `${env.registry}/${RUN}-nope/web:1`, name: name('denied') }))
  t.equal(denied.status, 403)
  t.same(denied.audits, [{ actor: 'alice', action: 'POST /v1/containers', target: { container: { name: name('denied') }, image: `${env.registry}/${RUN}-nope/web:1` }, status: 403 }])

  const port = await freePort()
  t.equal((await call('fail-first', 'POST', '/v1/containers', runBody({ name: name('holder'), ports: [{ container: 80, host: port }] }))).status, 201)
  const conflict = await call('fail-port', 'POST', '/v1/containers', runBody({ name: name('clash'), ports: [{ container: 80, host: port }] }))
  t.equal(conflict.status, 409)
  t.same(conflict.audits, [{ actor: 'alice', action: 'POST /v1/containers', target: { container: { name: name('clash') }, image: env.image }, status: 409 }], 'a port conflict names the container it did not make')

  const missing = await call('fail-stop', 'POST', `/v1/containers/${name('never')}/stop`)
  t.same(missing.audits, [{ actor: 'alice', action: 'POST /v1/containers/:idOrName/stop', target: { container: { requested: name('never') } }, status: 404 }])
  const anonymous = await call('fail-rm', 'DELETE', `/v1/containers/${name('never')}?force=true`, undefined, null)
  t.same(anonymous.audits, [{ actor: null, action: 'DELETE /v1/containers/:idOrName', target: { container: { requested: name('never') } }, status: 401 }], 'refused before the handler ran: the path still names it')
  const rmi = await call('fail-rmi', 'DELETE', `/v1/images/${encodeURIComponent(`${env.registry}/${RUN}-gone/web:1`)}`)
  t.same(rmi.audits, [{ actor: 'alice', action: 'DELETE /v1/images/:ref', target: { image: `${env.registry}/${RUN}-gone/web:1` }, status: 403 }], 'alice may not remove images: the image is named all the same')
  const job = await call('fail-job', 'DELETE', '/v1/jobs/00000000-0000-4000-8000-000000000000')
  t.same(job.audits, [{ actor: 'alice', action: 'DELETE /v1/jobs/:id', target: { job: '00000000-0000-4000-8000-000000000000' }, status: 404 }])
})

t.test('images and jobs: pull names the image and digest, an async pull its job, rmi what it removed, cancel the job', async t => {
  const { reference, digest } = await pushImage('audit-pull')
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const pull = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('alice'), 'x-request-id': 'audit-pull' }, payload: { image: reference } })
  t.equal(pull.statusCode, 200, pull.body)
  t.same(auditsOf(logs, 'audit-pull'), [{ actor: 'alice', action: 'POST /v1/images/pull', target: { image: reference, imageId: pull.json().id, digest }, status: 200 }])

  const streamed = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('alice'), accept: 'application/x-ndjson', 'x-request-id': 'audit-pull-stream' }, payload: { image: reference } })
  t.equal(streamed.statusCode, 200)
  t.match(streamed.body.trim().split('\n').at(-1), /"type":"pulled"/, 'the stream ended with the pulled image')
  t.same(auditsOf(logs, 'audit-pull-stream'), [{ actor: 'alice', action: 'POST /v1/images/pull', target: { image: reference, imageId: pull.json().id, digest }, status: 200 }],
    'a streamed pull is audited with what the stream delivered')

  const failed = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('alice'), 'x-request-id': 'audit-pull-failed' }, payload: { image: `${env.registry}/${RUN}-absent/web:1` } })
  t.equal(failed.statusCode, 404, failed.body)
  t.same(auditsOf(logs, 'audit-pull-failed'), [{ actor: 'alice', action: 'POST /v1/images/pull', target: { image: `${env.registry}/${RUN}-absent/web:1` }, status: 404 }])

  const started = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: { ...auth('alice'), 'x-request-id': 'audit-job' }, payload: { image: reference } })
  t.equal(started.statusCode, 202)
  const jobId = started.json().id
  t.same(auditsOf(logs, 'audit-job'), [{ actor: 'alice', action: 'POST /v1/images/pull', target: { image: reference, job: jobId }, status: 202 }])
  const cancel = await app.inject({ method: 'DELETE', url: `/v1/jobs/${jobId}`, headers: { ...auth('alice'), 'x-request-id': 'audit-cancel' } })
  t.equal(cancel.statusCode, 200)
  t.same(auditsOf(logs, 'audit-cancel'), [{ actor: 'alice', action: 'DELETE /v1/jobs/:id', target: { job: jobId, image: reference }, status: 200 }])

  const rmi = await app.inject({ method: 'DELETE', url: `/v1/images/${encodeURIComponent(reference)}`, headers: { ...auth('admin'), 'x-request-id': 'audit-rmi' } })
  t.equal(rmi.statusCode, 200, rmi.body)
  t.same(auditsOf(logs, 'audit-rmi'), [{ actor: 'admin', action: 'DELETE /v1/images/:ref', target: { image: reference, untagged: rmi.json().untagged, deleted: rmi.json().deleted }, status: 200 }])
  t.ok((rmi.json().untagged as string[]).includes(`${reference.replace(/:1$/, '')}@${digest}`), 'what rmi untagged includes the digest')
})
