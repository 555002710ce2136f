/**
 * The import rules of docs/architecture.md, checked by `npm run check:architecture` (and by .ci/run).
 *
 * ROOMS is the floor plan: each folder of src/ and the folders it may import. A room may always
 * import its own files. Anything not listed is refused, so a new folder must be added here (and to
 * docs/architecture.md) before it can be imported. Type-only imports count: they tie folders
 * together just the same.
 */

/** Room → the rooms it may import, bottom floor first. */
const ROOMS = {
  // Leaves
  core: [],
  util: ['core'],
  // Shared contracts: what two products both speak
  protocol: ['core', 'util'],
  // One cloud's facts; one cloud never imports another
  'platform/aws': ['core', 'util', 'protocol'],
  'platform/alibaba': ['core', 'util', 'protocol'],
  'platform/tencent': ['core', 'util', 'protocol'],
  'platform/kubernetes': ['core', 'util', 'protocol'],
  // Kits and ports every product builds with
  http: ['core', 'util'],
  observability: ['core'],
  host: ['core', 'util'],
  exchange: ['core', 'util', 'platform/aws', 'platform/alibaba', 'platform/tencent'],
  config: ['core', 'util', 'protocol', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'platform/kubernetes'],
  sources: ['core', 'util', 'protocol', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'platform/kubernetes', 'config'],
  cache: ['core', 'util', 'exchange'],
  roles: ['core', 'util', 'protocol', 'exchange', 'sources', 'config', 'platform/aws', 'platform/alibaba', 'platform/tencent'],
  // Products: never import each other
  serve: ['core', 'util', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'http', 'observability', 'exchange', 'config', 'sources', 'cache', 'roles'],
  issuer: ['core', 'util', 'protocol', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'http', 'observability', 'config'],
  demo: ['core', 'util'],
  // The node agent serves every pod of a node from the pod's own token: it talks to STS and never
  // to the Kubernetes API. The webhook reads the API and never talks to STS. Neither imports the
  // other; what both speak is protocol/pod-identity.ts.
  'node-agent': ['core', 'util', 'protocol', 'platform/aws', 'http', 'observability', 'exchange', 'cache', 'config'],
  webhook: ['core', 'util', 'protocol', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'platform/kubernetes', 'http', 'observability', 'config'],
  // Above the products
  advice: ['core', 'util', 'protocol', 'platform/aws', 'platform/alibaba', 'platform/tencent', 'platform/kubernetes', 'exchange', 'config', 'sources', 'roles'],
  cli: [
    'core',
    'util',
    'protocol',
    'platform/aws',
    'platform/alibaba',
    'platform/tencent',
    'platform/kubernetes',
    'http',
    'observability',
    'host',
    'exchange',
    'config',
    'sources',
    'cache',
    'roles',
    'serve',
    'issuer',
    'demo',
    'node-agent',
    'webhook',
    'advice',
  ],
};

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const roomPath = (room) => `^src/${escapeRegExp(room)}/`;
const anyOf = (rooms) => `^src/(?:${rooms.map(escapeRegExp).join('|')})/`;

const floorRules = Object.entries(ROOMS).map(([room, allowed]) => ({
  name: `floor-${room.replace('/', '-')}`,
  comment: `src/${room}/ may import only ${allowed.length ? allowed.map((r) => `src/${r}/`).join(', ') : 'itself (it is a leaf)'} (docs/architecture.md)`,
  severity: 'error',
  from: { path: roomPath(room) },
  to: { path: '^src/', pathNot: anyOf([room, ...allowed]) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-file-circles',
      comment: 'No circle of files: split the shared part into a file both import (docs/architecture.md).',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'rooms-on-the-plan',
      comment: 'Every folder of src/ is a room of the floor plan: add a new one to ROOMS here and to docs/architecture.md.',
      severity: 'error',
      from: { path: '^src/', pathNot: anyOf(Object.keys(ROOMS)) },
      to: {},
    },
    {
      name: 'one-cloud-never-imports-another',
      comment: "platform/<cloud>/ holds one cloud's facts; what two clouds share belongs lower (core/, util/, protocol/).",
      severity: 'error',
      from: { path: '^src/platform/([^/]+)/' },
      to: { path: '^src/platform/', pathNot: '^src/platform/$1/' },
    },
    {
      name: 'products-never-import-each-other',
      comment: 'serve/, issuer/, demo/, node-agent/ and webhook/ are products: what two of them share moves down to protocol/, http/ or core/.',
      severity: 'error',
      from: { path: '^src/(serve|issuer|demo|node-agent|webhook)/' },
      to: { path: '^src/(?:serve|issuer|demo|node-agent|webhook)/', pathNot: '^src/$1/' },
    },
    {
      name: 'nothing-imports-cli',
      comment: 'cli/ is the top floor: nothing imports it.',
      severity: 'error',
      from: { pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    ...floorRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(?:node_modules|dist)/' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
