// The layers of docs/architecture.md, checked on the source: every relative import of every file in
// kernels/, protocols/, simulations/, node/ and bin/ is read (static imports and re-exports, type
// imports included, and dynamic import() calls) and must point into a layer its own layer may use.
// bench/ and test/ drive every layer and are not checked.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** The layers each layer may import from (besides itself). */
const ALLOWED: Record<string, readonly string[]> = {
  kernels: [],
  protocols: ['kernels'],
  simulations: ['protocols', 'kernels'],
  node: ['simulations', 'protocols', 'kernels'],
  bin: ['node'],
}

const SOURCE = /\.(ts|js|mjs)$/
/** Folders of dependencies, build output and scratch files: never the repository's own source. */
const SKIPPED_FOLDERS = new Set(['node_modules', '.git', 'dist', '.tmp'])

/** The files under `folder` whose path (relative to the repository root) `wanted` accepts. */
function filesUnder(folder: string, wanted: (path: string) => boolean): string[] {
  return readdirSync(join(ROOT, folder), { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name)
    if (entry.isDirectory()) return SKIPPED_FOLDERS.has(entry.name) ? [] : filesUnder(path, wanted)
    return entry.isFile() && wanted(path) ? [path] : []
  })
}

/** The source files under `folder`, relative to the repository root. */
function sourceFiles(folder: string): string[] {
  return filesUnder(folder, (path) => SOURCE.test(path))
}

// `import ... from '...'` and `export ... from '...'` at the start of a line (over several lines),
// `import '...'`, and `import('...')`
const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm,
  /^\s*import\s*['"]([^'"]+)['"]/gm,
  /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
]

/** The module specifiers a source text imports. */
function importsOf(source: string): string[] {
  return IMPORT_PATTERNS.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1]))
}

/** The top-level folder a relative specifier in `file` points into. */
function layerOf(file: string, specifier: string): string {
  return relative(ROOT, resolve(ROOT, dirname(file), specifier)).split('/')[0]
}

function violations(layer: string): string[] {
  const found: string[] = []
  for (const file of sourceFiles(layer)) {
    for (const specifier of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
      if (!specifier.startsWith('.')) continue
      const target = layerOf(file, specifier)
      if (target !== layer && !ALLOWED[layer].includes(target)) found.push(`${file} imports ${specifier}`)
    }
  }
  return found
}

describe('layers (docs/architecture.md)', () => {
  it('reads imports in every form the sources use', () => {
    const source = [
      "import { a } from './a.js'",
      'import type {',
      '  B,',
      "} from '../b.js'",
      "export * from './c.js'",
      "import './d.js'",
      "const e = await import('./e.js')",
      "// import { f } from './f.js' (a comment line is not an import)",
    ].join('\n')
    expect(importsOf(source)).toEqual(['./a.js', '../b.js', './c.js', './d.js', './e.js'])
  })

  it('finds the imports of a real module', () => {
    const runner = readFileSync(join(ROOT, 'protocols/raft/runner.ts'), 'utf8')
    expect(importsOf(runner)).toContain('./node.js')
  })

  for (const layer of Object.keys(ALLOWED)) {
    const allowed = ALLOWED[layer].length > 0 ? ALLOWED[layer].join(', ') : 'nothing else'
    it(`${layer}/ imports only from ${allowed}`, () => {
      expect(sourceFiles(layer).length).toBeGreaterThan(0)
      expect(violations(layer)).toEqual([])
    })
  }
})

// biome's formatter keeps code within its lineWidth but leaves comments and long literals as written,
// so the width is checked here on every TypeScript file it formats: all but the dependencies, build
// output and the generated protocols/wire/*.ts (the exclusions of biome.json's files.includes)
const LINE_WIDTH: number = JSON.parse(readFileSync(join(ROOT, 'biome.json'), 'utf8')).formatter.lineWidth

/** The .ts files of the repository that biome formats, relative to its root. */
function formattedTypeScript(): string[] {
  return filesUnder('.', (path) => path.endsWith('.ts') && dirname(path) !== join('protocols', 'wire'))
}

describe(`line width (biome.json: ${LINE_WIDTH})`, () => {
  it('holds on every line of every formatted TypeScript file, comments and literals included', () => {
    const files = formattedTypeScript()
    expect(files).toContain(join('protocols', 'raft', 'raft.ts'))
    expect(files).not.toContain(join('protocols', 'wire', 'raft.ts'))
    const over = files.flatMap((file) =>
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .flatMap((line, i) =>
          [...line].length > LINE_WIDTH ? [`${file}:${i + 1} (${[...line].length})`] : [],
        ),
    )
    expect(over, `lines over ${LINE_WIDTH} characters:\n${over.join('\n')}`).toEqual([])
  })
})
