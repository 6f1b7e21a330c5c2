// Named volumes on a real Kubernetes cluster (BERTH_TEST_KUBECONFIG; skipped without one): each is a
// PersistentVolumeClaim in the configured storage class, provisioned here by the test's own local
// provisioner (the cluster has none). Made by docker volume create or a run's `-v name:/path`, owned
// like containers (not found for another token or deployment), in use while a container mounts it,
// removed with the same rules, within the size cap and the token's storage quota — and nothing left
// behind by a refused or failed run.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { RUN, auth, runBody } from './helpers.ts'
import { KUBE_SKIP, admin, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'
import { localProvisioner } from './kubernetes-provisioner.ts'

if (kubeEnv === null) {
  t.test('kubernetes volumes', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const { core } = admin as NonNullable<typeof admin>
  const MiB = 1024 ** 2
  const job = (suffix: string, script: string, volumes: string[]) =>
    runBody({ image: cluster.image, name: `${RUN}-${suffix}`, command: ['sh', '-c', script], volumes, stopTimeout: 1 })

  t.test('a volume is a PersistentVolumeClaim: made, mounted by runs, its data kept, owned, in use, removed', async t => {
    const provisioner = await localProvisioner(t, 'vol')
    const namespace = await namespaceFor(t, 'vol')
    const app = await buildKube(t, { namespace, config: { engine: { volumes: { storageClass: provisioner.storageClass, defaultBytes: 32 * MiB } } } as never })
    const data = `${RUN}-data`

    const made = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: data, size: 64 * MiB, labels: { project: 'x' } } })
    t.equal(made.statusCode, 201, made.body)
    t.match(made.json(), { name: data, driver: provisioner.storageClass, labels: { project: 'x' }, capacity: 64 * MiB, size: null, usedBy: [] })
    const claim = await core.readNamespacedPersistentVolumeClaim({ namespace, name: data })
    t.match(claim.spec, { storageClassName: provisioner.storageClass, accessModes: ['ReadWriteOnce'], resources: { requests: { storage: String(64 * MiB) } } })
    t.equal(claim.spec?.volumeMode ?? 'Filesystem', 'Filesystem')
    const again = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: data } })
    t.equal(again.statusCode, 200, 'its own volume of that name is answered as it is')

    // Another token: not found, and the name is a conflict that says nothing of whose it is.
    t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${data}`, headers: auth('bob') })).statusCode, 404)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/volumes/${data}`, headers: auth('bob') })).statusCode, 404)
    t.same((await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth('bob') })).json(), [])
    const taken = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('bob'), payload: { name: data } })
    t.equal(taken.statusCode, 409)
    t.equal(taken.json().code, 'name_conflict')
    const bobRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: job('bobs', 'true', [`${data}:/data`]) })
    t.equal(bobRun.statusCode, 404, 'bob cannot mount alice\'s volume')
    t.equal(bobRun.json().code, 'not_found')

    const writer = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('writer', 'echo kept > /data/f && cat /data/f', [`${data}:/data`]) })
    t.equal(writer.statusCode, 201, writer.body)
    const wrote = await app.inject({ method: 'POST', url: `/v1/containers/${writer.json().id}/wait`, headers: auth('alice') })
    t.match(wrote.json(), { stopped: true, exitCode: 0 })
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${writer.json().id}/logs`, headers: auth('alice') })).body, 'kept\n')
    t.equal(await readFile(join(provisioner.directoryOf(namespace, data), 'f'), 'utf8'), 'kept\n', 'the data is on the node, in the provisioned volume')

    // A run's -v of a name that does not exist makes it, the token's own, with the default size.
    const scratch = `${RUN}-scratch`
    const reader = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('reader', 'cat /data/f; touch /scratch/x', [`${data}:/data:ro`, `${scratch}:/scratch`]) })
    t.equal(reader.statusCode, 201, reader.body)
    t.match((await app.inject({ method: 'POST', url: `/v1/containers/${reader.json().id}/wait`, headers: auth('alice') })).json(), { exitCode: 0 })
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${reader.json().id}/logs`, headers: auth('alice') })).body, 'kept\n', 'a second run reads what the first wrote')
    const listed = await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth('alice') })
    t.match(listed.json(), [
      { name: data, capacity: 64 * MiB, usedBy: [{ name: `${RUN}-reader`, state: 'exited' }, { name: `${RUN}-writer`, state: 'exited' }] },
      { name: scratch, capacity: 32 * MiB, usedBy: [{ name: `${RUN}-reader` }] }
    ])
    t.same((await app.inject({ method: 'GET', url: `/v1/volumes/${scratch}`, headers: auth('admin') })).json().usedBy.length, 1, 'the admin sees it too')

    // In use by containers in any state: removed with them only when asked to.
    const inUse = await app.inject({ method: 'DELETE', url: `/v1/volumes/${data}`, headers: auth('alice') })
    t.equal(inUse.statusCode, 409, inUse.body)
    t.match(inUse.json(), { code: 'volume_in_use', volume: data, containers: [{ name: `${RUN}-reader` }, { name: `${RUN}-writer` }] })
    const forced = await app.inject({ method: 'DELETE', url: `/v1/volumes/${data}?force=true`, headers: auth('alice') })
    t.equal(forced.statusCode, 204, forced.body)
    t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${data}`, headers: auth('alice') })).statusCode, 404)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/volumes/${scratch}`, headers: auth('alice') })).statusCode, 204, 'its last user went with the other volume')
    t.same(await leftoversIn(namespace), [], 'no claim, workload or pod left when rm answered')
  })

  t.test('size cap, storage quota, names, deployments; a refused or failed run leaves no volume', async t => {
    const provisioner = await localProvisioner(t, 'cap')
    const namespace = await namespaceFor(t, 'cap')
    const volumes = { storageClass: provisioner.storageClass, defaultBytes: 16 * MiB, maxBytes: 128 * MiB }
    const app = await buildKube(t, { namespace, config: { engine: { volumes }, policy: { quota: { storageBytes: 100 * MiB } } } as never })

    const big = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: `${RUN}-big`, size: 256 * MiB } })
    t.equal(big.statusCode, 403, big.body)
    t.match(big.json(), { code: 'policy_denied', detail: /at most 134217728 bytes/ })
    t.equal((await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: `${RUN}-one`, size: 64 * MiB } })).statusCode, 201)
    const over = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: `${RUN}-two`, size: 64 * MiB } })
    t.equal(over.statusCode, 403, over.body)
    t.match(over.json(), { code: 'quota_exceeded', limit: 'storage', quota: 100 * MiB, used: 64 * MiB })
    t.equal((await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('bob'), payload: { name: `${RUN}-bobs`, size: 64 * MiB } })).statusCode, 201, 'the quota is per token')
    const viaRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('fills', 'true', [`${RUN}-fill:/d`]) })
    t.equal(viaRun.statusCode, 201, 'a run\'s new volume of the default size still fits')
    const upper = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: 'Not_A_Claim' } })
    t.equal(upper.statusCode, 400)
    t.match(upper.json(), { code: 'validation_failed', detail: /DNS subdomain/ })

    // Another berth deployment on the same namespace does not see this one's volumes.
    const other = await buildKube(t, { namespace, config: { deployment: 'other', engine: { volumes } } as never })
    t.equal((await other.inject({ method: 'GET', url: `/v1/volumes/${RUN}-one`, headers: auth('admin') })).statusCode, 404)
    t.same((await other.inject({ method: 'GET', url: '/v1/volumes', headers: auth('admin') })).json(), [])

    // Refused before anything is made: a bind mount (never a host path) and a run past the quota.
    const bind = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: job('bind', 'true', ['/etc:/host']) })
    t.ok([400, 403, 501].includes(bind.statusCode), bind.body)
    const failing = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: runBody({ image: `${cluster.image.replace(/:[^:/]+$/, '')}-missing:1`, name: `${RUN}-nope`, volumes: [`${RUN}-orphan:/d`], pull: 'always' }) })
    t.ok(failing.statusCode >= 400, failing.body)
    t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${RUN}-orphan`, headers: auth('bob') })).statusCode, 404, 'the failed run\'s volume is gone')

    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${viaRun.json().id}?force=true`, headers: auth('alice') })).statusCode, 204)
    for (const [who, name] of [['alice', 'one'], ['alice', 'fill'], ['bob', 'bobs']] as const) {
      t.equal((await app.inject({ method: 'DELETE', url: `/v1/volumes/${RUN}-${name}`, headers: auth(who) })).statusCode, 204, `${name} removed`)
    }
    t.same(await leftoversIn(namespace), [])
  })
}
