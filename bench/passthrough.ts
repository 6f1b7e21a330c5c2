// The floor the bench holds berth against: the least an HTTP API in front of the engine can do.
// Every request goes to the engine over a keep-alive connection on its socket; the JSON answer is
// parsed and written out again, as any service that returns its own JSON must. No routing, no
// auth, no validation, no logging. Run by bench/run.ts as a process of its own, like berth.
import http from 'node:http'

const socketPath = process.argv[2] ?? '/var/run/docker.sock'
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

const server = http.createServer((request, response) => {
  const upstream = http.request({ socketPath, agent, method: request.method, path: request.url }, reply => {
    const chunks: Buffer[] = []
    reply.on('data', (chunk: Buffer) => chunks.push(chunk))
    reply.on('end', () => {
      const text = Buffer.concat(chunks).toString()
      const json = (reply.headers['content-type'] ?? '').includes('json')
      const body = json ? JSON.stringify(JSON.parse(text)) : text
      response.writeHead(reply.statusCode ?? 502, { 'content-type': json ? 'application/json' : 'text/plain', 'content-length': Buffer.byteLength(body) })
      response.end(body)
    })
  })
  upstream.on('error', () => { response.writeHead(502).end() })
  request.pipe(upstream)
})

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  // The bench reads the port from here.
  console.log(`passthrough listening on ${typeof address === 'object' && address !== null ? address.port : ''}`)
})
process.on('SIGTERM', () => { server.close(); agent.destroy() })
