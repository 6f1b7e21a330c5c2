// docker cp: paths in a container, and the archives and files that go in and out.
import { Type } from 'typebox'
import { replicaField } from './common.ts'

const path = (description: string) => Type.String({ minLength: 1, maxLength: 4096, description })

export const ArchiveQuery = Type.Object({
  path: path('Absolute path in the container: a file, or a directory and everything below it.'),
  replica: replicaField
}, { additionalProperties: false })

export const PutArchiveQuery = Type.Object({
  path: path('Absolute path of the directory in the container to unpack the archive in; it must exist.'),
  replica: replicaField
}, { additionalProperties: false })

export const PutFileQuery = Type.Object({
  path: path('Absolute path in the container of the file to write; its directory must exist. An existing file is replaced.'),
  mode: Type.Optional(Type.String({ pattern: '^0?[0-7]{3}$', default: '0644', description: 'Its permissions, in octal.' })),
  replica: replicaField
}, { additionalProperties: false })
