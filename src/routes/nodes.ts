// /v1/nodes: the machines containers run on (docker node ls). On a cluster, its nodes; on the
// docker backend, the one host. Nodes hold every token's containers: any token that can read sees them.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'
import { Node } from '../schemas/nodes.ts'

const nodes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/nodes', {
    config: { scope: 'read', part: 'nodes' },
    schema: {
      tags: ['nodes'],
      summary: 'List nodes (docker node ls)',
      description: 'On a Swarm cluster: every node, with its address, role, state (`down` when the managers stopped hearing from it), availability, labels and resources. ' +
        'On Kubernetes: the cluster\'s nodes, when berth\'s ServiceAccount may list them (deploy/kubernetes/nodes-reader.yaml; 501 otherwise). ' +
        'On the docker backend: the one host, as a `standalone` node.',
      operationId: 'listNodes',
      response: { 200: Type.Array(ref(Node), { description: 'The nodes, by name.' }), ...problems(...ENGINE, 'not_supported') }
    }
  }, async () => await app.engine.part('nodes').list())
}

export default nodes
