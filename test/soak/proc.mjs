// What the soak reads about the daemon from outside: /proc for memory, file descriptors and
// sockets, and the admin listener's Prometheus text. Linux only, like the soak.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** VmRSS and VmHWM (peak RSS) of a process, in kB. */
export function memoryKb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

/** Open file descriptors of a process, and the inodes of those that are sockets. */
export function fds(pid) {
  const names = readdirSync(`/proc/${pid}/fd`);
  const socketInodes = new Set();
  for (const n of names) {
    let target;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${n}`);
    } catch {
      continue; // closed between readdir and readlink
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) socketInodes.add(m[1]);
  }
  return { count: names.length, socketInodes };
}

const TCP_LISTEN = '0A';
const TCP_ESTABLISHED = '01';

/**
 * The TCP sockets a process holds, from /proc/<pid>/net/tcp{,6} joined with its fds by inode:
 * connections on each of `ports` (the daemon's own listeners; the listening socket itself is not
 * counted), the rest by remote port (its STS client), and how many of them are established.
 */
export function tcpSockets(pid, socketInodes, ports) {
  const byLocalPort = Object.fromEntries(ports.map((p) => [p, 0]));
  const byRemotePort = {};
  let established = 0;
  for (const file of ['tcp', 'tcp6']) {
    let text;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !socketInodes.has(f[9])) continue;
      const state = f[3];
      if (state === TCP_LISTEN) continue;
      if (state === TCP_ESTABLISHED) established++;
      const local = parseInt(f[1].split(':').pop(), 16);
      const remote = parseInt(f[2].split(':').pop(), 16);
      if (local in byLocalPort) byLocalPort[local]++;
      else byRemotePort[remote] = (byRemotePort[remote] ?? 0) + 1;
    }
  }
  return { byLocalPort, byRemotePort, established };
}

/**
 * Established connections accepted on `port` by whoever listens there, straight from
 * /proc/net/tcp: a socket still in the accept queue has inode 0, so only connections the
 * process has accepted are counted. Cheap enough to poll while thousands are open.
 */
export function acceptedOn(port) {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== TCP_ESTABLISHED || f[9] === '0') continue;
      if (parseInt(f[1].split(':').pop(), 16) === port) n++;
    }
  }
  return n;
}

/**
 * Prometheus text → { 'name{labels}': value }, plus sum(name, filter) over a metric's series.
 * Only what the soak reads; no escaping subtleties (crosscred's labels are plain).
 */
export function parseMetrics(text) {
  const series = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]] = l[2];
    series.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return {
    series,
    get(name, labels = {}) {
      const s = series.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
      return s?.value;
    },
    sum(name, filter = () => true) {
      return series.filter((x) => x.name === name && filter(x.labels)).reduce((a, x) => a + x.value, 0);
    },
  };
}

/**
 * CPU time of a process's main thread (the one running the event loop) and the time it spent
 * runnable but waiting for a CPU, both in ms since it started (/proc/<pid>/schedstat). The wait
 * tells a stall the machine caused (other processes on the cores) from one the daemon caused.
 */
export function schedMs(pid) {
  const [runNs, waitNs] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  return { runMs: runNs / 1e6, waitMs: waitNs / 1e6 };
}
