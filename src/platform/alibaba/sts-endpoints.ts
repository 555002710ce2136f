/**
 * Where Alibaba Cloud STS answers: the global endpoint, a region's public endpoint, or a region's
 * VPC endpoint (reachable only from inside an Alibaba VPC), as Alibaba's credential SDKs choose
 * them from ALIBABA_CLOUD_STS_REGION and ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED.
 */
export const ALIBABA_STS_GLOBAL_ENDPOINT = 'https://sts.aliyuncs.com';

/** An Alibaba region id: `cn-hangzhou`, `ap-southeast-1`, `eu-central-1`, `cn-shanghai-finance-1`… */
export const ALIBABA_REGION = /^[a-z]{2,4}(?:-[a-z0-9]{1,20}){1,4}$/;

export function alibabaStsEndpoint(region: string, vpc: boolean): string {
  if (region === '') return ALIBABA_STS_GLOBAL_ENDPOINT;
  return `https://${vpc ? 'sts-vpc' : 'sts'}.${region}.aliyuncs.com`;
}
