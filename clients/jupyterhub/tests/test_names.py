"""Container names: valid on every berth backend (a DNS label) and never shared by two users' servers."""
import re

from berthspawner.names import container_name, escape

DNS_LABEL = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')
TEMPLATE = 'jupyter-{username}{servername}'


def test_plain_names_stay_as_they_are():
    assert container_name(TEMPLATE, 'ada', '') == 'jupyter-ada'
    assert container_name(TEMPLATE, 'ada', 'gpu') == 'jupyter-ada--gpu'


def test_everything_else_is_escaped_per_utf8_byte():
    assert escape('Ada.Lovelace@x.org') == '-41da-2e-4covelace-40x-2eorg'
    assert escape('zoë') == 'zo-c3-ab'
    assert escape('a-b') == 'a-2db'
    assert escape('a b/c') == 'a-20b-2fc'


def test_two_users_or_servers_never_share_a_name():
    pairs = [('a', '2d'), ('a-', ''), ('a', ''), ('a', '-'), ('a-2d', ''), ('a--', ''), ('A', ''), ('a', 'A'), ('-41', ''),
             ('ada', 'gpu'), ('ada--gpu', ''), ('ada-', '-gpu'), ('ada', '-gpu'), ('', 'x'), ('x', '')]
    names = [container_name(TEMPLATE, user, server) for user, server in pairs]
    assert len(set(names)) == len(pairs), dict(zip(names, pairs))


def test_every_name_is_a_dns_label_even_long_ones():
    users = ['ada', 'x' * 200, 'é' * 40, 'a.b@c' * 30, '-' * 70, 'ümlaut-user@example.org']
    for user in users:
        for server in ['', 'gpu', 'y' * 90]:
            name = container_name(TEMPLATE, user, server)
            assert DNS_LABEL.match(name), name


def test_long_names_that_start_alike_stay_apart():
    first = container_name(TEMPLATE, 'x' * 100 + 'a', '')
    second = container_name(TEMPLATE, 'x' * 100 + 'b', '')
    assert first != second
    assert len(first) == len(second) == 63
