import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * Writes `data` to `path` so that a crash at any moment leaves either the old file or the new one,
 * never a torn mix: write a temp file beside it, fsync it, rename over the target, fsync the folder.
 * The temp file is created with `mode` so a secret is never readable by others, even briefly.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const folder = dirname(path)
  const temporaryPath = temporaryPathFor(path)
  const handle = await open(temporaryPath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } catch (error) {
    await handle.close()
    await rm(temporaryPath, { force: true })
    throw error
  }
  await handle.close()
  try {
    await rename(temporaryPath, path)
  } catch (error) {
    await rm(temporaryPath, { force: true })
    throw error
  }
  await syncFolder(folder)
}

/**
 * A fresh temp file name beside `path` (`.name.xxxx.tmp`), the form removeStaleTemporaryFiles() clears
 * after a crash.
 */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

/** fsync a folder so a rename or a new file in it survives a power cut */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, constants.O_RDONLY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
