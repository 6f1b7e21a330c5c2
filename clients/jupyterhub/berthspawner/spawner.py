"""BerthSpawner: each user's notebook server is a container berth runs, on one host, a Swarm or Kubernetes.

The hub holds one berth token (write scope) instead of the Docker socket or a cluster account, so what
it can do is what berth lets that token do: its own containers only, under berth's policy and quotas.
Within that token, users are kept apart by the spawner: every container carries the user's and
server's labels and a name made from them, and a spawner acts only on the container id it started (kept
in the hub's database through get_state), never on a name or a label alone.
"""
import asyncio
import os
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Unicode, Union, default

from .berth import Berth, BerthError, BerthProblem, segment
from .names import container_name, escape

# Labels berth keeps on each server's container: how a person (or a script) finds a user's servers
# with the hub's token — `GET /v1/containers?label=hub.jupyter.org/username=ada`. KubeSpawner's keys.
LABEL_USER = 'hub.jupyter.org/username'
LABEL_SERVER = 'hub.jupyter.org/servername'
LABEL_SPAWNER = 'hub.jupyter.org/spawner'
SPAWNER = 'berthspawner'

# berth's states (`docker ps`'s words) in which the server still is, or is still coming up.
RUNNING = {'running', 'restarting', 'paused', 'created'}


class BerthSpawner(Spawner):
    """Runs single-user servers through berth's HTTP API (clients/jupyterhub/README.md has the options)."""

    berth_url = Unicode(config=True, help="""berth's address, such as http://berth:8080. Defaults to $BERTH_URL.""")

    @default('berth_url')
    def _berth_url_default(self):
        return os.environ.get('BERTH_URL', '')

    berth_token = Unicode(config=True, help="""The hub's berth token: write scope, a name of its own (berth keeps
        each token's containers apart, and counts quotas per token). Defaults to $BERTH_TOKEN.""")

    @default('berth_token')
    def _berth_token_default(self):
        return os.environ.get('BERTH_TOKEN', '')

    request_timeout = Float(60.0, config=True, help="""Seconds a call to berth may take. A run is one call
        (create and start, and on a cluster the wait for its replica); a pull may take up to start_timeout.""")

    retry_timeout = Float(30.0, config=True, help="""Seconds a start or stop keeps trying when berth is busy or away
        (its engine unavailable, the token's rate limit reached, berth unreachable): it waits what berth's
        Retry-After says, else 1, 2, 4… seconds, and the spawn page says so. 0: no second try.""")

    image = Unicode('quay.io/jupyter/base-notebook:latest', config=True, help="""The image each server runs.
        It must have `jupyterhub-singleuser` (or whatever `cmd` names) of a version that speaks to this hub.""")

    pull_policy = CaselessStrEnum(['missing', 'always', 'never'], 'missing', config=True, help="""When to pull the
        image before a server starts: when berth's engine does not have it (the default), always, or never. A pull
        shows its progress on the spawn page; on a cluster, where berth has no image store, the nodes pull it.""")

    name_template = Unicode('jupyter-{username}{servername}', config=True, help="""The container's name.
        {username} is the user's name escaped to what every berth backend takes (a-z, 0-9 and "-"); {servername}
        is empty for the default server, else "--" and the escaped server name. Start it with a letter.""")

    extra_labels = Dict(config=True, help="""More labels on each container; values are format strings with
        {username} and {servername} (raw, unescaped). Keys under io.berth. are berth's own and refused.""")

    volumes = Union([Dict(), List()], default_value={}, config=True, help="""Volumes, as berth's run takes them:
        a dict {source: target} or a list of "source:target[:ro]" strings. {username} and {servername} in sources
        and targets are filled in (escaped, as in names). A named volume that is missing is created, owned by
        the hub's token: {"jupyterhub-user-{username}": "/home/jovyan/work"} keeps each user's work across servers.""")

    network = Unicode('', config=True, help="""A berth network (of the hub's token) to run servers on. Then the
        hub reaches each server at its address on that network on `port`, and no host port is bound: use it
        when the hub itself runs in a container on that network. Single host only.""")

    host_ip = Unicode('', config=True, help="""The host address a server's port is bound on, such as 127.0.0.1
        when the hub runs on berth's host (then nothing else on the network reaches servers directly). Empty:
        berth's default (BERTH_ALLOWED_HOST_IPS decides which addresses may be bound).""")

    host_address = Unicode('', config=True, help="""The address the hub reaches a host port on when berth bound it
        on every interface. Empty: the host of berth_url. On a cluster berth answers each replica's node
        address, which is used as it is.""")

    remove = Bool(True, config=True, help="""Remove a server's container when it stops (its logs go with it;
        keep data in `volumes`). False only stops it, so berth still shows it and its logs until the user's
        next start replaces it; a stopped container still counts against the token's container quota.""")

    stop_timeout = Int(10, config=True, help="""Seconds a stop waits after the stop signal before the engine kills the server
        (the run's stopTimeout: on a cluster the only place a grace period can be given).""")

    idle_timeout = Int(0, config=True, help="""Seconds a server may sit idle before berth stops it (or removes it,
        with `remove`): berth's expiry, measured by berth as no CPU above 1 % of a core, no network traffic above
        4 KiB and no exec between two looks. The hub notices at its next poll. 0: no idle timeout. Single host only
        (on a Swarm use the hub's idle culler).""")

    max_age = Int(0, config=True, help="""Seconds a server may live at most before berth stops (or removes) it,
        idle or not. 0: no limit. Single host only.""")

    extra_run_options = Dict(config=True, help="""More fields of berth's run body, merged over what the spawner
        sets (shmSize, gpus, ulimits, init, restart, placement…): see berth's OpenAPI document, RunRequest.""")

    container_id = Unicode(help="""The id of the container this spawner runs; kept in the hub's database.""")

    @default('env_keep')
    def _env_keep_default(self):
        # The hub's own PATH, PYTHONPATH, LANG… describe the hub's machine, not the image: the image's own stay.
        return []

    @default('ip')
    def _ip_default(self):
        # Inside the container: every interface, or nothing outside it (the hub, the proxy) reaches the server.
        return '0.0.0.0'

    @default('port')
    def _port_default(self):
        return 8888

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events = []
        self._more = None
        self._start_done = False
        self._progress = 0

    # ---- berth

    @property
    def berth(self):
        if not self.berth_url:
            raise BerthError('BerthSpawner.berth_url (or $BERTH_URL) is not set')
        return Berth(self.berth_url, self.berth_token, self.request_timeout)

    @property
    def container_name(self):
        return container_name(self.name_template, self.user.name, self.name or '')

    def _fill(self, text, escaped):
        username, servername = self.user.name, self.name or ''
        if escaped:
            username, servername = escape(username), escape(servername)
        return text.format(username=username, servername=servername)

    def labels(self):
        labels = {key: self._fill(value, escaped=False) for key, value in self.extra_labels.items()}
        labels.update({LABEL_USER: self.user.name, LABEL_SERVER: self.name or '', LABEL_SPAWNER: SPAWNER})
        return labels

    def _volumes(self):
        if isinstance(self.volumes, dict):
            return [{'source': self._fill(source, True), 'target': self._fill(target, True)} for source, target in self.volumes.items()]
        return [self._fill(volume, True) for volume in self.volumes]

    def server_env(self):
        """The hub's environment for the server, never with the hub's berth token in it (whatever the config says)."""
        env = self.get_env()
        leaked = [key for key, value in env.items() if self.berth_token and self.berth_token in str(value)]
        for key in leaked:
            self.log.warning('not giving %s\'s server $%s: it holds the hub\'s berth token', self._log_name, key)
            del env[key]
        return env

    def run_body(self, env):
        """berth's run body for this server (POST /v1/containers)."""
        body = {
            'image': self.image,
            'name': self.container_name,
            'command': [*self.cmd, *self.get_args()],
            'env': env,
            'labels': self.labels(),
            # A stop's grace period, on every backend (a cluster takes it only here, not at the stop).
            'stopTimeout': self.stop_timeout,
            # The image was pulled just before (with its progress shown), or the nodes pull it on a cluster.
            'pull': 'never' if self.pull_policy == 'never' else 'missing',
        }
        if self.network:
            body['network'] = self.network
        else:
            port = {'container': self.port}
            if self.host_ip:
                port['hostIp'] = self.host_ip
            body['ports'] = [port]
        volumes = self._volumes()
        if volumes:
            body['volumes'] = volumes
        resources = {}
        if self.mem_limit:
            resources['memory'] = int(self.mem_limit)
        if self.cpu_limit:
            resources['cpus'] = float(self.cpu_limit)
        reservations = {}
        if self.mem_guarantee:
            reservations['memory'] = int(self.mem_guarantee)
        if self.cpu_guarantee:
            reservations['cpus'] = float(self.cpu_guarantee)
        if reservations:
            resources['reservations'] = reservations
        if resources:
            body['resources'] = resources
        if self.idle_timeout or self.max_age:
            expiry = {'action': 'remove' if self.remove else 'stop'}
            if self.idle_timeout:
                expiry['idleTimeout'] = self.idle_timeout
            if self.max_age:
                expiry['ttl'] = self.max_age
            body['expiry'] = expiry
        body.update(self.extra_run_options)
        return body

    def address(self, container):
        """(ip, port) where the hub and its proxy reach the server, from berth's answer to the run."""
        if self.network:
            for network in container.get('networks') or []:
                if network.get('name') == self.network and network.get('ipAddress'):
                    return network['ipAddress'], self.port
            raise BerthError(f'berth ran {container.get("name")} but reports no address for it on network {self.network}')
        bindings = [port for port in container.get('ports') or []
                    if port.get('container') == self.port and port.get('protocol', 'tcp') == 'tcp' and port.get('host')]
        if not bindings:
            raise BerthError(f'berth ran {container.get("name")} but reports no host port bound to its port {self.port}')
        # The engine lists a port bound on every interface twice (IPv4 and IPv6): take the IPv4 one.
        binding = sorted(bindings, key=lambda port: ':' in (port.get('hostIp') or ''))[0]
        host_ip = binding.get('hostIp') or ''
        if host_ip in ('', '0.0.0.0', '::'):
            host_ip = self.host_address or urlparse(self.berth_url).hostname
        return host_ip, binding['host']

    # ---- progress, for the spawn page

    def _report(self, progress, message):
        self._progress = progress
        self._events.append({'progress': progress, 'message': message})
        self._wake()

    def _wake(self):
        more, self._more = self._more, None
        if more is not None and not more.done():
            more.set_result(None)

    async def progress(self):
        seen = 0
        while True:
            events = self._events
            while seen < len(events):
                yield events[seen]
                seen += 1
            if self._start_done:
                return
            if self._more is None:
                self._more = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._more)

    # ---- the Spawner API

    def load_state(self, state):
        super().load_state(state)
        self.container_id = state.get('container_id', '')

    def get_state(self):
        state = super().get_state()
        if self.container_id:
            state['container_id'] = self.container_id
        return state

    def clear_state(self):
        super().clear_state()
        self.container_id = ''

    async def _retrying(self, what, attempt):
        """attempt(), again while berth answers that it is busy or away, for retry_timeout seconds at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_timeout
        backoff = 1
        while True:
            try:
                return await attempt()
            except BerthError as error:
                delay = error.retry_after if error.retry_after is not None else backoff
                if not error.transient or loop.time() + delay > deadline:
                    raise
                self.log.warning('%s: %s; trying again in %s s', what, error, delay)
                self._report(self._progress, f'berth is busy; trying again in {delay} s')
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 10)

    async def start(self):
        self._events, self._start_done, self._progress = [], False, 0
        try:
            return await self._retrying(f'starting {self._log_name}\'s server', self._start)
        except BerthError as error:
            # Once, after any tries again: everything berth said, with its request id.
            self.log.error('%s', error)
            raise
        finally:
            # Whoever follows the progress learns that there is no more.
            self._start_done = True
            self._wake()

    async def _start(self):
        berth = self.berth
        name = self.container_name
        await self._remove_leftover(berth, name)
        if self.pull_policy != 'never':
            await self._pull(berth)
        self._report(75, f'Starting the server through berth as {name}')
        body = self.run_body(self.server_env())
        container = await berth.call('POST', '/v1/containers', f'run {self._log_name}\'s server ({name}, image {self.image})', body=body)
        self.container_id = container['id']
        ip, port = self.address(container)
        self.log.info('berth runs %s\'s server as %s (%s), reached at %s:%s', self._log_name, name, self.container_id[:12], ip, port)
        self._report(90, f'The server runs as {name} ({self.container_id[:12]}); waiting for it to answer')
        return ip, port

    async def _remove_leftover(self, berth, name):
        """A container of this name from an earlier start (the hub forgot it, or it was only stopped) goes first."""
        try:
            existing = await berth.call('GET', f'/v1/containers/{segment(name)}', f'look for {name}')
        except BerthProblem as problem:
            if problem.status == 404:
                return
            raise
        labels = existing.get('labels') or {}
        if labels.get(LABEL_USER) != self.user.name or labels.get(LABEL_SERVER) != (self.name or ''):
            # Ours by token but not this server's: never touch it.
            raise BerthProblem(f'run {self._log_name}\'s server', 409, {
                'code': 'name_conflict',
                'detail': f'container {name} exists and is not {self._log_name}\'s server (labels {labels.get(LABEL_USER)!r}/{labels.get(LABEL_SERVER)!r}); change name_template or remove it'
            })
        self.log.info('removing %s\'s earlier container %s (%s, %s) before starting again', self._log_name, name, existing['id'][:12], existing.get('state'))
        await self._delete(berth, existing['id'])

    async def _pull(self, berth):
        image = self.image
        if self.pull_policy == 'missing':
            try:
                await berth.call('GET', f'/v1/images/{segment(image)}', f'look for image {image}')
                return
            except BerthProblem as problem:
                if problem.code == 'not_supported':
                    return  # a cluster: each node pulls what it runs
                if problem.status != 404:
                    raise
        self._report(5, f'Pulling {image}')

        def progress(event):
            fraction = event.get('fraction') or 0
            layers = event.get('layers') or {}
            self._report(5 + int(65 * fraction), f'Pulling {image}: {int(100 * fraction)}% ({layers.get("done", 0)}/{layers.get("total", 0)} layers)')

        try:
            pulled = await berth.pull(image, progress, f'pull {image} for {self._log_name}', timeout=self.start_timeout)
        except BerthProblem as problem:
            if problem.code == 'not_supported':
                return
            raise
        self._report(70, f'Pulled {image} ({(pulled or {}).get("digest") or "no digest"})')

    async def poll(self):
        if not self.container_id:
            return 0
        try:
            container = await self.berth.call('GET', f'/v1/containers/{segment(self.container_id)}', f'inspect {self._log_name}\'s server')
        except BerthProblem as problem:
            if problem.status == 404:
                # Removed: by a stop, by berth's expiry, by an operator.
                return 0
            if problem.status >= 500 or problem.code == 'rate_limited':
                # berth or its engine is away, not the server: containers run on without berth.
                self.log.warning('cannot tell whether %s\'s server runs: %s', self._log_name, problem)
                return None
            raise
        except BerthError as error:
            self.log.warning('cannot tell whether %s\'s server runs: %s', self._log_name, error)
            return None
        if container.get('state') in RUNNING:
            return None
        exit_code = container.get('exitCode')
        return exit_code if isinstance(exit_code, int) else 0

    async def stop(self, now=False):
        if not self.container_id:
            return
        try:
            await self._retrying(f'stopping {self._log_name}\'s server', lambda: self._stop(now))
        except BerthError as error:
            self.log.error('%s', error)
            raise
        self.log.info('berth %s %s\'s server %s', 'removed' if self.remove else 'stopped', self._log_name, self.container_id[:12])

    async def _stop(self, now):
        berth = self.berth
        path = f'/v1/containers/{segment(self.container_id)}'
        if now and self.remove:
            # Removed by force: the engine kills it at once, on every backend.
            await self._delete(berth, self.container_id)
        else:
            # The grace period is the stopTimeout it was run with (on a cluster a stop cannot give another);
            # `now` asks for none where the backend allows it.
            try:
                try:
                    await berth.call('POST', f'{path}/stop', f'stop {self._log_name}\'s server', query={'timeout': 0} if now else None,
                                     timeout=self.request_timeout + self.stop_timeout)
                except BerthProblem as problem:
                    if not (now and problem.code == 'not_supported'):
                        raise
                    await berth.call('POST', f'{path}/stop', f'stop {self._log_name}\'s server', timeout=self.request_timeout + self.stop_timeout)
            except BerthProblem as problem:
                if problem.status != 404:
                    raise
            if self.remove:
                await self._delete(berth, self.container_id)

    async def _delete(self, berth, container_id):
        try:
            await berth.call('DELETE', f'/v1/containers/{segment(container_id)}', f'remove {self._log_name}\'s server', query={'force': 'true'})
        except BerthProblem as problem:
            if problem.status != 404:
                raise

    async def delete_forever(self):
        """The user (or this named server) is deleted: a container only stopped (remove=False) goes too."""
        try:
            existing = await self.berth.call('GET', f'/v1/containers/{segment(self.container_name)}', f'look for {self.container_name}')
        except BerthProblem as problem:
            if problem.status == 404:
                return
            raise
        labels = existing.get('labels') or {}
        if labels.get(LABEL_USER) == self.user.name and labels.get(LABEL_SERVER) == (self.name or ''):
            await self._delete(self.berth, existing['id'])
