import { problem } from './checks.js';
import type { StsConnectionConfig } from './config.js';
import { type Layers, pickSetting, type Resolved, type Sourced } from './layers.js';

/** The proxies section: the egress proxy for STS, from the environment only (see the table for the spellings read). */
export type ProxySettings = Pick<StsConnectionConfig, 'httpsProxy' | 'httpProxy' | 'noProxy'>;

export function resolveProxies(layers: Layers): Resolved<ProxySettings> {
  const httpsProxy = pickSetting('httpsProxy', layers);
  const httpProxy = pickSetting('httpProxy', layers);
  const noProxy = pickSetting('noProxy', layers);
  const problems = [httpsProxy, httpProxy].flatMap((proxy) => proxyProblems(proxy));
  return {
    value: {
      ...(httpsProxy ? { httpsProxy: withScheme(httpsProxy.value) } : {}),
      ...(httpProxy ? { httpProxy: withScheme(httpProxy.value) } : {}),
      ...(noProxy ? { noProxy: noProxy.value } : {}),
    },
    problems,
  };
}

/** Named by the variable; the value is never repeated, as it may carry a password. */
function proxyProblems(proxy: Sourced<string> | undefined): string[] {
  const bad = proxy && checkProxy(proxy.value);
  return bad ? [problem(proxy.origin.replace('env ', ''), proxy.origin, `${bad} (the value is not shown: it may hold a password)`)] : [];
}

/** Like curl, a proxy given without a scheme is taken as http://. */
export function withScheme(proxy: string): string {
  return proxy.includes('://') ? proxy : `http://${proxy}`;
}

export function checkProxy(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(withScheme(value));
  } catch {
    return 'is not a URL';
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return undefined;
  return `uses ${url.protocol.replace(':', '')}; only http:// and https:// proxies are supported`;
}
