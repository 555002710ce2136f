import { CrosscredError } from '../core/errors.js';

/**
 * Giving up root once the listeners are bound. The node agent listens on port 80 of the node's own
 * network (hostNetwork), and Kubernetes gives a non-root container no way to bind it: it never sets
 * ambient capabilities (kubernetes#56374), and `allowPrivilegeEscalation: false` disables file
 * capabilities. So the container starts as uid 0 holding only NET_BIND_SERVICE, SETUID and SETGID,
 * binds, and then switches to an unprivileged user here; the kernel clears every capability at
 * that switch, so what answers pods is an ordinary user with none.
 */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

const NUMERIC_ID = /^(0|[1-9]\d{0,9})$/;

/** `UID:GID`, both numeric (a container has no user database to resolve names against). */
export function parseRunAs(text: string): RunAs | { readonly problem: string } {
  const [uid, gid, ...rest] = text.split(':');
  if (uid === undefined || gid === undefined || rest.length > 0 || !NUMERIC_ID.test(uid) || !NUMERIC_ID.test(gid))
    return { problem: 'must be UID:GID, two numbers (for example 10001:10001)' };
  const ids = { uid: Number(uid), gid: Number(gid) };
  if (ids.uid === 0 || ids.gid === 0) return { problem: 'must name a user and group other than root (0)' };
  if (ids.uid > 0xfffffffe || ids.gid > 0xfffffffe) return { problem: 'is out of range' };
  return ids;
}

/** What a process needs of the kernel to switch users; absent on platforms without them (Windows). */
interface PosixIdentity {
  getuid(): number;
  geteuid(): number;
  getgid(): number;
  getegid(): number;
  getgroups(): number[];
  setgroups(groups: number[]): void;
  setgid(id: number): void;
  setuid(id: number): void;
}

/**
 * Switches this process to `target` for good: supplementary groups first, then the group, then the
 * user (the other way round, the process would have lost the right to change its groups). Checks
 * the result rather than trusting the calls. Already running as `target`: nothing to do.
 */
export function dropPrivileges(target: RunAs, posix: PosixIdentity | undefined = posixIdentity()): void {
  if (posix === undefined) throw new CrosscredError('PRIVILEGE_DROP_FAILED', '--run-as needs a POSIX system');
  if (
    posix.getuid() === target.uid &&
    posix.geteuid() === target.uid &&
    posix.getgid() === target.gid &&
    posix.getegid() === target.gid &&
    posix.getgroups().every((g) => g === target.gid)
  )
    return;
  try {
    posix.setgroups([target.gid]);
    posix.setgid(target.gid);
    posix.setuid(target.uid);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new CrosscredError(
      'PRIVILEGE_DROP_FAILED',
      `cannot switch to uid ${target.uid} and gid ${target.gid} (${code}); running as uid ${posix.getuid()}, which needs the SETUID and SETGID capabilities`,
    );
  }
  if (posix.getuid() !== target.uid || posix.geteuid() !== target.uid || posix.getgid() !== target.gid || posix.getegid() !== target.gid)
    throw new CrosscredError('PRIVILEGE_DROP_FAILED', `the switch to uid ${target.uid} and gid ${target.gid} did not take effect`);
}

function posixIdentity(): PosixIdentity | undefined {
  const p = process;
  const { getuid, geteuid, getgid, getegid, getgroups, setgroups, setgid, setuid } = p;
  if (!getuid || !geteuid || !getgid || !getegid || !getgroups || !setgroups || !setgid || !setuid) return undefined;
  return {
    getuid: () => getuid.call(p),
    geteuid: () => geteuid.call(p),
    getgid: () => getgid.call(p),
    getegid: () => getegid.call(p),
    getgroups: () => getgroups.call(p),
    setgroups: (groups) => setgroups.call(p, groups),
    setgid: (id) => setgid.call(p, id),
    setuid: (id) => setuid.call(p, id),
  };
}
