// Writes openapi/openapi.yaml from the running app's routes (`npm run openapi`); test/openapi.test.ts
// fails when the committed file is stale.
import { writeFileSync } from 'node:fs'
import { renderOpenApi } from './openapi-document.ts'

const file = new URL('../openapi/openapi.yaml', import.meta.url)
writeFileSync(file, await renderOpenApi())
console.log(`wrote ${file.pathname}`)
