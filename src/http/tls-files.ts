import { type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import { CrosscredError } from '../core/errors.js';
import { privateFileProblem, readRegularFileChecked } from '../util/read-regular-file.js';

/**
 * A listener's TLS certificate and key, read from files (the issuer's `tls`, the webhook's
 * `--tls-cert-file`/`--tls-key-file`), and a watcher that reloads them when they change.
 */

/** A PEM chain or key is a few KiB; a bigger file is not one (and is never read whole). */
const MAX_TLS_FILE_BYTES = 256 * 1024;

export interface TlsPair {
  readonly key: Buffer;
  readonly cert: Buffer;
}

/**
 * One TLS file, read as a regular file of bounded size. With `isPrivate`, the key must pass the
 * signing keys' check (owned by crosscred's user or root, closed to group and others), made on the
 * fstat of the descriptor it is read from, before a byte of it is read.
 */
export async function readTlsFile(what: 'certificate' | 'key', path: string, isPrivate: boolean): Promise<Buffer> {
  const refuse = (why: string) => new CrosscredError('CONFIG_INVALID', `tls: ${why}`);
  let bytes: Buffer | undefined;
  try {
    ({ bytes } = await readRegularFileChecked(path, MAX_TLS_FILE_BYTES, (info) => {
      const problem = isPrivate ? privateFileProblem(path, info) : undefined;
      if (problem !== undefined) throw refuse(`the key file ${problem}`);
    }));
  } catch (err) {
    if (err instanceof CrosscredError) throw err;
    throw refuse(`cannot read the ${what} file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (bytes === undefined) throw refuse(`the ${what} file ${path} is larger than ${MAX_TLS_FILE_BYTES} bytes`);
  return bytes;
}

/**
 * Both files, checked to make a usable pair (a key that does not match the certificate, or a file
 * caught half-written, is refused here rather than breaking every handshake after a reload).
 */
export async function readTlsPair(certFile: string, keyFile: string, options: { privateKey: boolean }): Promise<TlsPair> {
  const [cert, key] = await Promise.all([readTlsFile('certificate', certFile, false), readTlsFile('key', keyFile, options.privateKey)]);
  try {
    createSecureContext({ key, cert });
  } catch (err) {
    throw new CrosscredError(
      'CONFIG_INVALID',
      `tls: ${certFile} and ${keyFile} are not a matching PEM certificate and key (${(err as { code?: string }).code ?? 'error'})`,
    );
  }
  return { key, cert };
}

export interface TlsFileWatcherOptions {
  readonly certFile: string;
  readonly keyFile: string;
  readonly privateKey: boolean;
  /** The pair now served; a change is a pair whose bytes differ from it. */
  readonly current: TlsPair;
  /** Called with each new pair; should install it (https.Server#setSecureContext). */
  readonly onChange: (pair: TlsPair) => void;
  /** Called when changed files do not make a usable pair; the served pair stays. */
  readonly onError: (err: unknown) => void;
  /** Files are re-read at least this often, whatever the watches say, in ms. */
  readonly pollIntervalMs: number;
}

/** Events come in bursts (a Secret update renames a link and deletes a directory): one read after they settle, in ms. */
const SETTLE_MS = 100;

/**
 * Reloads a certificate and key when their files change. A Kubernetes Secret volume updates by
 * writing a new timestamped directory and renaming the `..data` symlink onto it: `tls.crt` is a
 * symlink through `..data` and never itself changes, so the files' own watches would see nothing.
 * The directories holding the files are watched instead (a rename in them is an event), and the
 * files are re-read every `pollIntervalMs` as well, for file systems without inotify and for
 * events lost. Only a pair whose bytes changed and that makes a usable pair is installed.
 */
export class TlsFileWatcher {
  readonly #options: TlsFileWatcherOptions;
  readonly #watchers: FSWatcher[] = [];
  readonly #poll: NodeJS.Timeout;
  #current: TlsPair;
  #settle: NodeJS.Timeout | undefined;
  #reading: Promise<void> = Promise.resolve();
  #closed = false;
  /** Reloads installed since start. */
  reloads = 0;

  constructor(options: TlsFileWatcherOptions) {
    this.#options = options;
    this.#current = options.current;
    for (const dir of new Set([dirname(options.certFile), dirname(options.keyFile)])) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.#soon());
        watcher.on('error', () => watcher.close());
        this.#watchers.push(watcher);
      } catch {
        // No watch here (no inotify, too many watches): the poll below still finds changes.
      }
    }
    this.#poll = setInterval(() => this.check(), options.pollIntervalMs);
    this.#poll.unref();
  }

  /** Re-reads both files now; resolves once the read (and any reload) is done. */
  check(): Promise<void> {
    this.#reading = this.#reading.then(() => this.#read());
    return this.#reading;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#poll);
    if (this.#settle) clearTimeout(this.#settle);
    for (const watcher of this.#watchers) watcher.close();
  }

  #soon(): void {
    if (this.#closed) return;
    if (this.#settle) clearTimeout(this.#settle);
    this.#settle = setTimeout(() => void this.check(), SETTLE_MS);
    this.#settle.unref();
  }

  async #read(): Promise<void> {
    if (this.#closed) return;
    const { certFile, keyFile, privateKey } = this.#options;
    let pair: TlsPair;
    try {
      pair = await readTlsPair(certFile, keyFile, { privateKey });
    } catch (err) {
      // A Secret update is atomic, but a hand edit may be caught between the two files: the next
      // event or poll reads the pair again.
      if (!this.#closed) this.#options.onError(err);
      return;
    }
    if (this.#closed || (pair.cert.equals(this.#current.cert) && pair.key.equals(this.#current.key))) return;
    this.#current = pair;
    this.reloads++;
    this.#options.onChange(pair);
  }
}
