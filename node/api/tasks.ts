// Control API routes for tasks: submit, list, show, cancel, result, and the inference worker's
// counters. The daemon adds them to its routes; each maps a named error of the task service to an
// HTTP status with its one-sentence message.

import { parseTaskRequest, TaskSpecError } from '../../protocols/tasks/spec.js'
import { TaskRefusedError } from '../tasks/coordinator.js'
import { DataFileError } from '../tasks/datasets.js'
import type { TaskService } from '../tasks/service.js'
import { ApiError, type ApiRoute } from './server.js'

function translate(error: unknown): never {
  if (error instanceof TaskSpecError || error instanceof DataFileError) throw new ApiError(400, error.message)
  if (error instanceof TaskRefusedError) throw new ApiError(error.status, error.message)
  throw error
}

function idOf(url: URL, body?: unknown): string {
  const id = url.searchParams.get('id') ?? (body as { id?: unknown } | undefined)?.id
  if (typeof id !== 'string' || id.length === 0 || id.length > 200)
    throw new ApiError(400, 'expected a task id')
  return id
}

export function taskApiRoutes(tasksOf: () => TaskService): ApiRoute[] {
  return [
    {
      method: 'POST',
      path: '/v1/tasks',
      handle: async ({ body }) => {
        try {
          return await tasksOf().coordinator.submit(parseTaskRequest(body))
        } catch (error) {
          translate(error)
        }
      },
    },
    { method: 'GET', path: '/v1/tasks', handle: async () => ({ tasks: tasksOf().coordinator.list() }) },
    {
      method: 'GET',
      path: '/v1/task',
      handle: async ({ url }) => {
        try {
          return tasksOf().coordinator.get(idOf(url))
        } catch (error) {
          translate(error)
        }
      },
    },
    {
      method: 'POST',
      path: '/v1/task/cancel',
      handle: async ({ url, body }) => {
        try {
          return tasksOf().coordinator.cancel(idOf(url, body))
        } catch (error) {
          translate(error)
        }
      },
    },
    {
      method: 'GET',
      path: '/v1/task-topic',
      handle: async () => ({ peers: tasksOf().topicPeers() }),
    },
    {
      // this node's inference worker: what it refused by reason, served, has queued, and holds assigned
      method: 'GET',
      path: '/v1/inference',
      handle: async () => {
        const worker = tasksOf().inferWorker
        return {
          served: worker.served,
          queued: worker.queued,
          rejected: { ...worker.rejected },
          budgets: { ...worker.budgets.refused },
          assigned: worker.assignedTasks(),
        }
      },
    },
    {
      method: 'GET',
      path: '/v1/assignments',
      handle: async () => ({ assignments: await tasksOf().worker.assignments() }),
    },
  ]
}
