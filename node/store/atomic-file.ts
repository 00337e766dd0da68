import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { copyFile, lstat, mkdir, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'

/**
 * Writes `data` to `path` so that a crash at any moment leaves either the old file or the new one,
 * never a torn mix, and so that the new one is durable when the promise resolves: write a temp file
 * beside it, fsync it, rename over the target, fsync the folder. The temp file is created with `mode`
 * so a secret is never readable by others, even briefly. A failed write leaves no temp file. The
 * folder must exist (ensureDurableFolder creates one durably).
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
  await renameDurably(temporaryPath, path, folder)
}

/**
 * Copies the file `source` to `target` as writeFileAtomic writes: a temp file beside the target (the
 * copy streams, so a large model is never held in memory), fsynced, renamed over the target, the
 * folder fsynced. The rename replaces whatever `target` is, a symlink included: it never writes
 * through one.
 */
export async function copyFileAtomic(source: string, target: string, mode = 0o644): Promise<void> {
  const folder = dirname(target)
  const temporaryPath = temporaryPathFor(target)
  try {
    await copyFile(source, temporaryPath, constants.COPYFILE_EXCL)
    const handle = await open(temporaryPath, constants.O_RDWR)
    try {
      await handle.chmod(mode)
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch (error) {
    await rm(temporaryPath, { force: true })
    throw error
  }
  await renameDurably(temporaryPath, target, folder)
}

async function renameDurably(temporaryPath: string, path: string, folder: string): Promise<void> {
  try {
    await rename(temporaryPath, path)
  } catch (error) {
    await rm(temporaryPath, { force: true })
    throw error
  }
  await syncFolder(folder)
}

/**
 * Creates `folder` and any missing parents (with `mode`), durably: the folder that received each new
 * entry is fsynced, so a power cut cannot lose a folder whose files were fsynced into it.
 */
export async function ensureDurableFolder(folder: string, mode = 0o755): Promise<void> {
  const absolute = resolve(folder)
  const made = await mkdir(absolute, { recursive: true, mode })
  if (made === undefined) return
  const first = resolve(made)
  // every folder from the parent of the first one created down to `folder` gained an entry
  const created: string[] = []
  for (let path = absolute; path !== first && dirname(path) !== path; path = dirname(path)) created.push(path)
  created.push(first, dirname(first))
  for (const path of created.reverse()) await syncFolder(path)
}

/** Whether `path` is a symbolic link (false when it does not exist). */
export async function isSymbolicLink(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSymbolicLink()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/**
 * A fresh temp file name beside `path` (`.name.xxxx.tmp`), the form removeStaleTemporaryFiles() clears
 * after a crash.
 */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

/** Whether a file name is a temp file of writeFileAtomic or copyFileAtomic (`.name.xxxx.tmp`). */
export function isTemporaryName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp')
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
