// dockerode's SSH and gRPC transports are kept from loading (src/engine/unused-transports.ts):
// berth still reaches the engine, the modules are absent from memory, and using them fails plainly.
import { execFile } from 'node:child_process'
import t from 'tap'
import { env } from './helpers.ts'

const engineModule = new URL('../src/engine/docker/backend.ts', import.meta.url).href

// In a process of its own: the test runner itself may have loaded dockerode without the hooks.
const probe = `
import { createRequire } from 'node:module'
const { DockerHost } = await import(${JSON.stringify(engineModule)})
const require = createRequire(${JSON.stringify(engineModule)})
const host = new DockerHost({ socketPath: process.env.SOCKET, timeoutMs: 5000 })
const info = await host.core().info()
const loaded = Object.keys(require.cache)
const ssh = require.cache[Object.keys(require.cache).find(key => key.endsWith(':ssh2'))]?.exports
let refusal = null
try { new ssh.Client() } catch (error) { refusal = error.message }
console.log(JSON.stringify({
  apiVersion: info.apiVersion,
  realTransports: loaded.filter(key => /node_modules\\/(ssh2|@grpc|cpu-features)\\//.test(key)),
  stubs: loaded.filter(key => key.startsWith('berth-unused:')).sort(),
  refusal
}))
`

t.test('berth reaches the engine without loading ssh2 or gRPC, and says so if they are ever used', async t => {
  const output = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', probe], { env: { ...process.env, SOCKET: env.socket } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
  const result = JSON.parse(output) as { apiVersion: string, realTransports: string[], stubs: string[], refusal: string | null }
  t.match(result.apiVersion, /^1\.\d+$/, 'the engine answered through dockerode')
  t.same(result.realTransports, [], 'no file of ssh2, @grpc/* or cpu-features was loaded')
  t.same(result.stubs, ['berth-unused:@grpc/grpc-js', 'berth-unused:@grpc/proto-loader', 'berth-unused:ssh2'], 'dockerode got the refusing stand-ins')
  t.match(result.refusal, /berth does not include SSH connections to an engine/, 'using one fails with a plain reason')
})
