// A small local-volume provisioner for the test cluster, which has none: a storage class of this
// run's, and a watch of the claims asking for it that makes a `local` PersistentVolume on the node
// for each (a directory of this run's under the cluster's state), pre-bound to its claim; once the
// claim is gone its volume and directory go too. It is the test environment's, never berth's: berth
// only names a storage class (BERTH_KUBE_STORAGE_CLASS) and works with whichever provisions it.
import { chmod, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { CoreV1Api, StorageV1Api, Watch, type V1PersistentVolumeClaim } from '@kubernetes/client-node'
import type { Test } from 'tap'
import { RUN } from './helpers.ts'
import { adminConfig } from './kubernetes-env.ts'

/** Where the volumes' directories are: on the node, which shares this machine's filesystem. */
const ROOT = process.env.BERTH_TEST_KUBE_VOLUME_ROOT ?? '/tmp/k8s-cluster/berth-test-volumes'

export interface Provisioner {
  /** The storage class to name in BERTH_KUBE_STORAGE_CLASS. */
  storageClass: string
  /** The directory on the node holding a claim's data, once provisioned. */
  directoryOf: (namespace: string, claim: string) => string
}

/** Brings up the provisioner for the rest of the test; everything it made is removed at the end. */
export async function localProvisioner (t: Test, purpose: string): Promise<Provisioner> {
  const config = adminConfig()
  const core = config.makeApiClient(CoreV1Api)
  const storage = config.makeApiClient(StorageV1Api)
  const storageClass = `${RUN}-${purpose}-local`
  const directoryOf = (namespace: string, claim: string): string => join(ROOT, RUN, `${namespace}.${claim}`)
  const node = (await core.listNode()).items[0]?.metadata?.name
  if (node === undefined) throw new Error('the test cluster has no node')
  await storage.createStorageClass({ body: { metadata: { name: storageClass, labels: { 'berth.test.run': RUN } }, provisioner: 'berth.test/local', volumeBindingMode: 'Immediate', reclaimPolicy: 'Retain' } })
  const volumeName = (claim: V1PersistentVolumeClaim): string => `${storageClass}-${(claim.metadata?.uid ?? '').slice(0, 8)}`
  const work: Array<Promise<unknown>> = []

  const provision = async (claim: V1PersistentVolumeClaim): Promise<void> => {
    const namespace = claim.metadata?.namespace ?? ''
    const name = claim.metadata?.name ?? ''
    const path = directoryOf(namespace, name)
    // Any uid the pod runs as may write there (a local volume's directory is the node's, not a provisioner's).
    await mkdir(path, { recursive: true })
    await chmod(path, 0o777)
    await core.createPersistentVolume({
      body: {
        metadata: { name: volumeName(claim), labels: { 'berth.test.run': RUN, 'berth.test.class': storageClass } },
        spec: {
          capacity: { storage: claim.spec?.resources?.requests?.storage ?? '1Gi' },
          accessModes: claim.spec?.accessModes ?? ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: storageClass,
          local: { path },
          nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] }] } },
          claimRef: { namespace, name, uid: claim.metadata?.uid ?? '' }
        }
      }
    }).catch((error: unknown) => {
      if ((error as { code?: number }).code !== 409) throw error
    })
  }

  const release = async (claim: V1PersistentVolumeClaim): Promise<void> => {
    await core.deletePersistentVolume({ name: volumeName(claim) }).catch(() => {})
    await rm(directoryOf(claim.metadata?.namespace ?? '', claim.metadata?.name ?? ''), { recursive: true, force: true })
  }

  const watching = await new Watch(config).watch('/api/v1/persistentvolumeclaims', {}, (type: string, claim: V1PersistentVolumeClaim) => {
    if (claim.spec?.storageClassName !== storageClass) return
    if (type === 'ADDED' && (claim.spec.volumeName ?? '') === '') work.push(provision(claim).catch((error: unknown) => { t.fail(`provisioning ${claim.metadata?.name}: ${String(error)}`) }))
    if (type === 'DELETED') work.push(release(claim))
  }, () => {})

  t.teardown(async () => {
    watching.abort()
    await Promise.allSettled(work)
    const volumes = await core.listPersistentVolume({ labelSelector: `berth.test.class=${storageClass}` }).catch(() => ({ items: [] }))
    for (const volume of volumes.items) await core.deletePersistentVolume({ name: volume.metadata?.name ?? '' }).catch(() => {})
    await storage.deleteStorageClass({ name: storageClass }).catch(() => {})
    await rm(join(ROOT, RUN), { recursive: true, force: true })
  })
  return { storageClass, directoryOf }
}
