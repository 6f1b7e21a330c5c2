// docker exec on Kubernetes: the command runs in the container's running pod through the apiserver's
// exec subresource (exec-channel.ts), streamed as it comes, its exit code last; the WebSocket
// terminal is the same with stdin and a TTY. The exec subresource takes a command and nothing else:
// it runs as the container's user, in its working directory, with its environment.
import { Writable } from 'node:stream'
import { BerthError } from '../../errors.ts'
import { linesOf } from '../docker/streams.ts'
import { notSupported, type ExecPart } from '../parts.ts'
import type { ExecSession, ExecSpec, OutputChunk } from '../types.ts'
import { openExec, type ExecChannel } from './exec-channel.ts'
import { failedExitCode } from './pod-readings.ts'
import { CONTAINER_NAME } from './mapping.ts'
import { isRunning } from './reading.ts'
import { K8S, type KubeShared } from './shared.ts'

/** The pod a command of the container runs in: its newest running replica. */
export async function runningPod (shared: KubeShared, containerId: string): Promise<string> {
  await shared.ready()
  const pod = shared.podsOf(containerId).find(isRunning)
  if (pod === undefined) throw new BerthError('container_not_running', `container ${containerId} is not running: start it first`)
  return pod.metadata?.name ?? ''
}

export function kubeExec (shared: KubeShared): ExecPart {
  return {
    async exec (containerId: string, spec: ExecSpec, options: { signal: AbortSignal }): Promise<ExecSession> {
      const refused = spec.user !== undefined
        ? 'user: a command run through the Kubernetes exec subresource runs as the container\'s user'
        : Object.keys(spec.env).length > 0
          ? 'env: the Kubernetes exec subresource takes only a command; set variables in it (sh -c \'VAR=x command\')'
          : spec.workingDir !== undefined ? 'workingDir: the Kubernetes exec subresource takes only a command; change directory in it (sh -c \'cd /dir && command\')' : null
      if (refused !== null) throw notSupported(K8S, `exec on Kubernetes cannot be given ${refused}`)
      const pod = await runningPod(shared, containerId)
      // The kubelet (containerd 1.6, measured) sends a terminal's output only when stdin is attached
      // too; a terminal nobody types into is what docker's is: input that never comes.
      const channel = await openExec(shared.client, { pod, container: CONTAINER_NAME, command: spec.command, stdin: spec.stdin || spec.tty, tty: spec.tty, signal: options.signal })
      const output = withFailure(channel)
      return {
        id: channel.id,
        output,
        lines: () => linesOf(output, spec.tty),
        stdin: spec.stdin ? stdinOf(channel, spec.tty) : null,
        async resize (size) { channel.resize(size) },
        async exitCode () {
          try {
            const outcome = await channel.outcome
            return outcome.kind === 'exited' ? outcome.exitCode : failedExitCode(outcome.message)
          } catch (error) {
            if (options.signal.aborted) return null
            throw error
          }
        }
      }
    }
  }
}

/** The output, then — when the command never ran — the runtime's reason on stderr, as docker exec shows it. */
async function * withFailure (channel: ExecChannel): AsyncGenerator<OutputChunk> {
  yield * channel.output
  const outcome = await channel.outcome.catch(() => null)
  if (outcome?.kind === 'failed') yield { stream: 'stderr', data: Buffer.from(`${outcome.message}\n`) }
}

/**
 * stdin as a stream: what is written goes to the command. Its end closes stdin alone where the
 * protocol can; on a Kubernetes 1.25 apiserver (v4) only a terminal can be told, with Ctrl-D.
 */
function stdinOf (channel: ExecChannel, tty: boolean): Writable {
  return new Writable({
    write (chunk: Buffer, _encoding, callback) {
      channel.write(chunk).then(() => callback(), callback)
    },
    final (callback) {
      if (channel.closeStdin() || !tty) {
        callback()
        return
      }
      channel.write(Buffer.from([4])).then(() => callback(), callback)
    }
  })
}
