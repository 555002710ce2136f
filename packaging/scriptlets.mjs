/**
 * Install scripts shared by the .rpm and the .deb, written out because Debian's rpmbuild has no
 * systemd macros. They follow what those macros do: reload systemd after the unit files change,
 * enable and start nothing on install (the env file is a placeholder until edited, and the units
 * refuse it anyway), restart a running unit on upgrade (try-restart leaves a stopped one alone),
 * and stop and disable on erase, whose ExecStopPost removes net-setup's address and nftables rules.
 * Users are never deleted on erase (their uid may own files, such as issuer keys).
 */
const UNITS = 'crosscred.service crosscred-issuer.service';
// Only on a host booted with systemd (not in a chroot, an image build, or `rpm --root`).
const IF_SYSTEMD = '[ -d /run/systemd/system ]';

export const CREATE_USERS = `for u in crosscred crosscred-issuer; do
  getent group "$u" >/dev/null || groupadd --system "$u"
  getent passwd "$u" >/dev/null || useradd --system --gid "$u" --home-dir /nonexistent --no-create-home --shell /sbin/nologin --comment "$u daemon" "$u"
done`;

export const RELOAD = `if ${IF_SYSTEMD}; then systemctl daemon-reload >/dev/null 2>&1 || :; fi`;

export const STOP_AND_DISABLE = `if ${IF_SYSTEMD}; then systemctl disable --now ${UNITS} >/dev/null 2>&1 || :; fi`;

export const RESTART_IF_RUNNING = `if ${IF_SYSTEMD}; then systemctl try-restart ${UNITS} >/dev/null 2>&1 || :; fi`;
