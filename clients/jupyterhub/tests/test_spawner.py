"""BerthSpawner against a berth stand-in: what it asks berth for, what it answers the hub, how it fails."""
import asyncio

import pytest

from berthspawner import BerthProblem, BerthUnreachable
from berthspawner.spawner import LABEL_SERVER, LABEL_USER

from conftest import TOKEN, Handler, make_spawner, problem


def test_start_runs_the_server_with_the_hubs_env_labels_and_port(run):
    async def test(fake):
        spawner = make_spawner(fake, host_ip='127.0.0.1', mem_limit='512M', cpu_limit=1.5,
                               extra_labels={'team': 'lab-{username}'}, volumes={'jupyterhub-user-{username}': '/home/jovyan/work'},
                               environment={'LEAK': TOKEN, 'MODE': 'teaching'})
        ip, port = await spawner.start()
        assert (ip, port) == ('127.0.0.1', 49153)
        method, uri, body = fake.requests[-1]
        assert (method, uri) == ('POST', '/v1/containers')
        env = body.pop('env')
        assert body == {
            'image': 'berth-test/singleuser:1',
            'name': 'jupyter-ada',
            'command': ['jupyterhub-singleuser'],
            'labels': {'team': 'lab-ada', LABEL_USER: 'ada', LABEL_SERVER: '', 'hub.jupyter.org/spawner': 'berthspawner'},
            'stopTimeout': 10,
            'pull': 'missing',
            'ports': [{'container': 8888, 'hostIp': '127.0.0.1'}],
            'volumes': [{'source': 'jupyterhub-user-ada', 'target': '/home/jovyan/work'}],
            'resources': {'memory': 512 * 1024 * 1024, 'cpus': 1.5},
        }
        assert env['JUPYTERHUB_API_TOKEN'] == 'hub-api-token-of-ada'
        assert env['JUPYTERHUB_SERVICE_URL'] == 'http://0.0.0.0:8888/'
        assert env['MODE'] == 'teaching'
        # The hub's berth token never reaches a user's server, nor the hub's own PATH.
        assert 'LEAK' not in env and 'PATH' not in env
        assert all(TOKEN not in value for value in env.values())
        assert spawner.get_state() == {'container_id': fake.find('jupyter-ada')['id']}
        assert await spawner.poll() is None
    run(test)


def test_a_named_server_has_its_own_name_and_labels(run):
    async def test(fake):
        spawner = make_spawner(fake, username='ada.l@x.org', server='gpu')
        await spawner.start()
        body = fake.requests[-1][2]
        assert body['name'] == 'jupyter-ada-2el-40x-2eorg--gpu'
        assert (body['labels'][LABEL_USER], body['labels'][LABEL_SERVER]) == ('ada.l@x.org', 'gpu')
    run(test)


def test_expiry_follows_idle_timeout_max_age_and_remove(run):
    async def test(fake):
        await make_spawner(fake, username='a', idle_timeout=600, max_age=3600).start()
        assert fake.requests[-1][2]['expiry'] == {'action': 'remove', 'idleTimeout': 600, 'ttl': 3600}
        await make_spawner(fake, username='b', idle_timeout=600, remove=False).start()
        assert fake.requests[-1][2]['expiry'] == {'action': 'stop', 'idleTimeout': 600}
        await make_spawner(fake, username='c').start()
        assert 'expiry' not in fake.requests[-1][2]
        await make_spawner(fake, username='d', extra_run_options={'shmSize': 1 << 30, 'init': True}).start()
        assert (fake.requests[-1][2]['shmSize'], fake.requests[-1][2]['init']) == (1 << 30, True)
    run(test)


def test_the_address_the_hub_reaches(run):
    async def test(fake):
        # Bound on every interface (listed for IPv6 first, as the engine does): berth's host, over IPv4.
        assert await make_spawner(fake, username='a').start() == ('127.0.0.1', 49153)
        assert await make_spawner(fake, username='b', host_address='10.0.0.5').start() == ('10.0.0.5', 49153)
        # On a cluster berth answers the node the replica runs on.
        fake.tasks_address = '10.250.0.12'
        assert await make_spawner(fake, username='c').start() == ('10.250.0.12', 49153)
        # On a network of the hub's: the container's address there, on its own port; no host port.
        fake.tasks_address = None
        assert await make_spawner(fake, username='d', network='hub-net').start() == ('10.9.0.7', 8888)
        body = fake.requests[-1][2]
        assert body['network'] == 'hub-net' and 'ports' not in body
    run(test)


def test_an_earlier_container_of_the_same_server_is_replaced(run):
    async def test(fake):
        old = fake.add('jupyter-ada', state='exited', labels={LABEL_USER: 'ada', LABEL_SERVER: ''}, exit_code=0)
        await make_spawner(fake).start()
        assert old['id'] not in fake.containers
        assert ('DELETE', f'/v1/containers/{old["id"]}?force=true') in fake.seen()
    run(test)


def test_a_container_by_that_name_that_is_not_this_servers_is_never_touched(run):
    async def test(fake):
        other = fake.add('jupyter-ada', labels={LABEL_USER: 'someone-else', LABEL_SERVER: ''})
        with pytest.raises(BerthProblem) as refused:
            await make_spawner(fake).start()
        assert refused.value.code == 'name_conflict'
        assert 'someone-else' in str(refused.value)
        assert 'someone-else' not in refused.value.jupyterhub_message
        assert other['id'] in fake.containers
        assert fake.seen('DELETE') == [] and fake.seen('POST') == []
    run(test)


def test_a_missing_image_is_pulled_with_its_progress_on_the_spawn_page(run):
    async def test(fake):
        fake.images.clear()
        fake.pull_events = [
            {'type': 'started', 'image': 'berth-test/singleuser:1'},
            {'type': 'progress', 'layer': {'id': 'l1', 'phase': 'downloading'}, 'fraction': 0.5, 'layers': {'total': 2, 'done': 1}},
            {'type': 'progress', 'layer': {'id': 'l2', 'phase': 'complete'}, 'fraction': 1, 'layers': {'total': 2, 'done': 2}},
            {'type': 'pulled', 'image': {'id': 'sha256:1', 'digest': 'sha256:abc'}},
        ]
        spawner = make_spawner(fake)
        # The spawn page follows the progress from before the start on.
        events = []

        async def follow():
            async for event in spawner.progress():
                events.append(event)
        following = asyncio.ensure_future(follow())
        await spawner.start()
        await following
        assert [event['message'] for event in events] == [
            'Pulling berth-test/singleuser:1',
            'Pulling berth-test/singleuser:1: 50% (1/2 layers)',
            'Pulling berth-test/singleuser:1: 100% (2/2 layers)',
            'Pulled berth-test/singleuser:1 (sha256:abc)',
            'Starting the server through berth as jupyter-ada',
            f'The server runs as jupyter-ada ({spawner.container_id[:12]}); waiting for it to answer',
        ]
        progress = [event['progress'] for event in events]
        assert progress == sorted(progress)
        # A page opened afterwards gets the same story, and its end.
        assert [event async for event in spawner.progress()] == events
    run(test)


def test_a_present_image_is_not_pulled_and_never_means_never(run):
    async def test(fake):
        await make_spawner(fake, username='a').start()
        assert ('GET', '/v1/images/berth-test%2Fsingleuser%3A1') in fake.seen()
        await make_spawner(fake, username='b', pull_policy='never').start()
        assert fake.requests[-1][2]['pull'] == 'never'
        assert [uri for _, uri in fake.seen('POST')] == ['/v1/containers', '/v1/containers']
    run(test)


def test_on_a_cluster_the_nodes_pull(run):
    async def test(fake):
        fake.refuse('GET', '/v1/images/', 501, 'not_supported', 'GET /v1/images/{ref} is not supported by the swarm backend', backend='swarm')
        await make_spawner(fake).start()
        assert [uri for _, uri in fake.seen('POST')] == ['/v1/containers']
    run(test)


def test_a_pull_that_fails_says_why(run):
    async def test(fake):
        fake.images.clear()
        fake.pull_events = [{'type': 'started', 'image': 'x'}, {'type': 'error', 'problem': problem_body(502, 'pull_failed', 'pulling x failed: unauthorized')}]
        with pytest.raises(BerthProblem) as failed:
            await make_spawner(fake).start()
        assert failed.value.code == 'pull_failed'
        assert failed.value.jupyterhub_message == 'The server\'s image could not be pulled: pulling x failed: unauthorized.'
        assert fake.seen('POST') == [('POST', '/v1/images/pull')]
    run(test)


def test_a_pull_refused_before_it_starts(run):
    async def test(fake):
        fake.images.clear()
        fake.refuse('POST', '/v1/images/pull', 403, 'policy_denied', 'image berth-test/singleuser:1 is not on the allow-list (BERTH_ALLOWED_IMAGES)', rule='images')
        with pytest.raises(BerthProblem) as refused:
            await make_spawner(fake).start()
        assert refused.value.rule == 'images'
        assert refused.value.jupyterhub_message == ('berth\'s policy does not allow this server: image berth-test/singleuser:1 is not on the allow-list '
                                                    '(BERTH_ALLOWED_IMAGES). Ask the hub\'s administrator.')
    run(test)


def problem_body(status, code, detail, **extras):
    return problem(status, code, detail, **extras)[1]


@pytest.mark.parametrize('status, code, detail, extras, shown, hidden', [
    (409, 'port_conflict', 'host port 8888 is already allocated by container jupyter-bob', {'port': 8888, 'holder': {'id': 'f' * 64, 'name': 'jupyter-bob'}},
     'The host port this server needs is taken. Ask the hub\'s administrator (the hub\'s log has the details).', 'jupyter-bob'),
    (403, 'quota_exceeded', 'the token holds 2 of its 2 containers; remove one first', {'limit': 'containers', 'quota': 2, 'used': 2},
     'The hub has reached its berth quota of containers (2 of 2 in use). Try again once other servers have stopped, or ask the hub\'s administrator to raise it.', None),
    (401, 'unauthorized', 'the bearer token is not valid', {},
     'berth refused the hub\'s credentials. Ask the hub\'s administrator to check the hub\'s berth token.', None),
    (403, 'forbidden', 'this needs the "write" scope; token "hub" has read', {'scope': 'write'},
     'berth refused the hub\'s credentials. Ask the hub\'s administrator to check the hub\'s berth token.', None),
    (503, 'engine_unavailable', 'cannot reach the container engine (ECONNREFUSED)', {},
     'berth is busy or cannot reach its engine right now. Try again in a moment.', None),
    (501, 'not_supported', 'expiry is not supported by the swarm backend', {'backend': 'swarm'},
     'berth cannot run this server as the hub asked: expiry is not supported by the swarm backend. Ask the hub\'s administrator.', None),
    (500, 'internal_error', 'berth failed unexpectedly', {},
     'berth could not start the server (500 internal_error). Ask the hub\'s administrator (the hub\'s log has the details).', None),
])
def test_berths_refusals_in_the_log_and_on_the_spawn_page(run, status, code, detail, extras, shown, hidden):
    async def test(fake):
        fake.refuse('POST', '/v1/containers', status, code, detail, **extras)
        spawner = make_spawner(fake)
        with pytest.raises(BerthProblem) as refused:
            await spawner.start()
        problem = refused.value
        # The hub's log: everything berth said, with its request id.
        assert str(problem).startswith(f'berth refused to run ada\'s server (jupyter-ada, image berth-test/singleuser:1): {status} {code}: {detail}')
        assert str(problem).endswith('(request req-1)')
        for key in extras:
            assert key in str(problem)
        # The user's spawn page; and the page of a spawn that failed at once, which the hub renders from an
        # HTTPError's status and message (503 when trying again later may help).
        assert problem.jupyterhub_message == shown
        assert problem.log_message % problem.args == shown
        assert problem.status_code == (503 if code in ('quota_exceeded', 'engine_unavailable') else 500)
        if hidden:
            assert hidden not in problem.jupyterhub_message
        assert spawner.container_id == ''
    run(test)


def test_a_busy_berth_is_tried_again_as_it_says(run):
    async def test(fake):
        fake.refuse('POST', '/v1/containers', 503, 'engine_unavailable', 'the container engine did not answer within 10000 ms', times=2, retry_after=0)
        spawner = make_spawner(fake, retry_timeout=30)
        assert await spawner.start() == ('127.0.0.1', 49153)
        assert [uri for _, uri in fake.seen('POST')] == ['/v1/containers'] * 3
        messages = [event['message'] for event in spawner._events]
        assert messages.count('berth is busy; trying again in 0 s') == 2
        # Each try starts from the beginning: an earlier try may have left a container behind at the engine.
        assert fake.seen('GET').count(('GET', '/v1/containers/jupyter-ada')) == 3
    run(test)


def test_a_full_quota_is_not_tried_again(run):
    async def test(fake):
        fake.refuse('POST', '/v1/containers', 403, 'quota_exceeded', 'the token holds 2 of its 2 containers', retry_after=0, limit='containers', quota=2, used=2)
        with pytest.raises(BerthProblem):
            await make_spawner(fake, retry_timeout=30).start()
        assert fake.seen('POST') == [('POST', '/v1/containers')]
    run(test)


def test_tries_end_when_retry_timeout_would_pass(run):
    async def test(fake):
        fake.refuse('POST', '/v1/containers', 429, 'rate_limited', 'rate limit of 600 requests a minute reached', retry_after=60)
        with pytest.raises(BerthProblem) as refused:
            await make_spawner(fake, retry_timeout=30).start()
        assert refused.value.retry_after == 60
        assert fake.seen('POST') == [('POST', '/v1/containers')]
    run(test)


def test_a_stop_is_tried_again_too(run):
    async def test(fake):
        spawner = make_spawner(fake, retry_timeout=30)
        await spawner.start()
        fake.refuse('POST', f'/v1/containers/{spawner.container_id}/stop', 503, 'engine_unavailable', 'cannot reach the container engine', times=1, retry_after=0)
        await spawner.stop()
        assert fake.containers == {}
    run(test)


def test_an_answer_that_is_not_berths(run):
    async def test(fake):
        spawner = make_spawner(fake)
        original = Handler.dispatch

        # A proxy in front of berth, answering for it.
        async def page(self, method, path):
            self.set_status(502)
            self.finish('<html>Bad Gateway</html>')
        Handler.dispatch = page
        try:
            with pytest.raises(BerthProblem) as failed:
                await spawner.start()
        finally:
            Handler.dispatch = original
        assert failed.value.status == 502
        assert "not berth's problem+json: '<html>Bad Gateway</html>'" in str(failed.value)
        assert failed.value.jupyterhub_message == 'berth is busy or cannot reach its engine right now. Try again in a moment.'
    run(test)


def test_an_unreachable_berth(run):
    async def test(fake):
        spawner = make_spawner(None)
        with pytest.raises(BerthUnreachable) as failed:
            await spawner.start()
        assert str(failed.value).startswith('cannot reach berth at http://127.0.0.1:9: ')
        assert 'cannot reach berth' in failed.value.jupyterhub_message
        assert failed.value.status_code == 503
        # Running servers do not die with berth: a poll says so when it cannot tell.
        spawner.container_id = 'f' * 64
        assert await spawner.poll() is None
    run(test)


def test_poll_maps_berths_state_to_the_hubs(run):
    async def test(fake):
        spawner = make_spawner(fake)
        assert await spawner.poll() == 0  # never started
        container = fake.add('jupyter-ada')
        spawner.load_state({'container_id': container['id']})
        for state in ('running', 'restarting', 'paused', 'created'):
            container['state'] = state
            assert await spawner.poll() is None, state
        container.update(state='exited', exitCode=3)
        assert await spawner.poll() == 3
        container.update(state='dead', exitCode=None)
        assert await spawner.poll() == 0
        del fake.containers[container['id']]
        assert await spawner.poll() == 0  # removed: by a stop, by berth's expiry
        fake.add('jupyter-ada')
        fake.refuse('GET', '/v1/containers/', 503, 'engine_unavailable', 'cannot reach the container engine')
        assert await spawner.poll() is None
        fake.refuse('GET', '/v1/containers/', 401, 'unauthorized', 'the bearer token is not valid')
        with pytest.raises(BerthProblem):
            await spawner.poll()
    run(test)


def test_stop_stops_then_removes_through_berth(run):
    async def test(fake):
        spawner = make_spawner(fake, stop_timeout=7)
        await spawner.start()
        container_id = spawner.container_id
        await spawner.stop()
        assert fake.requests[-3][2]['stopTimeout'] == 7
        assert fake.seen()[-2:] == [('POST', f'/v1/containers/{container_id}/stop'), ('DELETE', f'/v1/containers/{container_id}?force=true')]
        assert container_id not in fake.containers
        assert await spawner.poll() == 0
        await spawner.stop()  # gone already: nothing to do, nothing fails
    run(test)


def test_stop_now_removes_at_once(run):
    async def test(fake):
        spawner = make_spawner(fake)
        await spawner.start()
        await spawner.stop(now=True)
        assert fake.seen()[-1] == ('DELETE', f'/v1/containers/{spawner.container_id}?force=true')
        assert fake.containers == {}
    run(test)


def test_stop_now_on_a_cluster_keeps_the_grace_period_it_was_run_with(run):
    async def test(fake):
        spawner = make_spawner(fake, remove=False)
        await spawner.start()
        fake.refuse('POST', f'/v1/containers/{spawner.container_id}/stop?', 501, 'not_supported', 'give stopTimeout when running the container', backend='swarm')
        await spawner.stop(now=True)
        assert fake.seen()[-1] == ('POST', f'/v1/containers/{spawner.container_id}/stop')
        assert fake.containers[spawner.container_id]['state'] == 'exited'
    run(test)


def test_stop_without_remove_keeps_the_container_and_now_kills(run):
    async def test(fake):
        spawner = make_spawner(fake, remove=False)
        await spawner.start()
        await spawner.stop(now=True)
        assert fake.seen()[-1] == ('POST', f'/v1/containers/{spawner.container_id}/stop?timeout=0')
        assert fake.containers[spawner.container_id]['state'] == 'exited'
        assert await spawner.poll() == 143
        # The hub forgets it; the next start replaces it.
        spawner.clear_state()
        assert spawner.get_state() == {}
        await spawner.stop()
        await spawner.start()
        assert len(fake.containers) == 1
    run(test)


def test_state_survives_a_hub_restart(run):
    async def test(fake):
        first = make_spawner(fake)
        await first.start()
        second = make_spawner(fake)
        second.load_state(first.get_state())
        assert second.container_id == first.container_id
        assert await second.poll() is None
        await second.stop()
        assert fake.containers == {}
    run(test)


def test_a_deleted_user_takes_a_kept_container_along(run):
    async def test(fake):
        spawner = make_spawner(fake, remove=False)
        await spawner.start()
        await spawner.stop()
        spawner.clear_state()
        await spawner.delete_forever()
        assert fake.containers == {}
        await spawner.delete_forever()  # nothing left: nothing to do
    run(test)


def test_without_berth_url_it_says_so(run):
    async def test(fake):
        spawner = make_spawner(fake, berth_url='')
        with pytest.raises(Exception, match=r'BerthSpawner.berth_url \(or \$BERTH_URL\) is not set'):
            await spawner.start()
    run(test)


def test_a_percent_sign_in_berths_words_reaches_the_page_as_it_is(run):
    async def test(fake):
        fake.refuse('POST', '/v1/containers', 403, 'policy_denied', 'memory over 100% of BERTH_MAX_MEMORY', rule='memory')
        with pytest.raises(BerthProblem) as refused:
            await make_spawner(fake).start()
        assert refused.value.log_message % refused.value.args == refused.value.jupyterhub_message
        assert '100% of BERTH_MAX_MEMORY' in refused.value.jupyterhub_message
    run(test)
