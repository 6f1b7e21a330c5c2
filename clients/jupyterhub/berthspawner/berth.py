"""The few berth calls a spawner makes, over tornado's HTTP client (the one the hub itself runs on).

Every answer that is not a success becomes a BerthProblem carrying berth's problem+json members (code,
detail, requestId and the code's own: port, rule, quota…); a berth that cannot be reached is
BerthUnreachable. Both carry two texts: str() for the hub's log, with everything berth said, and
`jupyterhub_message`, which JupyterHub shows on the user's spawn page — worded for the user and never
naming another user's container (a port conflict's holder, a taken name), which the hub's token sees.
"""
import json
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado import web
from tornado.iostream import StreamClosedError

PROBLEM_JSON = 'application/problem+json'


class BerthError(web.HTTPError):
    """Something went wrong talking to berth.

    str() is the hub's log line. `jupyterhub_message` is the user's side: JupyterHub shows it on the spawn
    page, and — being an HTTPError, which the hub lets through as it is — on the page of a spawn that failed
    at once (otherwise "Unhandled error starting server"), with 503 when trying again later may help.
    The hub's other pages (not_running.html) show it too.
    """

    # Whether the same call may well succeed in a moment (berth or its engine busy or away), and after how
    # many seconds berth says to try (its Retry-After), when it says.
    transient = False
    retry_after = None

    def __init__(self, text, user_message='The server could not be started through berth. Ask the hub\'s administrator.', retry=False):
        # Without format arguments tornado escapes the % in the message itself.
        super().__init__(503 if retry else 500, user_message)
        self.text = text
        self.jupyterhub_message = user_message

    def __str__(self):
        return self.text

    # The hub marks a failed spawn's exception with reason "error" or "timeout", and its error page then
    # shows its generic line for that reason instead of the exception's message: for berth's refusals the
    # message is the better one. (tornado's own use of `reason`, an HTTP reason phrase, is not needed.)
    @property
    def reason(self):
        return None

    @reason.setter
    def reason(self, value):
        pass


class BerthUnreachable(BerthError):
    """No answer from berth at all: it is down, or not where the hub was told it is."""

    def __init__(self, url, reason):
        super().__init__(f'cannot reach berth at {url}: {reason}',
                         'The hub cannot reach berth right now. Try again in a moment; if it goes on, tell the hub\'s administrator.', retry=True)
        self.transient = True
        self.url = url
        self.reason = reason


class BerthProblem(BerthError):
    """berth refused or failed a call: its problem+json, with what the hub was doing."""

    def __init__(self, doing, status, problem, retry_after=None):
        self.doing = doing
        self.status = status
        self.problem = problem
        self.code = problem.get('code') or f'http_{status}'
        self.detail = problem.get('detail') or problem.get('title') or ''
        self.request_id = problem.get('requestId')
        extras = {key: value for key, value in problem.items() if key not in ('type', 'title', 'status', 'detail', 'code', 'instance', 'requestId')}
        text = f'berth refused to {doing}: {status} {self.code}: {self.detail}'
        if extras:
            text += f' {json.dumps(extras, sort_keys=True)}'
        if self.request_id:
            text += f' (request {self.request_id})'
        retry = self.code in ('quota_exceeded', 'rate_limited', 'engine_unavailable') or status in (502, 503, 504)
        super().__init__(text, user_message(self), retry=retry)
        # A quota frees up only when servers stop: that is for the user to try again, not for a loop.
        self.transient = self.code in ('rate_limited', 'engine_unavailable') or (status == 503 and 'code' not in problem)
        self.retry_after = retry_after

    def __getattr__(self, member):
        # The code's own members (rule, quota, port…) as attributes, for whoever catches it.
        try:
            return self.__dict__['problem'][member]
        except KeyError:
            raise AttributeError(member) from None


def user_message(problem):
    """What the user is told on the spawn page: what happened, and who can do something about it."""
    code, detail = problem.code, problem.detail
    admin = 'the hub\'s administrator'
    if code == 'quota_exceeded':
        limit, used, quota = problem.problem.get('limit', 'containers'), problem.problem.get('used'), problem.problem.get('quota')
        held = f' ({used} of {quota} in use)' if used is not None and quota is not None else ''
        return f'The hub has reached its berth quota of {limit}{held}. Try again once other servers have stopped, or ask {admin} to raise it.'
    if code == 'policy_denied':
        return f'berth\'s policy does not allow this server: {detail}. Ask {admin}.'
    if code == 'port_conflict':
        # The holder may be another user's server: that stays in the hub's log.
        return f'The host port this server needs is taken. Ask {admin} (the hub\'s log has the details).'
    if code == 'name_conflict':
        return f'A container by this server\'s name exists already and is not this server\'s. Ask {admin} (the hub\'s log has the details).'
    if code in ('image_not_found', 'pull_failed', 'pull_cancelled'):
        return f'The server\'s image could not be pulled: {detail}.'
    if code in ('unauthorized', 'forbidden'):
        return f'berth refused the hub\'s credentials. Ask {admin} to check the hub\'s berth token.'
    if code in ('engine_unavailable', 'rate_limited') or problem.status in (502, 503, 504):
        return 'berth is busy or cannot reach its engine right now. Try again in a moment.'
    if code in ('not_supported', 'validation_failed', 'gpu_unavailable', 'placement_failed', 'placement_timeout'):
        return f'berth cannot run this server as the hub asked: {detail}. Ask {admin}.'
    return f'berth could not start the server ({problem.status} {code}). Ask {admin} (the hub\'s log has the details).'


class Berth:
    """berth at `url`, called with `token`; each call takes `timeout` seconds at most unless it says otherwise."""

    def __init__(self, url, token, timeout=60.0):
        self.url = url.rstrip('/')
        self.token = token
        self.timeout = timeout

    def _request(self, method, path, query, body, timeout, accept, streaming_callback=None):
        target = self.url + path + (f'?{urlencode(query)}' if query else '')
        headers = {'Authorization': f'Bearer {self.token}', 'Accept': f'{accept}, {PROBLEM_JSON}'}
        if body is None and method == 'POST':
            # tornado gives a POST without a body the form content type, which berth refuses (415): an
            # empty JSON object says "nothing" in the one type berth reads.
            body = {}
        if body is not None:
            headers['Content-Type'] = 'application/json'
        return HTTPRequest(target, method=method, headers=headers, body=None if body is None else json.dumps(body),
                           request_timeout=timeout or self.timeout, connect_timeout=min(timeout or self.timeout, 20),
                           allow_nonstandard_methods=True, streaming_callback=streaming_callback, follow_redirects=False)

    async def _fetch(self, request):
        # No HTTP answer at all: refused, reset, timed out, name not found. tornado raises these even
        # with raise_error=False (as OSError, or its code 599), or answers them with code 599.
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPClientError as error:
            if error.code != 599:
                raise
            raise BerthUnreachable(self.url, str(error)) from error
        except (OSError, StreamClosedError) as error:
            raise BerthUnreachable(self.url, str(error) or type(error).__name__) from error
        if response.code == 599:
            raise BerthUnreachable(self.url, str(response.error))
        return response

    async def call(self, method, path, doing, query=None, body=None, timeout=None):
        """The JSON of a 2xx answer (None for 204); a BerthProblem for anything else."""
        response = await self._fetch(self._request(method, path, query, body, timeout, 'application/json'))
        if 200 <= response.code < 300:
            return json.loads(response.body) if response.body else None
        raise problem_of(doing, response.code, response.body, response.headers.get('Retry-After'))

    async def pull(self, image, on_progress, doing, timeout=None):
        """Pulls `image`, calling on_progress(event) for each progress event; the pulled image, or a BerthProblem."""
        buffered = bytearray()
        outcome = {}

        def take(chunk):
            buffered.extend(chunk)
            # One JSON object a line; the last line may not be whole yet.
            *lines, rest = bytes(buffered).split(b'\n')
            buffered[:] = rest
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    outcome['last'] = event
                    if event.get('type') == 'progress':
                        on_progress(event)

        request = self._request('POST', '/v1/images/pull', None, {'image': image}, timeout, 'application/x-ndjson', streaming_callback=take)
        response = await self._fetch(request)
        if response.code != 200:
            # Refused before the pull began: the body streamed here is the problem.
            raise problem_of(doing, response.code, bytes(buffered), response.headers.get('Retry-After'))
        if buffered.strip():
            take(b'\n')
        last = outcome.get('last') or {}
        if last.get('type') == 'pulled':
            return last.get('image')
        if last.get('type') == 'error':
            problem = last.get('problem') or {}
            raise BerthProblem(doing, problem.get('status', 502), problem)
        raise BerthProblem(doing, 502, {'code': 'pull_failed', 'detail': 'the pull stream ended without its outcome'})


def problem_of(doing, status, body, retry_after=None):
    """berth's problem+json from a body, or a stand-in for an answer that is not one (a proxy's error page)."""
    seconds = int(retry_after) if retry_after is not None and retry_after.strip().isdigit() else None
    try:
        problem = json.loads(body)
        if isinstance(problem, dict):
            return BerthProblem(doing, status, problem, seconds)
    except ValueError:
        pass
    text = (body or b'').decode('utf-8', 'replace').strip()[:200]
    return BerthProblem(doing, status, {'detail': f'an answer that is not berth\'s problem+json: {text!r}'}, seconds)


def segment(value):
    """One path segment, escaped (ids and names are plain, but nothing else should reach a path)."""
    return quote(value, safe='')
