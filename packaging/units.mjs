import { readFileSync } from 'node:fs';

const SYSTEMD = new URL('../systemd/', import.meta.url);
const read = (name) => readFileSync(new URL(name, SYSTEMD), 'utf8');

/**
 * The packaged units, made from systemd/ (the one source, also the hand-install path): the same
 * text with the binary at /usr/bin/crosscred instead of /usr/local/bin/crosscred.
 */
export function packagedUnits() {
  const packaged = (text) => {
    const out = text.replaceAll('/usr/local/bin/crosscred', '/usr/bin/crosscred');
    if (/^[^#].*\/usr\/local\//m.test(out)) throw new Error('a packaged unit still runs something under /usr/local/');
    return out;
  };
  const dropIn = read('hardening-systemd-247.conf');
  return {
    'crosscred.service': packaged(read('crosscred.service')),
    'crosscred-issuer.service': packaged(read('crosscred-issuer.service')),
    'crosscred.service.d/hardening-systemd-247.conf': dropIn,
    'crosscred-issuer.service.d/hardening-systemd-247.conf': dropIn,
  };
}

/** The environment files, installed 0600 under /etc/crosscred/ as configuration that upgrades keep. */
export function envFiles() {
  return { 'crosscred.env': read('crosscred.env'), 'crosscred-issuer.env': read('crosscred-issuer.env') };
}
