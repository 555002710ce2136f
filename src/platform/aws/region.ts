/**
 * An AWS region name: `eu-west-1`, `us-gov-west-1`, `cn-north-1`, `eusc-de-east-1` (the European
 * Sovereign Cloud's prefix is four letters). One pattern for every command that takes a region, so
 * serve, the node agent and the webhook accept the same names.
 */
const REGION_NAME = /^[a-z]{2,5}(-[a-z]+)+-\d{1,2}$/;

export function isAwsRegionName(text: string): boolean {
  return REGION_NAME.test(text);
}
