/** Bundles `entry` into one CommonJS file with the options of the single executable (bundle.mjs). */
export function bundle(options: { entry: string; outfile: string; version: string }): Promise<unknown>;
