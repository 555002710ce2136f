/** The Tencent CVM metadata server's name, as Tencent's SDKs use it (169.254.0.23 on a CVM instance). */
export const CVM_METADATA_HOST = 'metadata.tencentyun.com';

/** The Tencent CVM metadata server, by the name Tencent's SDKs use; it answers on every CVM instance. */
export const CVM_METADATA_URL = `http://${CVM_METADATA_HOST}`;
