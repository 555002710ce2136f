/** Exit codes of the `crosscred` command. */

/** A bad command line. */
export const EXIT_USAGE = 2;
/** sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 stops restarting a misconfigured unit. */
export const EXIT_CONFIG = 78;
