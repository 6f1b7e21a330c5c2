// The test cluster's apiserver stopped and started again, with berth driving it as its own
// ServiceAccount (deploy/kubernetes/rbac.yaml): right after the apiserver comes back its
// authorisation is still catching up and berth's copies are relisting. Whatever berth answers to
// `rm -f` then, a 2xx means it is done — no pod of the container is left at that moment. Needs the
// commands that stop and start only the apiserver (BERTH_TEST_KUBE_APISERVER_STOP / _START; the
// README's "Testing on Kubernetes"); skipped without them. Run it holding the cluster (flock
// /work/coord/k8s.lock): every other suite on the cluster fails while its apiserver is down.
import { exec } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { RUN, auth, runBody, waitFor } from './helpers.ts'
import { KUBE_SKIP, berthIdentity, buildKube, kubeEnv, leftoversIn, type KubeEnv } from './kubernetes-env.ts'

const shell = promisify(exec)
const stopCommand = process.env.BERTH_TEST_KUBE_APISERVER_STOP ?? ''
const startCommand = process.env.BERTH_TEST_KUBE_APISERVER_START ?? ''

if (kubeEnv === null || stopCommand === '' || startCommand === '') {
  t.test('kubernetes apiserver outage', { skip: kubeEnv === null ? KUBE_SKIP : 'BERTH_TEST_KUBE_APISERVER_STOP and _START are not set' }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv

  t.test('rm -f right after an apiserver outage answers 2xx only when nothing of the container is left', async t => {
    const { tenants, token } = await berthIdentity(t, 'outage')
    const app = await buildKube(t, { namespace: tenants, token, config: { engine: { timeoutMs: 3000 } } })
    t.teardown(async () => { await shell(startCommand).catch(() => {}) })
    for (let round = 1; round <= 3; round++) {
      const kind = round % 2 === 0 ? 'always' : 'no'
      const run = await app.inject({
        method: 'POST',
        url: '/v1/containers',
        headers: auth('alice'),
        payload: runBody({ image: cluster.image, name: `${RUN}-outage-${round}`, command: cluster.httpd, stopTimeout: 1, restart: { policy: kind } })
      })
      t.equal(run.statusCode, 201, run.body)
      const { id } = run.json()
      const started = performance.now()
      await shell(stopCommand)
      await shell(startCommand)
      t.comment(`round ${round}: apiserver stopped and started again in ${(performance.now() - started).toFixed(0)} ms`)
      // At once, and again until berth says it is done: every answer is checked the moment it comes.
      const answers: number[] = []
      const done = await waitFor(`rm -f of ${id} to be done`, async () => {
        const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })
        answers.push(rm.statusCode)
        const left = await leftoversIn(tenants)
        if (rm.statusCode < 300) t.same(left, [], `round ${round} (restart ${kind}): rm -f answered ${rm.statusCode} with nothing left`)
        return rm.statusCode
      }, status => status === 204 || status === 404, 120_000)
      t.comment(`round ${round}: rm -f answered ${answers.join(', ')}`)
      t.ok(done === 204 || done === 404, `round ${round}: removed`)
    }
    t.same(await leftoversIn(tenants), [])
  })
}
