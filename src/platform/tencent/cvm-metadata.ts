/** The Tencent CVM metadata server, by the name Tencent's SDKs use; it answers on every CVM instance. */
export const CVM_METADATA_URL = 'http://metadata.tencentyun.com';
