/** Tencent STS: RoleSessionName is 2–128 letters, digits and `+=,.@-_`. */
export const VALID_TENCENT_SESSION_NAME = /^[\w+=,.@-]{2,128}$/;
