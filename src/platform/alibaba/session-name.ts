/** Alibaba STS: RoleSessionName is 2–64 letters, digits and `.@-_` (no `+=,`, which AWS allows). */
export const VALID_ALIBABA_SESSION_NAME = /^[\w.@-]{2,64}$/;
