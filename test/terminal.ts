// A WebSocket terminal client of berth's exec (GET …/exec upgraded): what it was sent, by stream, and
// how it closed; or the HTTP problem an upgrade was refused with.
import WebSocket from 'ws'
import { auth } from './helpers.ts'

export async function terminal (base: string, container: string, query: string, who: 'alice' | 'bob' | null = 'alice') {
  const socket = new WebSocket(`${base.replace('http', 'ws')}/v1/containers/${container}/exec?${query}`, { headers: who === null ? {} : auth(who) })
  const received: { output: Buffer[], text: Array<Record<string, unknown>>, close?: { code: number, reason: string } } = { output: [], text: [] }
  socket.on('error', () => {})
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) received.output.push(data)
    else received.text.push(JSON.parse(data.toString()))
  })
  const closed = new Promise<{ code: number, reason: string }>(resolve => socket.on('close', (code, reason) => {
    received.close = { code, reason: reason.toString() }
    resolve(received.close)
  }))
  const opened = await new Promise<{ ok: true } | { ok: false, status: number, body: string }>(resolve => {
    socket.once('open', () => resolve({ ok: true }))
    socket.once('unexpected-response', (request, response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => {
        // Refused: the client lets go of the connection, as a browser does.
        request.destroy()
        resolve({ ok: false, status: response.statusCode ?? 0, body })
      })
    })
  })
  const stdout = () => Buffer.concat(received.output.filter(frame => frame[0] === 1).map(frame => frame.subarray(1))).toString()
  const stderr = () => Buffer.concat(received.output.filter(frame => frame[0] === 2).map(frame => frame.subarray(1))).toString()
  return { socket, received, closed, opened, stdout, stderr }
}
