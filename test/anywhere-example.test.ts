// examples/anywhere/anywhere.sh run as its users run it: the `berth` command against two berths
// listening for real — one on a machine's engine (the docker backend), one on the three-node Swarm —
// building the example's site once, running it on the machine, reproducing it on the cluster from its
// spec by digest, and back. The same digest all the way, and nothing left behind.
import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { RUN, freePort } from './helpers.ts'
import { nodeEngine, swarmBackend, swarmEnv, holdCluster, type SwarmEnv } from './backends.ts'
import { CLI, liveBerth } from './live-berth.ts'

const SCRIPT = new URL('../examples/anywhere/anywhere.sh', import.meta.url).pathname

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const workstation = cluster.nodeSockets.node1 as string
  const engine = nodeEngine('node1')
  // The run's token is named RUN; the default deployment's push namespace is default/RUN.
  const image = `${cluster.registry}/default/${RUN}/site`

  t.before(async () => { await holdCluster(t) })
  t.teardown(async () => {
    for (const info of await engine.listImages({ filters: { reference: [`${image}:*`] } })) await engine.getImage(info.Id).remove({ force: true }).catch(() => {})
  })

  t.test('examples/anywhere/anywhere.sh: built once, the same digest on the machine, on the Swarm, and back', async t => {
    const local = await liveBerth(t, { BERTH_DOCKER_SOCKET: workstation })
    const remote = await liveBerth(t, { BERTH_ENGINE: 'swarm', BERTH_DOCKER_SOCKET: cluster.socket })
    // `berth` on the PATH, as the client's README installs it.
    const bin = mkdtempSync(join(tmpdir(), 'berth-bin-'))
    t.teardown(() => { rmSync(bin, { recursive: true, force: true }) })
    writeFileSync(join(bin, 'berth'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
    chmodSync(join(bin, 'berth'), 0o755)

    const port = await freePort()
    const run = await new Promise<{ code: number | null, out: string }>((resolve, reject) => {
      const child = spawn('bash', [SCRIPT], {
        env: {
          PATH: `${bin}:${process.env.PATH ?? ''}`,
          LOCAL_URL: local.url,
          LOCAL_TOKEN: local.token,
          // Each berth has its own token of the same name: RUN, with write and build.
          CLUSTER_URL: remote.url,
          CLUSTER_TOKEN: remote.token,
          IMAGE: image,
          PORT: String(port),
          BASE: cluster.image
        },
        stdio: ['ignore', 'pipe', 'pipe']
      })
      let out = ''
      child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
      child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
      child.once('error', reject)
      child.once('close', code => { resolve({ code, out }) })
    })
    t.equal(run.code, 0, run.out)
    const pinned = /pinned by (sha256:[0-9a-f]{64})/.exec(run.out)?.[1]
    t.ok(pinned, 'the spec pins the image by its digest')
    // After `build -q` printed the image id: what the cluster, then the machine again, say they run.
    const reproduced = run.out.slice(run.out.indexOf('== the same environment on the cluster'))
    const digests = reproduced.split('\n').filter(line => /^sha256:[0-9a-f]{64}$/.test(line.trim())).map(line => line.trim())
    t.same(digests, [pinned, pinned], 'the cluster and then the machine again run that very digest')

    // The script removed what it ran, on both berths.
    for (const berth of [local, remote]) {
      const left = await fetch(`${berth.url}/v1/containers?all=true`, { headers: { authorization: `Bearer ${berth.token}` } })
      t.same(await left.json(), [], `nothing left on ${berth.url}`)
    }
  })
}
