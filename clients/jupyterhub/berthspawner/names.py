"""Container names from JupyterHub user and server names, valid on every berth backend.

A username may hold any character (an e-mail address, a name with accents) while the strictest backend,
Kubernetes, takes only a DNS label: lower-case letters, digits and "-", 63 at most. The escaping is
one-to-one, so two users never share a name: everything but [a-z0-9] becomes "-" and two hex digits per
UTF-8 byte ("-" itself too), so an escaped name never holds "--" and never ends in "-". A named server is
appended after "--", which no escaped username contains. A template should start with a letter
(the default, "jupyter-{username}{servername}", does): an escaped name may start with "-".
"""
import hashlib
import re

MAX_LENGTH = 63
_SAFE = re.compile(r'[a-z0-9]')


def escape(value):
    """`value` with every character but a-z and 0-9 written as -XX per UTF-8 byte."""
    return ''.join(char if _SAFE.fullmatch(char) else ''.join(f'-{byte:02x}' for byte in char.encode('utf-8')) for char in value)


def container_name(template, username, servername):
    """The template filled with the escaped names; shortened with a digest of the whole when too long."""
    name = template.format(username=escape(username), servername=f'--{escape(servername)}' if servername else '')
    if len(name) <= MAX_LENGTH:
        return name
    # The digest keeps long names apart that share their first characters.
    digest = hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]
    head = name[:MAX_LENGTH - len(digest) - 1].rstrip('-')
    return f'{head}-{digest}'
