/** Every word a person reads from `--help`. Keep it in step with README.md's configuration table. */

export const MAIN_HELP = `crosscred: trade a workload's OIDC token for AWS credentials and serve them to unmodified AWS SDKs.

Usage: crosscred <command> [options]

Commands:
  serve                 Run the daemon: exchange the web-identity token at AWS STS, keep the
                        credentials fresh, serve them on the IMDS and container endpoints.
  credential-process    Print credentials in the credential_process format (Version 1), from a
                        running daemon or by exchanging the token itself.
  demo                  Run the whole chain on this machine: an embedded OIDC issuer, an STS
                        emulator that verifies the token, and the daemon; prints the environment
                        that points an SDK at it.
  help [command]        Show help for a command.

Run 'crosscred <command> --help' for the options of a command.
Exit codes: 0 success, 1 runtime failure, 2 bad command line, 78 invalid configuration.
`;

export const SERVE_HELP = `Usage: crosscred serve [options]

Exchanges a web-identity JWT at STS AssumeRoleWithWebIdentity, refreshes the credentials in the
background, and serves them on the EC2 instance metadata (IMDSv2) and container-credentials endpoints.
Settings come from flags, then the --config file, then the AWS SDK environment variables.

Role (one role; for several, use --config):
  --role-arn ARN              Role to assume.                        env AWS_ROLE_ARN
  --token-file PATH           File holding the OIDC JWT, re-read     env AWS_WEB_IDENTITY_TOKEN_FILE
                              before every exchange.
  --role-session-name NAME    STS session name (2-64 of [\\w+=,.@-]). env AWS_ROLE_SESSION_NAME
                              Default: crosscred-<hostname>.
  --role-name NAME            Name served under /latest/meta-data/iam/security-credentials/.
                              Default: the last segment of the role ARN.
  --duration-seconds N        Session length to ask for, 900-43200. Default: the role's own.

STS:
  --region REGION             Region of the STS endpoint.            env AWS_REGION, AWS_DEFAULT_REGION
  --sts-endpoint URL          Override the regional endpoint; https  env AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL
                              (plain http only to loopback).
  --ca-bundle PATH            PEM CA bundle for the STS connection.  env AWS_CA_BUNDLE
  --sts-connect-timeout-ms N  Connect timeout (default 3000).
  --sts-timeout-ms N          Time allowed for STS's answer (default 10000).
  The STS connection honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY.

Serving:
  --listen HOST:PORT[=ROLE]   Address of the IMDS and container endpoints; repeatable.
                              Default 127.0.0.1:8170. With several roles, =ROLE names the role
                              this listener's IMDS serves.
  --admin-listen HOST:PORT    /healthz, /readyz, /metrics. Default 127.0.0.1:8171; "off" disables.
  --auth-token-file PATH      Secret for the container endpoint (Authorization header). Created with
                              mode 0600 if missing. Without it the container endpoint is off.
  --allow-imdsv1              Also answer IMDS GETs that carry no session token (IMDSv1).
  --allow-remote              Allow listen addresses other machines can reach (anything but
                              loopback and link-local, e.g. 0.0.0.0). Refused without it.
  --allowed-host NAME         Extra Host header value to accept (DNS-rebinding guard); repeatable.

General:
  --config PATH               YAML or JSON file: several roles, listeners, all of the above.
                                                                     env CROSSCRED_CONFIG
  --log-level LEVEL           fatal, error, warn, info (default), debug, trace, silent.
                                                                     env CROSSCRED_LOG_LEVEL
  -h, --help                  This text.

Point an SDK at it:
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:8170/   (keep the slash: AWS CLI v2 needs it)
  or AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:8170/v1/credentials
     with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=<the --auth-token-file>
`;

export const CREDENTIAL_PROCESS_HELP = `Usage: crosscred credential-process [--endpoint URL --auth-token-file PATH] [serve's role options]

Prints {"Version":1,"AccessKeyId",...,"Expiration"} for credential_process in ~/.aws/config.

From a running daemon:
  --endpoint URL              The daemon's container endpoint, e.g. http://127.0.0.1:8170/v1/credentials
                                                                     env CROSSCRED_ENDPOINT
  --auth-token-file PATH      The daemon's --auth-token-file.
  --timeout-ms N              Give up after N ms (default 5000).

Without --endpoint, it exchanges the token at STS itself, with the role options of 'crosscred serve'
(--role-arn, --token-file, --region, --config, ...); with several roles in --config, --role NAME picks one.
`;

export const DEMO_HELP = `Usage: crosscred demo [--listen HOST:PORT] [--admin-listen HOST:PORT] [--check]

Starts, on loopback: an OIDC issuer (ES256, discovery and JWKS), an STS emulator that verifies the
token's signature, issuer, audience, expiry and subject, and 'crosscred serve' exchanging at it.
Prints the environment variables that point an AWS SDK or the AWS CLI at the daemon, then serves
until Ctrl-C.

  --listen HOST:PORT          Credential endpoints (default 127.0.0.1:8170).
  --admin-listen HOST:PORT    Admin endpoints (default 127.0.0.1:8171).
  --check                     Fetch credentials once through both endpoints, print the result and exit.
`;
