import { Agent } from 'undici';
import { readRegularFile } from '../../util/read-regular-file.js';

/** A cluster CA bundle larger than this is not one. */
const MAX_CA_BYTES = 1024 * 1024;

export interface ApiServerDispatcherOptions {
  /** The API server's CA bundle (in a pod, the ServiceAccount mount's ca.crt). */
  readonly caFile: string;
  readonly requestTimeoutMs: number;
  readonly connections: number;
  /** Makes the caller's own error from a fixed text (the file's path, never its content). */
  readonly fail: (text: string) => Error;
}

/**
 * The HTTPS connections to the Kubernetes API server, trusting exactly the cluster's CA. The CA
 * file is re-read on each use, so a rotated cluster CA is picked up; a changed CA gets new
 * connections and the old ones are closed. Used by the TokenRequest source and by the webhook's
 * ServiceAccount reader.
 */
export class ApiServerDispatcher {
  readonly #options: ApiServerDispatcherOptions;
  #agent: { readonly ca: string; readonly dispatcher: Agent } | undefined;
  #closed = false;

  constructor(options: ApiServerDispatcherOptions) {
    this.#options = options;
  }

  /** The connections for the CA the file holds now. */
  async get(): Promise<Agent> {
    const { caFile, requestTimeoutMs, connections, fail } = this.#options;
    let data: Buffer | undefined;
    try {
      data = await readRegularFile(caFile, MAX_CA_BYTES);
    } catch (err) {
      throw fail(`cannot read the API server CA ${caFile} (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`);
    }
    const ca = data?.toString('utf8');
    if (ca === undefined || !ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw fail(`cannot use the API server CA ${caFile}: it is not a PEM certificate bundle${ca === undefined ? ` (larger than ${MAX_CA_BYTES} bytes)` : ''}`);
    }
    if (this.#closed) throw fail('was closed');
    if (this.#agent?.ca === ca) return this.#agent.dispatcher;
    const previous = this.#agent;
    const dispatcher = new Agent({ connect: { ca, timeout: requestTimeoutMs }, headersTimeout: requestTimeoutMs, bodyTimeout: requestTimeoutMs, connections });
    this.#agent = { ca, dispatcher };
    if (previous) void previous.dispatcher.close();
    return dispatcher;
  }

  /** Ends the connections; a request still under way fails. */
  async close(): Promise<void> {
    this.#closed = true;
    const agent = this.#agent;
    this.#agent = undefined;
    if (agent) await agent.dispatcher.destroy();
  }
}
