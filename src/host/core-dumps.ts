import { readFile } from 'node:fs/promises';

/**
 * Whether this process may write a core dump. A dump of crosscred holds what it caches (AWS
 * credentials, the web-identity JWT, the issuer's signing key), so the systemd units set
 * LimitCORE=0. A container gets whatever its runtime gives (containerd's own unit often says
 * LimitCORE=infinity), and Node has no call to lower the limit itself: the daemons read it at start
 * and warn, naming the runtime's knob.
 */
export interface CoreDumpLimit {
  /** The soft limit in bytes (what applies), or `unlimited`. */
  readonly soft: number | 'unlimited';
}

/** The limit from /proc/self/limits; undefined where it cannot be read (not Linux). */
export async function coreDumpLimit(limitsPath = '/proc/self/limits'): Promise<CoreDumpLimit | undefined> {
  let text: string;
  try {
    text = await readFile(limitsPath, 'utf8');
  } catch {
    return undefined;
  }
  // "Max core file size        0                    unlimited            bytes"
  const soft = /^Max core file size\s+(\S+)\s+\S+\s+bytes\s*$/m.exec(text)?.[1];
  if (soft === undefined) return undefined;
  if (soft === 'unlimited') return { soft };
  return /^\d{1,20}$/.test(soft) ? { soft: Number(soft) } : undefined;
}

/** The warning to log when dumps are allowed, or undefined when they are not (or cannot be known). */
export async function coreDumpWarning(limitsPath?: string): Promise<string | undefined> {
  const limit = await coreDumpLimit(limitsPath);
  if (limit === undefined || limit.soft === 0) return undefined;
  return (
    `core dumps are allowed (RLIMIT_CORE ${limit.soft}): a crash would write credentials and tokens to disk. ` +
    'Set LimitCORE=0 (systemd), --ulimit core=0 (docker, podman), or LimitCORE=0 on the container runtime that starts pods (Kubernetes has no per-pod setting)'
  );
}
