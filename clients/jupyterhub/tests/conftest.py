"""A berth stand-in for the spawner's unit tests: berth's routes the spawner calls, answering as berth does.

The behaviour against the real berth, engine and hub is proven by test/jupyterhub.test.ts; this one
gives every answer on demand (each problem, an unreachable berth, a cluster's node address) in
milliseconds. Each test runs in its own event loop with its own server.
"""
import asyncio
import json
import socket
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from berthspawner import BerthSpawner

TOKEN = 'hub-berth-token-0123456789abcdef'


def problem(status, code, detail, **extras):
    return status, {'type': f'https://berth.dev/problems/{code}', 'title': code.replace('_', ' '), 'status': status,
                    'detail': detail, 'code': code, 'instance': '/v1/…', 'requestId': 'req-1', **extras}


class FakeBerth:
    """Containers by id, images by reference, every request seen, and answers to give instead (`refuse`)."""

    def __init__(self):
        self.containers = {}
        self.images = {'berth-test/singleuser:1'}
        self.requests = []
        self.refusals = {}
        self.pull_events = None
        self.host_ip = '0.0.0.0'
        self.tasks_address = None
        self.port = None
        self._server = None
        self._next = 0

    def refuse(self, method, prefix, status, code, detail='refused', times=None, retry_after=None, **extras):
        """Requests `method prefix…` (path and query) answer this problem: from now on, or `times` times."""
        self.refusals[(method, prefix)] = {'answer': problem(status, code, detail, **extras), 'times': times, 'retry_after': retry_after}

    def url(self):
        return f'http://127.0.0.1:{self.port}'

    def start(self):
        app = web.Application([(r'(/v1/.*)', Handler, {'fake': self})])
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        sock.listen(16)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = HTTPServer(app)
        self._server.add_sockets([sock])

    def stop(self):
        self._server.stop()

    def add(self, name, state='running', labels=None, exit_code=None):
        self._next += 1
        container_id = f'{self._next:064x}'
        self.containers[container_id] = {'id': container_id, 'name': name, 'state': state, 'labels': labels or {},
                                         'exitCode': exit_code, 'ports': [], 'networks': []}
        return self.containers[container_id]

    def find(self, id_or_name):
        for container in self.containers.values():
            if container['id'] == id_or_name or container['name'] == id_or_name:
                return container
        return None

    def seen(self, method=None):
        return [(m, p) for m, p, _ in self.requests if method is None or m == method]


class Handler(web.RequestHandler):
    def initialize(self, fake):
        self.fake = fake

    def answer(self, status, body=None, content_type='application/json'):
        self.set_status(status)
        if body is not None:
            self.set_header('Content-Type', content_type)
            self.finish(json.dumps(body))
        else:
            self.finish()

    def refused(self, method, uri):
        for (m, prefix), refusal in self.fake.refusals.items():
            if m == method and uri.startswith(prefix) and refusal['times'] != 0:
                if refusal['times'] is not None:
                    refusal['times'] -= 1
                if refusal['retry_after'] is not None:
                    self.set_header('Retry-After', str(refusal['retry_after']))
                self.answer(*refusal['answer'], 'application/problem+json')
                return True
        return False

    async def dispatch(self, method, path):
        fake = self.fake
        body = json.loads(self.request.body) if self.request.body else None
        fake.requests.append((method, self.request.uri, body))
        assert self.request.headers.get('Authorization') == f'Bearer {TOKEN}'
        # berth reads JSON only, and refuses any other declared type even with an empty body.
        declared = self.request.headers.get('Content-Type')
        if declared is not None and declared != 'application/json':
            return self.answer(*problem(415, 'unsupported_media_type', 'send the body as application/json'))
        if declared is not None and not self.request.body:
            return self.answer(*problem(400, 'validation_failed', 'the JSON body is empty'))
        if self.refused(method, self.request.uri):
            return
        parts = path.split('/')[2:]
        if parts[0] == 'images' and method == 'GET':
            reference = unquote('/'.join(parts[1:]))
            if reference in fake.images:
                return self.answer(200, {'reference': reference})
            return self.answer(*problem(404, 'image_not_found', f'image {reference} was not found'))
        if parts == ['images', 'pull']:
            assert self.request.headers['Accept'].startswith('application/x-ndjson')
            self.set_header('Content-Type', 'application/x-ndjson')
            for event in fake.pull_events:
                self.write(json.dumps(event) + '\n')
                await self.flush()
            fake.images.add(body['image'])
            return self.finish()
        if parts == ['containers'] and method == 'POST':
            container = fake.add(body['name'], labels=body['labels'])
            if body.get('network'):
                container['networks'] = [{'name': 'bridge', 'ipAddress': '172.17.0.9', 'aliases': []},
                                         {'name': body['network'], 'ipAddress': '10.9.0.7', 'aliases': []}]
            for port in body.get('ports', []):
                address = fake.tasks_address or port.get('hostIp', fake.host_ip)
                container['ports'].append({'container': port['container'], 'host': 49153, 'protocol': 'tcp', 'hostIp': address})
                if address == '0.0.0.0':
                    container['ports'].insert(0, {'container': port['container'], 'host': 49153, 'protocol': 'tcp', 'hostIp': '::'})
            return self.answer(201, container)
        container = fake.find(parts[1]) if len(parts) > 1 else None
        if container is None:
            return self.answer(*problem(404, 'not_found', f'container {parts[1]} was not found'))
        if method == 'GET' and len(parts) == 2:
            return self.answer(200, container)
        if method == 'POST' and parts[2:] == ['stop']:
            changed = container['state'] == 'running'
            container.update(state='exited', exitCode=container['exitCode'] if container['exitCode'] is not None else 143, ports=[])
            return self.answer(200, {'changed': changed, 'container': container})
        if method == 'DELETE' and len(parts) == 2:
            assert self.get_query_argument('force') == 'true'
            del fake.containers[container['id']]
            return self.answer(204)
        raise AssertionError(f'the fake has no {method} {path}')

    async def get(self, path):
        await self.dispatch('GET', path)

    async def post(self, path):
        await self.dispatch('POST', path)

    async def delete(self, path):
        await self.dispatch('DELETE', path)


def make_spawner(fake, username='ada', server='', **config):
    user = SimpleNamespace(name=username, escaped_name=username, url=f'/user/{username}/', base_url=f'/user/{username}/')
    hub = SimpleNamespace(public_host='', api_url='http://hub.example:8081/hub/api', base_url='/hub/')
    # No second tries unless a test asks for them: a refusal is seen at once.
    options = {'berth_url': fake.url() if fake else 'http://127.0.0.1:9', 'berth_token': TOKEN, 'image': 'berth-test/singleuser:1', 'retry_timeout': 0}
    options.update(config)
    # The server's name comes from the hub's database record of it; only its name is read.
    record = SimpleNamespace(name=server, server=None)
    return BerthSpawner(user=user, hub=hub, orm_spawner=record, api_token=f'hub-api-token-of-{username}', oauth_client_id=f'jupyterhub-user-{username}', **options)


@pytest.fixture
def run():
    """Runs a test's coroutine in a loop of its own, with a fresh fake berth listening in it."""
    def runner(test):
        async def main():
            fake = FakeBerth()
            fake.start()
            try:
                return await test(fake)
            finally:
                fake.stop()
        return asyncio.run(main())
    return runner
