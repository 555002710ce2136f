/**
 * Where Tencent Cloud STS answers. Every request also names a region (`X-TC-Region`), which the
 * API requires; the endpoint may be the nearest one or a region's own (`sts.<region>.tencentcloudapi.com`).
 */
export const TENCENT_STS_ENDPOINT = 'https://sts.tencentcloudapi.com';

/** A Tencent region id: `ap-guangzhou`, `ap-hongkong`, `na-siliconvalley`, `eu-frankfurt`… */
export const TENCENT_REGION = /^[a-z]{2,4}(?:-[a-z0-9]{1,20}){1,3}$/;

/** The API version of STS's AssumeRoleWithWebIdentity. */
export const TENCENT_STS_VERSION = '2018-08-13';
