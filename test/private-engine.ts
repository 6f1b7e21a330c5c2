// A second, private dockerd for tests that stop, freeze or restart the engine: the shared test
// engine must keep running for every other suite. It has its own socket, data, exec root, pid file
// and bridge interface, and leaves iptables alone, so it cannot disturb the shared engine.
// (Not --bridge=none: a dockerd started so deletes the host's docker0, the shared engine's bridge.)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Docker from 'dockerode'
import { waitFor } from './helpers.ts'

export interface PrivateEngineOptions {
  /** Also listen on 127.0.0.1:port over TCP: with TLS (a CA, server and client certificates made in certs/), or plain. */
  tcp?: { port: number, tls: boolean }
}

export class PrivateEngine {
  readonly dir = mkdtempSync(join(tmpdir(), 'berth-engine-'))
  readonly socketPath = join(this.dir, 'docker.sock')
  /** docker's ca.pem, cert.pem and key.pem for a client, when it listens with TLS. */
  readonly certs = join(this.dir, 'certs')
  readonly bridge = `bt${randomBytes(4).toString('hex')}`
  readonly #options: PrivateEngineOptions
  #process: ChildProcess | null = null
  #bridgeMade = false
  log = ''

  constructor (options: PrivateEngineOptions = {}) {
    this.#options = options
    if (options.tcp?.tls === true) makeCertificates(this.certs)
  }

  async start (): Promise<void> {
    if (!this.#bridgeMade) {
      execFileSync('ip', ['link', 'add', 'name', this.bridge, 'type', 'bridge'])
      this.#bridgeMade = true
    }
    const child = spawn('dockerd', [
      '--host', `unix://${this.socketPath}`,
      '--data-root', join(this.dir, 'data'),
      '--exec-root', join(this.dir, 'exec'),
      '--pidfile', join(this.dir, 'docker.pid'),
      `--bridge=${this.bridge}`, '--iptables=false', '--ip-masq=false', '--ip-forward=false',
      ...this.#tcpArguments()
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', chunk => { this.log += chunk })
    child.stderr?.on('data', chunk => { this.log += chunk })
    this.#process = child
    const client = new Docker({ socketPath: this.socketPath })
    const state = await waitFor('the private dockerd to answer', async () => child.exitCode !== null ? 'exited' : await client.ping().then(() => 'up', () => 'starting'), state => state !== 'starting', 60_000)
      .catch((error: Error) => { throw new Error(`${error.message}:\n${this.log.slice(-2000)}`) })
    if (state === 'exited') throw new Error(`private dockerd exited with ${child.exitCode}:\n${this.log.slice(-2000)}`)
  }

  #tcpArguments (): string[] {
    const tcp = this.#options.tcp
    if (tcp === undefined) return []
    const listen = ['--host', `tcp://127.0.0.1:${tcp.port}`]
    if (!tcp.tls) return listen
    return [...listen, '--tlsverify', '--tlscacert', join(this.certs, 'ca.pem'), '--tlscert', join(this.certs, 'server-cert.pem'), '--tlskey', join(this.certs, 'server-key.pem')]
  }

  /** Stops the engine the way an operator would (SIGTERM) and waits until it is gone. */
  async stop (): Promise<void> {
    const child = this.#process
    if (child === null || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    await exited
    clearTimeout(timer)
    this.#process = null
  }

  /**
   * Freezes the engine: it keeps its socket open but answers nothing, like a hung daemon. Resolves
   * once the kernel reports it stopped: a dockerd in uninterruptible sleep (writing a layer just
   * pulled) stops only when that call returns, and a request sent before then is answered.
   */
  async freeze (): Promise<void> {
    const child = this.#process
    if (child?.pid === undefined) throw new Error('the private engine is not running')
    child.kill('SIGSTOP')
    await waitFor('the private engine to stop after SIGSTOP', () => readFileSync(`/proc/${child.pid}/stat`, 'utf8'), stat => /^\d+ \(.*\) T /.test(stat), 30_000)
  }

  thaw (): void {
    this.#process?.kill('SIGCONT')
  }

  async dispose (): Promise<void> {
    await this.stop()
    if (this.#bridgeMade) execFileSync('ip', ['link', 'delete', this.bridge])
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/**
 * A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, as `docker
 * --tlsverify` and dockerd want them (ca.pem, cert.pem, key.pem for the client), made with openssl.
 */
export function makeCertificates (dir: string): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  execFileSync('mkdir', ['-p', dir])
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=berth test CA', '-keyout', 'ca-key.pem', '-out', 'ca.pem')
  const sign = (name: string, subject: string, extensions: string) => {
    run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`)
    writeFileSync(join(dir, `${name}.ext`), extensions)
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}-cert.pem`)
  }
  sign('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  sign('client', '/CN=berth', 'extendedKeyUsage=clientAuth\n')
  // docker's names for the client's files
  execFileSync('cp', [join(dir, 'client-cert.pem'), join(dir, 'cert.pem')])
  execFileSync('cp', [join(dir, 'client-key.pem'), join(dir, 'key.pem')])
}
