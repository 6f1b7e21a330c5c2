// dockerode loads, the moment it is imported, two transports berth never uses: ssh2 (engines over
// SSH; it also instantiates a WebAssembly module) and gRPC with its proto loader (BuildKit sessions
// for image builds). berth speaks to the engine over its unix socket only and builds nothing. In
// their place dockerode gets modules that load for nothing and refuse when used. Measured with
// bench/: 5 MB less resident memory, on a budget of 100. Imported before dockerode (see
// transport.ts). Needs module.registerHooks (Node 22.15); without it they load as before.
import module from 'node:module'

const UNUSED: Record<string, string> = {
  ssh2: 'SSH connections to an engine',
  '@grpc/grpc-js': 'BuildKit sessions (image builds)',
  '@grpc/proto-loader': 'BuildKit sessions (image builds)'
}
const SCHEME = 'berth-unused:'

/** A module whose every export is a function that throws, so that code merely naming it still loads. */
function refusingModule (what: string): string {
  const message = JSON.stringify(`berth does not include ${what}: it talks to the engine over its unix socket only`)
  return `module.exports = new Proxy({}, { get: (_, key) => key === '__esModule' ? false : function unavailable () { throw new Error(${message}) } })`
}

const registerHooks = (module as { registerHooks?: typeof module.registerHooks }).registerHooks
if (registerHooks !== undefined) {
  registerHooks({
    resolve (specifier, context, next) {
      const parent = context.parentURL ?? ''
      if (Object.hasOwn(UNUSED, specifier) && /\/node_modules\/(dockerode|docker-modem)\//.test(parent)) {
        return { url: `${SCHEME}${specifier}`, format: 'commonjs', shortCircuit: true }
      }
      return next(specifier, context)
    },
    load (url, context, next) {
      if (!url.startsWith(SCHEME)) return next(url, context)
      return { format: 'commonjs', source: refusingModule(UNUSED[url.slice(SCHEME.length)] ?? 'this module'), shortCircuit: true }
    }
  })
}
