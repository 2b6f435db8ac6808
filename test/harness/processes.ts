/**
 * What processes are left: read from /proc (Linux; elsewhere the lists are empty), so a test file,
 * a vitest run or the CI runner can name and end what outlived it.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'

export interface ProcessInfo {
  pid: number
  ppid: number
  /** Process group. */
  pgid: number
  /** The command line, credentials in URLs masked. */
  command: string
}

/**
 * Set by the CI runner and vitest's global setup on every process they start; inherited by every
 * descendant that keeps its parent's environment, even one that left the process group or was
 * re-parented when its parent died.
 */
export const RUN_MARKER_ENV = 'WC_TEST_RUN'
// The tests' own variables start with WC_TEST_, never WARMCONN_: optionsFromEnv refuses an unknown
// WARMCONN_ variable, and the example functions read process.env in-process.

/** Whether a process exists (EPERM: it exists, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Every process on the machine (zombies and kernel threads left out). */
export function listProcesses(): ProcessInfo[] {
  let names: string[]
  try {
    names = readdirSync('/proc')
  } catch {
    return []
  }
  const out: ProcessInfo[] = []
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const [state, ppid, pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (state === 'Z') continue
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (argv === '') continue // kernel thread
      out.push({ pid: Number(name), ppid: Number(ppid), pgid: Number(pgid), command: mask(argv.split('\0').join(' ').trim()) })
    } catch {
      // it exited while we looked
    }
  }
  return out
}

/** Every process below `pid` (children, their children, ...). */
export function descendantsOf(pid: number, all = listProcesses()): ProcessInfo[] {
  const byParent = new Map<number, ProcessInfo[]>()
  for (const p of all) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p])
  const out: ProcessInfo[] = []
  const walk = (parent: number): void => {
    for (const child of byParent.get(parent) ?? []) {
      out.push(child)
      walk(child.pid)
    }
  }
  walk(pid)
  return out
}

/** Processes whose environment has RUN_MARKER_ENV=`marker` (readable for another user's processes only as root). */
export function markedWith(marker: string, all = listProcesses()): ProcessInfo[] {
  const needle = `${RUN_MARKER_ENV}=${marker}`
  return all.filter((p) => {
    try {
      return readFileSync(`/proc/${p.pid}/environ`, 'utf8').split('\0').includes(needle)
    } catch {
      return false
    }
  })
}

/**
 * esbuild's service process: started by esbuild's JS API (vite, the bundling harnesses) and kept
 * for the life of its parent, which it follows out when its stdin closes. Not a leak.
 */
export function isEsbuildService(p: ProcessInfo): boolean {
  return /\besbuild\b.*--service=/.test(p.command)
}

/** SIGKILLs each process (and ignores those already gone). */
export function killAll(processes: ProcessInfo[]): void {
  for (const p of processes) {
    try {
      process.kill(p.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

/** One line per process: pid and command line, shortened. */
export function describeProcesses(processes: ProcessInfo[]): string {
  return processes.map((p) => `  ${p.pid} ${p.command.length > 200 ? `${p.command.slice(0, 200)}...` : p.command}`).join('\n')
}

/** Masks user:password@ in URLs and the test password wherever it appears. */
function mask(text: string): string {
  const masked = text.replace(/(\/\/[^/:@\s]*):[^@\s]*@/g, '$1:***@')
  const password = process.env.WC_TEST_PASSWORD
  return password ? masked.replaceAll(password, '***') : masked
}
