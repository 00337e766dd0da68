// A worker_threads Worker running a module of this code base. Under tsx (the CLI, the tests) the
// caller is a .ts file and a new thread does not inherit tsx's loader: the thread registers tsx itself
// before importing the module's .ts file. From compiled output it runs the module's .js file directly.
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker, type WorkerOptions } from 'node:worker_threads'

/** A Worker running module `name` (a file name without its extension) beside `caller` (import.meta.url). */
export function startModuleWorker(caller: string, name: string, options: WorkerOptions = {}): Worker {
  if (caller.endsWith('.ts')) {
    const script = new URL(`./${name}.ts`, caller).href
    // require.resolve gives tsx's CommonJS entry; its ES module twin beside it is the one that
    // registers the loader for the importing thread
    const tsx = pathToFileURL(createRequire(fileURLToPath(caller)).resolve('tsx/esm/api')).href.replace(
      /\.cjs$/,
      '.mjs',
    )
    const code =
      `import(${JSON.stringify(tsx)}).then((m) => { m.register(); ` +
      `return import(${JSON.stringify(script)}) })`
    return new Worker(code, { ...options, eval: true })
  }
  return new Worker(new URL(`./${name}.js`, caller), options)
}
