// The first-run check of the engine's socket: a socket berth may not open is a configuration
// mistake (the group it runs with), which no waiting fixes, so berth refuses to start and says how
// to fix it. A socket that is missing or refuses connections is an engine that is down: berth starts
// and waits for it.
import { stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { ConfigError } from '../config.ts'

/** Opens the socket once; throws ConfigError when the process may not (EACCES, EPERM). */
export async function checkSocketAccess (path: string): Promise<void> {
  const failure = await new Promise<NodeJS.ErrnoException | null>(resolve => {
    const socket = connect(path)
    socket.once('connect', () => { socket.destroy(); resolve(null) })
    socket.once('error', resolve)
  })
  if (failure?.code !== 'EACCES' && failure?.code !== 'EPERM') return
  const owner = await stat(path).then(info => ` the socket belongs to group ${info.gid} (mode ${(info.mode & 0o777).toString(8)});`, () => '')
  const groups = process.getgroups?.() ?? []
  throw new ConfigError(`permission denied on the Docker socket ${path} (${failure.code}): berth runs as uid ${process.getuid?.()} with groups ${groups.join(', ') || 'none'};${owner} ` +
    'set DOCKER_GID in .env to the group of the socket on the host, which `stat -c %g /var/run/docker.sock` prints ' +
    '(docker run: --group-add "$(stat -c %g /var/run/docker.sock)")')
}
