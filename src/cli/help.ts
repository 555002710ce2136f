/** Every word a person reads from `--help`. Keep it in step with docs/configuration.md. */

export const MAIN_HELP = `crosscred: trade a workload's OIDC token for AWS credentials and serve them to unmodified AWS SDKs.

Usage: crosscred <command> [options]

Commands:
  serve                 Run the daemon: exchange the web-identity token at AWS STS, keep the
                        credentials fresh, serve them on the IMDS and container endpoints.
  credential-process    Print credentials in the credential_process format (Version 1), from a
                        running daemon or by exchanging the token itself.
  doctor                Check, link by link, that the chain can work here: token source,
                        token claims, clock skew, the issuer's discovery and JWKS, STS; say
                        what is wrong and how to fix it.
  trust-policy          Print what AWS needs to accept this host's token: the IAM OIDC
                        provider command and the role trust policy.
  net-setup up|down     Put 169.254.169.254 (and 169.254.170.2) on a local interface so serve
                        can listen there and SDKs find it with no configuration (root);
                        --local-only also refuses other hosts and containers (nftables).
  wait-ready            Wait until a running daemon's /readyz says ready (systemd ExecStartPost).
  node-agent            Run on every Kubernetes node: serve each pod's container-credentials
                        requests (/v1/credentials/<role ARN>) from the pod's own projected
                        ServiceAccount token, exchanged at STS and cached per token.
  issuer serve|keygen|export-discovery
                        Run an OIDC issuer that attests Alibaba ECS and Tencent CVM instances
                        and mints JWTs for AWS; make its signing keys; export its discovery
                        documents for a public bucket.
  webhook               The Kubernetes mutating admission webhook: injects the node agent's
                        variables and token volume (or a crosscred sidecar) into opted-in pods.
  demo                  Run the whole chain on this machine: an embedded OIDC issuer, an STS
                        emulator that verifies the token, and the daemon; prints the environment
                        that points an SDK at it.
  help [command]        Show help for a command.
  --version             Print crosscred's version.

Run 'crosscred <command> --help' for the options of a command.
Exit codes: 0 success, 1 runtime failure, 2 bad command line, 78 invalid configuration.
`;

export const SERVE_HELP = `Usage: crosscred serve [options]

Exchanges a web-identity JWT at STS AssumeRoleWithWebIdentity, refreshes the credentials in the
background, and serves them on the EC2 instance metadata (IMDSv2) and container-credentials endpoints.
A role in Alibaba Cloud (AssumeRoleWithOIDC) or Tencent Cloud (AssumeRoleWithWebIdentity) is served
to that cloud's SDKs instead: the Alibaba credentials URI and ECS metadata, the Tencent CVM metadata.
Settings come from flags, then the --config file, then the SDK environment variables of the role's cloud.

Role (one role; for several, use --config):
  --cloud CLOUD               The cloud the role is in: aws (default), env CROSSCRED_CLOUD
                              alibaba or tencent. Its STS is called, its SDKs are served.
  --role-arn ARN              Role to assume.                        env AWS_ROLE_ARN
                              Alibaba: acs:ram::<uid>:role/<name>    env ALIBABA_CLOUD_ROLE_ARN
                              Tencent: qcs::cam::uin/<uin>:roleName/<name>  env TKE_ROLE_ARN
  --oidc-provider-arn ARN     Alibaba only, required: the RAM OIDC provider
                              (acs:ram::<uid>:oidc-provider/<name>). env ALIBABA_CLOUD_OIDC_PROVIDER_ARN
  --provider-id NAME          Tencent only, required: the CAM OIDC identity provider. env TKE_PROVIDER_ID
  --token-file PATH           File holding the OIDC JWT, re-read before every exchange.
  --role-session-name NAME    STS session name (2-64 of [\\w+=,.@-]). env AWS_ROLE_SESSION_NAME
                              Alibaba: 2-64 of [\\w.@-]            env ALIBABA_CLOUD_ROLE_SESSION_NAME
                              Tencent: 2-128 of [\\w+=,.@-]. Default: crosscred-<hostname>.
                              Or a template filled from the token: {namespace}.{pod}, vm-{instance}.
  --role-name NAME            Name served under /latest/meta-data/iam/security-credentials/.
                              Default: the last segment of the role ARN.
  --duration-seconds N        Session length to ask for, 900-43200. Default: the role's own.

Token source (where the OIDC JWT comes from):
  --token-source KIND         auto (default), file, exec, kubernetes, alibaba-ecs, tencent-cvm or
                              aws-outbound (never chosen by auto).
                              env CROSSCRED_TOKEN_SOURCE. auto takes the first that applies:
                              --token-command, --token-file, AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA),
                              ALIBABA_CLOUD_OIDC_TOKEN_FILE (ACK RRSA), TKE_WEB_IDENTITY_TOKEN_FILE
                              (TKE), in a Kubernetes pod a TokenRequest to the API server, then,
                              with --issuer-url, this VM attested to crosscred issuer (the cloud is
                              told by which metadata server answers).
  --token-command CMD         Program that prints the JWT (or JSON {"token","expiration"}); a path,
                              or a JSON array ["prog","arg",...]. Run without a shell.
  --token-command-timeout-ms N  Time limit for the command (default 10000).
  --token-command-env NAME    Pass the daemon's variable NAME to the command; repeatable. The
                              command gets only PATH, HOME and these (not, say, HTTPS_PROXY).
  --token-audience AUD        Audience of Kubernetes TokenRequest tokens, and of JWTs asked of
                              crosscred issuer (default sts.amazonaws.com (aws),
                              sts.aliyuncs.com (alibaba), sts.cloud.tencent.com (tencent)).
  --issuer-url URL            crosscred issuer, for an Alibaba ECS or Tencent CVM instance with no
                              OIDC token: its attestation is traded there for a JWT. env
                              CROSSCRED_ISSUER_URL. Must equal the issuer's publicUrl exactly.
  --issuer-ca-bundle FILE     PEM CAs to trust for the issuer (a private CA).
  --issuer-token-endpoint URL The issuer's token endpoint, when it is not --issuer-url + /token
                              (discovery published in a bucket, the endpoint kept private).
  --instance-secret-file FILE The VM's instance secret for the issuer's trust on first use: made
                              once (mode 0600), sent with every token request; refused if open to
                              group or others. Default /var/lib/crosscred/instance-secret when
                              /var/lib/crosscred exists (the systemd unit makes it).
  --alibaba-attestation KIND  ecs-identity (default: the signed instance identity document) or
                              ram-role (a GetCallerIdentity signed with the instance's RAM role).
  --cloud-sts-endpoint URL    The Alibaba or Tencent STS endpoint that GetCallerIdentity is signed
                              for (ram-role, Tencent), e.g. a regional or VPC one; the issuer must
                              allow it. Default: the global endpoint.
  --aws-outbound-signing-algorithm ALG  aws-outbound: RS256 (default) or ES384. An AWS workload's
                              own JWT from AWS STS GetWebIdentityToken, signed with the host's AWS
                              credentials (EC2, ECS, Lambda), for a role in Alibaba or Tencent.
  --aws-outbound-duration-seconds N  aws-outbound: token lifetime, 60-3600 (default 300).
  --aws-outbound-region REGION  aws-outbound: the AWS STS region to ask; required.
                                                                     env AWS_REGION, AWS_DEFAULT_REGION
  --aws-outbound-sts-endpoint URL  aws-outbound: an AWS STS URL instead of the region's.
                                                                     env AWS_ENDPOINT_URL_STS
  --token-expiration-seconds N  Lifetime asked of a TokenRequest, 600-86400 (default 3600).
  --kubernetes-sa-dir DIR     Where the pod's ServiceAccount is mounted
                              (default /var/run/secrets/kubernetes.io/serviceaccount).
  POD_NAME and POD_UID (downward API) bind requested tokens to the pod.

STS:
  --region REGION             Region of the STS endpoint.            env AWS_REGION, AWS_DEFAULT_REGION
                              Default: the partition's home region (us-east-1 for aws).
                              Alibaba: optional (default: the global endpoint). env ALIBABA_CLOUD_STS_REGION
                              Tencent: required (sent as X-TC-Region). env TKE_REGION
  --vpc-endpoint              Alibaba only: STS through the region's VPC endpoint
                              (sts-vpc.<region>.aliyuncs.com).       env ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED
  --sts-endpoint URL          Override the regional endpoint; https  env AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL
                              (plain http only to loopback). For an AWS role only, the variables.
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
  --disable-imds              Serve only the container endpoint (needs --auth-token-file): for a
                              sidecar whose pod neighbours must not get credentials without the
                              secret, since any local process can use IMDS.
  --allow-remote              Allow listen addresses other machines can reach (anything but
                              loopback and link-local, e.g. 0.0.0.0). Refused without it.
  --allowed-host NAME         Extra Host header value to accept (DNS-rebinding guard); repeatable.

General:
  --config PATH               YAML or JSON file: several roles, listeners, all of the above;
                              a role's chain of roles in other accounts, session policies and tags.
                                                                     env CROSSCRED_CONFIG
  --log-level LEVEL           fatal, error, warn, info (default), debug, trace, silent.
                                                                     env CROSSCRED_LOG_LEVEL
  -h, --help                  This text.

Point an SDK at it:
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:8170/   (keep the slash: AWS CLI v2 needs it)
  or AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:8170/v1/credentials
     with AWS_CONTAINER_AUTHORIZATION_TOKEN="$(cat <the --auth-token-file>)", which every client
     reads (AWS CLI 2.9, botocore 1.29 and the Go SDKs read only this one), or
     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=<the --auth-token-file> for recent SDKs alone
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

export const DEMO_HELP = `Usage: crosscred demo [--cloud aws|alibaba|tencent] [--listen HOST:PORT] [--admin-listen HOST:PORT] [--check] [--log-level LEVEL]

Starts, on loopback: an OIDC issuer (ES256, discovery and JWKS), an STS emulator that verifies the
token's signature, issuer, audience, expiry and subject, and 'crosscred serve' exchanging at it.
Prints the environment variables that point an AWS SDK or the AWS CLI at the daemon, then serves
until Ctrl-C.

  --cloud CLOUD               aws (default); alibaba: an Alibaba Cloud STS emulator
                              (AssumeRoleWithOIDC) and the credentials URI Alibaba's SDKs read
                              (ALIBABA_CLOUD_CREDENTIALS_URI); tencent: a Tencent Cloud STS emulator
                              (AssumeRoleWithWebIdentity) and the CVM metadata Tencent's SDKs read.

  --listen HOST:PORT          Credential endpoints (default 127.0.0.1:8170); repeatable.
  --admin-listen HOST:PORT    Admin endpoints (default 127.0.0.1:8171).
  --check                     Fetch credentials once through both endpoints, print the result and exit.
  --log-level LEVEL           The daemon's log lines on stderr (default warn: only problems).
`;

export const DOCTOR_HELP = `Usage: crosscred doctor [serve's role and token options] [--no-exchange] [--timeout-ms N]
       crosscred doctor --node-agent [--audience AUD] [--allowed-issuer URL]... [--timeout-ms N]

Finds the token the way 'crosscred serve' would and checks each link of the chain:
  - which token source applies, and why; platform variables seen and what they are for;
  - the token's claims (iss, aud, sub, exp and time left, kid; never the token itself), clock skew;
  - the issuer's /.well-known/openid-configuration and JWKS (AWS fetches them over public HTTPS);
  - a real AssumeRoleWithWebIdentity at STS (skip with --no-exchange; the credentials are not shown).
With --issuer-url (an Alibaba ECS or Tencent CVM instance attested by crosscred issuer), step by step:
  - which metadata server answered (Alibaba 100.100.100.200 in token mode, Tencent
    metadata.tencentyun.com), or that neither did;
  - Alibaba ecs-identity: the identity document and its PKCS#7 can be had (neither is shown);
    ram-role and Tencent: the RAM/CAM role attached, and that its credentials can be had (not shown);
  - the issuer: discovery at --issuer-url (issuer equal to it exactly, JWKS reachable, algorithms
    AWS accepts) and its token endpoint;
  - the exchange at the issuer: the JWT's iss, sub, aud and exp (never the JWT), or its OAuth error.
Prints what is wrong in plain words with the fix. Exit code 0 when the chain can work, 1 when not.

  --no-exchange               Do not call STS.
  --timeout-ms N              Bound on each network check (default 5000; 2000 with --node-agent).

With --node-agent, run in a pod (kubectl exec), checks that the pod can get its credentials from
crosscred node-agent, as the webhook set it up:
  - the injected AWS_CONTAINER_CREDENTIALS_FULL_URI (a host the SDKs accept, a valid role ARN) and
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; AWS_CONTAINER_AUTHORIZATION_TOKEN beside the file (Java
    prefers it); variables that win over the agent in the SDKs' chain (AWS_ACCESS_KEY_ID,
    AWS_PROFILE, AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE);
  - the token file: readable, a JWT, aud, iss, exp, bound to a pod (kubernetes.io.pod), no
    trailing newline (the token itself is never shown);
  - the agent: a TCP connection, then a real GET with the token and its answer (the credentials
    are not shown);
  - whether IMDS (169.254.169.254, or AWS_EC2_METADATA_SERVICE_ENDPOINT) answers from the pod: then
    SDK chains that go on to IMDS would silently use the node's role when the agent fails.
  --audience AUD              The audience the agent expects (its --audience; default sts.amazonaws.com).
  --allowed-issuer URL        The agent's --allowed-issuer; repeatable. Without it iss is only shown.
`;

export const TRUST_POLICY_HELP = `Usage: crosscred trust-policy [serve's role and token options] [--format text|json] [--sub-pattern P] [--account-id N]
                             [--session-tags] [--cloud-account ID] [--cloud-region R] [--instance-id I] [--cloud-role R]

Reads the token the way 'crosscred serve' would and prints what the AWS side needs:
  1. the 'aws iam create-open-id-connect-provider' command for the token's issuer and audience;
  2. the role trust policy: Principal the issuer's OIDC provider, Condition pinning
     <issuer-host/path>:aud and :sub.
For a role with --cloud alibaba, what RAM needs instead: 'aliyun ims CreateOIDCProvider' (with the
issuer certificate's fingerprint) and a trust policy pinning oidc:iss, oidc:aud and oidc:sub; for
--cloud tencent, what CAM needs: 'tccli cam CreateOIDCConfig' (with the issuer's JWKS) and a trust
policy for name/sts:AssumeRoleWithWebIdentity pinning the same three.

With --issuer-url (an Alibaba ECS or Tencent CVM instance attested by crosscred issuer) no token
is fetched: the provider is the issuer URL, the audience --token-audience (default
sts.amazonaws.com), and sub follows the issuer's formats
  alibaba-ecs:<account-id>:<region-id>:<instance-id>   (--token-source alibaba-ecs, the default attestation)
  alibaba-ram:<account-id>:role/<role-name>            (--token-source alibaba-ecs --alibaba-attestation ram-role)
  tencent-cam:<uin>:role/<role-id>                     (--token-source tencent-cvm)
built from --cloud-account (required, never a wildcard) and the optional parts below, or given
whole with --sub-pattern.

  --format text|json          text (default): commented commands and the policy, ready to paste.
  --sub-pattern PATTERN       Allow every subject matching an IAM StringLike pattern, e.g.
                              'system:serviceaccount:payments:*' or
                              'alibaba-ecs:1335926999564873:cn-hangzhou:*', instead of the
                              token's exact sub.
  --account-id N              The role's account, when no --role-arn is configured.
  --role NAME                 With several roles in --config, the one to print for.
  --session-tags              The token carries session tags (the issuer's policy sets
                              sessionTags): also allow sts:TagSession, which STS then requires.
  --cloud-account ID          Issuer tokens: the Alibaba account id or Tencent UIN.
  --cloud-region R            alibaba-ecs: the region id (default any).
  --instance-id I             alibaba-ecs: one instance id (default any).
  --cloud-role R              alibaba-ram: the RAM role name; tencent-cam: the CAM role id (default any).
`;

export const NET_SETUP_HELP = `Usage: crosscred net-setup up|down [--interface NAME] [--container-address] [--address CIDR]... [--local-only] [--hop-limit]
       [--tencent-metadata-only-for USER]
       crosscred net-setup [up|down] --node-agent [--ipv4-only] [--interface NAME]
       crosscred net-setup [up|down] --alibaba-metadata [--interface NAME]

Puts the metadata addresses on this host (up) or removes them (down), idempotently: run it as
ExecStartPre/ExecStopPost of the systemd unit. Needs root (CAP_NET_ADMIN) and iproute2;
--local-only, --hop-limit and --tencent-metadata-only-for also need nft (Debian package nftables).

The kernel accepts packets for these addresses on any interface: without --local-only, every
container on a bridge (Docker, Podman) and any machine with a route through this host gets this
host's credentials.

  --interface NAME            Dummy link to create (default crosscred0); where the kernel has no
                              dummy links, the loopback is used instead.
  --container-address         Also 169.254.170.2/32, for the container-credentials endpoint.
  --address CIDR              Exactly these addresses instead (repeatable).
  --local-only                Also an nftables rule (table inet crosscred_local_only) refusing
                              every packet for these addresses that does not come from this host
                              itself: TCP gets a reset, anything else ICMP admin-prohibited, so
                              clients fail at once instead of timing out. Host processes (and
                              containers on the host network) still get credentials; containers
                              on a bridge and other machines do not. Use it on any host with
                              containers, unless they are meant to have this host's role.
  --hop-limit                 Also an nftables rule (table inet crosscred_metadata): replies from
                              these addresses leave with TTL 1. That stops only a client with a
                              router between it and this host. It does NOT stop a container on a
                              bridge or veth of this host, which gets the reply directly (IMDSv2's
                              hop limit works on EC2 because there the host forwards for its
                              containers). For containers, use --local-only.
  --tencent-metadata-only-for USER
                              Tencent CVM: also an nftables table (inet crosscred_tencent_metadata)
                              letting only USER (crosscred's user; a name or a uid) reach the
                              metadata service at 169.254.0.23, which has no token mode. Every
                              other process, root included, and every container forwarded through
                              this host is refused: the cloud agents, cloud-init and the Tencent
                              SDKs' CVM role provider lose the metadata service too.

'down' removes the addresses and every nftables table of crosscred's, whatever the flags.

The node agent (Kubernetes; the DaemonSet's init container runs this with NET_ADMIN):

  --node-agent                Put 169.254.170.23/32 and fd00:ec2::23/128 on the same link instead
                              ('up' is implied), where pods reach 'crosscred node-agent' through
                              the node. The IPv6 address goes on with nodad, so it is usable at
                              once. No nftables rule: pods come from their own interfaces, and the
                              agent answers only to a valid ServiceAccount token of the pod's own.
                              The addresses stay when the agent stops, so a rolling update leaves
                              no moment without them. 'down --node-agent' removes just these two
                              (and the dummy link once nothing else is on it), no nftables table.
  --ipv4-only                 With --node-agent: only 169.254.170.23/32 (nodes with IPv6 off).

An Alibaba role served as ECS metadata (in a network namespace or a pod, never on a real ECS
instance, whose own metadata server has the address):

  --alibaba-metadata          Put 100.100.100.200/32, the address Alibaba's SDKs ask, on the link
                              instead ('up' is implied); 'down --alibaba-metadata' removes just it.
`;

export const WAIT_READY_HELP = `Usage: crosscred wait-ready [--admin URL] [--timeout-ms N] [--main-pid PID] [--alive]

Polls URL/readyz (default http://127.0.0.1:8171) until it answers 200: exit 0; exit 1 after
--timeout-ms (default 60000) with the roles' last errors, or as soon as process PID (the daemon;
systemd's $MAINPID) has exited. --alive polls URL/healthz instead: the daemon answers at all,
whether or not it holds credentials (a container health check).
`;

export const ISSUER_HELP = `Usage: crosscred issuer serve --config FILE [--log-level LEVEL]
       crosscred issuer keygen --alg ES256|RS256 --out FILE [--bits N]
       crosscred issuer export-discovery --config FILE --out DIR
       crosscred issuer reset-instance --config FILE --kind KIND --account ID --instance-id ID

An OIDC identity provider for VMs that have no OIDC token of their own. A VM source (alibaba-ecs,
tencent-cvm) sends a cloud-signed attestation to the token endpoint (RFC 8693 token exchange);
the issuer verifies it, checks its policy, and answers with a short-lived JWT that AWS STS
AssumeRoleWithWebIdentity accepts once the issuer is registered as an IAM OIDC provider.

serve              Serves /.well-known/openid-configuration, /.well-known/jwks.json (under
                   publicUrl's path) and the token endpoint; /healthz and /metrics on the admin
                   address. HTTPS with tls.certFile/keyFile; plain HTTP only on loopback or with
                   allowPlainHttp (behind a TLS-terminating load balancer). SIGHUP re-reads the
                   config: keys, policy, audiences, lifetime, attestors, certificate.
  --config FILE    The issuer's YAML or JSON config.       env CROSSCRED_ISSUER_CONFIG
  --log-level L    fatal, error, warn, info (default), debug, trace, silent.
keygen             Writes a new signing key as PKCS#8 PEM with mode 0600; never overwrites.
  --alg ALG        ES256 (P-256, default) or RS256.
  --bits N         RSA modulus for RS256, 2048-8192 (default 3072).
  --out FILE       Where to write it; must not exist.
export-discovery   Writes DIR/.well-known/openid-configuration and DIR/.well-known/jwks.json,
                   byte for byte what serve answers, for a public bucket (S3, OSS, COS) at
                   publicUrl; the token endpoint can then stay private (tokenEndpointUrl).
  --config FILE    As for serve (it reads the keys).
  --out DIR        Directory to write into (created if missing; the two files are replaced).
reset-instance     Forgets an instance's first-use binding (policy.<kind>.trustOnFirstUse), for a
                   re-imaged instance whose crosscred lost its instance secret: its next accepted
                   attestation binds anew. Needs state: redis://… (memory bindings live in the
                   running issuer). Make sure the VM itself attests next, not an SSRF on it.
  --config FILE    As for serve (it reads the state setting).
  --kind KIND      alibabaEcsIdentity.
  --account ID     The instance's account id.
  --instance-id ID The instance id.

Key rotation: add the next key (published only), re-export or reload, wait until AWS can have
fetched it (a day is safe); make it active; keep the old key published for the token lifetime
plus that day, then remove it. See docs/issuer.md for the config file and the sub formats.
Exit codes: 0 success, 1 runtime failure, 2 bad command line, 78 invalid configuration or keys.
`;

export const WEBHOOK_HELP = `Usage: crosscred webhook [options]

The mutating admission webhook for Kubernetes (POST /mutate, admission.k8s.io/v1). For each pod
created with the crosscred.io/inject=true label it reads the pod's ServiceAccount and, when that
names a role (crosscred.io/role-arn, else eks.amazonaws.com/role-arn), adds with JSON Patch "add"
operations only: the projected token volume and the variables of the mode (crosscred.io/mode on
the ServiceAccount, else --default-mode). A pod that already chooses its credentials is left
alone with a warning; one whose ServiceAccount cannot be read is denied, so it is retried.

Options:
  --listen ADDR                 HTTPS address for /mutate (default 0.0.0.0:8443).
  --admin-listen ADDR           Plain HTTP /healthz, /readyz, /metrics (default 0.0.0.0:8081).
  --tls-cert-file PATH          Serving certificate chain, PEM
                                (default /etc/crosscred/webhook-tls/tls.crt).
  --tls-key-file PATH           Its key, PEM (default /etc/crosscred/webhook-tls/tls.key).
                                Both are reloaded when they change, a Secret's ..data swap included.
  --default-mode MODE           agent (default): the node agent at 169.254.170.23 with the pod's
                                token; sidecar: crosscred serve as a native sidecar in the pod;
                                web-identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (old SDKs).
  --sidecar-image IMAGE         The crosscred image sidecar mode runs (needed for sidecar mode).
  --region REGION               Also inject AWS_REGION and AWS_DEFAULT_REGION where a container
                                sets neither (default: not injected).
  --ip-family ipv4|ipv6         Address of the node agent in FULL_URI (default ipv4); ipv6 injects
                                http://[fd00:ec2::23]/... and AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6.
  --kube-api-url URL            Kubernetes API (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
  --kube-token-file PATH        Bearer token for it
                                (default /var/run/secrets/kubernetes.io/serviceaccount/token).
  --kube-ca-file PATH           CA of its certificate
                                (default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt).
  --service-account-cache-seconds N
                                How long a ServiceAccount read is reused (default 30; 0: never).
                                A ServiceAccount not in the cache is always read live.
  --log-level LEVEL             fatal, error, warn, info (default), debug, trace, silent.
                                                                       env CROSSCRED_LOG_LEVEL

SIGHUP is logged and ignored (no reload: restart to change a setting; the certificate files are
re-read on their own).
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure, 2 bad command line, 78 invalid configuration.
`;

export const NODE_AGENT_HELP = `Usage: crosscred node-agent --allowed-issuer URL --region REGION [options]

One per Kubernetes node (a hostNetwork DaemonSet). Answers GET /v1/credentials/<role ARN> with the
calling pod's projected ServiceAccount token in the Authorization header (the raw JWT, as the AWS
SDKs send it from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; a "Bearer " prefix is also accepted).
The token is checked before STS sees it (JWT shape, algorithm, whole signature, exp, nbf and iat,
aud, iss, sub, the kubernetes.io pod claim), exchanged at STS AssumeRoleWithWebIdentity under the
session name <namespace>.<pod> (or --session-name-template), and the credentials are cached by
role ARN and the token's SHA-256.
It never talks to the Kubernetes API and holds no credentials of its own.

Tokens:
  --allowed-issuer URL        The cluster's service-account issuer (its "iss"); required,
                              repeatable. Tokens of any other issuer are refused.
  --audience AUD              The audience tokens must carry (default sts.amazonaws.com).
  --allow-unbound-tokens      Also accept tokens not bound to a pod (no kubernetes.io.pod claim);
                              their session name is <namespace>.<serviceaccount>.
  --session-name-template T   Each pod's STS session name, from its token's {namespace},
                              {serviceAccount}, {pod} and {podUid}, such as
                              {namespace}-{serviceAccount}-{pod}. Characters STS refuses become
                              "-"; a name over 64 keeps 55 characters, "-" and 8 hex digits of
                              its SHA-256. An unbound token under a template naming {pod} or
                              {podUid} is refused (401 TOKEN_LACKS_SESSION_NAME).
                              Default: <namespace>.<pod>.

Roles:
  --allowed-role ARN_GLOB     Serve only roles matching this ARN, where * matches anything (also
                              /); repeatable. Default: every role the pod's token is trusted for.
  --duration-seconds N        Session length to ask for, 900-43200. Default: the role's own.

STS:
  --region REGION             Region of the STS endpoint; required.   env AWS_REGION, AWS_DEFAULT_REGION
                              Roles of another partition are refused (400 ROLE_ARN_PARTITION).
  --sts-endpoint URL          Override the regional endpoint; https  env AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL
                              (plain http only to loopback). Any partition's ARN is then sent there.
  --ca-bundle PATH            PEM CA bundle for the STS connection.  env AWS_CA_BUNDLE
  --sts-connect-timeout-ms N  Connect timeout (default 3000).
  --sts-timeout-ms N          Time allowed for STS's answer (default 10000).
  The STS connection honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY.

Cache and limits:
  --max-entries N             Most cached (role, token) entries (default 10000).
  --max-cache-bytes N         Most bytes the entries may hold, by estimate (default 33554432, 32 MiB).
  --idle-seconds N            Drop an entry unread this long, and never renew it (default 900).
                              An entry in use is renewed before its credentials expire while its
                              token is valid for more than 60 s.
  --rate-per-second N         New tokens (cache misses, each an STS call) per second allowed to
                              one client address (default 5); IPv6 counted per /128.
  --rate-burst N              Misses one address may make at once (default 20). Beyond: 503
                              with Retry-After and Code Throttling. Cache hits are never limited.

Serving:
  --listen HOST:PORT          Credential address; repeatable. Default 169.254.170.23:80 and
                              [fd00:ec2::23]:80 (crosscred net-setup puts them on the node).
                              Only requests whose Host is that address are answered.
  --admin-listen HOST:PORT    /healthz, /readyz, /metrics. Default 127.0.0.1:2703; "off" disables.

General:
  --log-level LEVEL           fatal, error, warn, info (default), debug, trace, silent.
                                                                     env CROSSCRED_LOG_LEVEL
  --run-as UID:GID            Switch to this user and group once the listeners are bound (start as
                              root with NET_BIND_SERVICE, SETUID and SETGID: Kubernetes cannot give
                              a non-root container port 80). Default: keep the starting user.
  -h, --help                  This text.

In a pod (what the webhook injects):
  AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials/<role ARN>
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=<the projected token with audience sts.amazonaws.com>
`;
