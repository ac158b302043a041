/**
 * The shape of the code, checked on every `npm test` (`npm run deps`): data flows one way,
 * server/cli -> control client -> supervisor -> managers -> providers and tunnels.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'A cycle means two modules are one concept or a dependency points the wrong way.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'faces-apart',
      severity: 'error',
      comment: 'The MCP server and the CLI are two faces of one API: neither uses the other.',
      from: { path: '^(server|cli)/' },
      to: { path: '^(server|cli)/', pathNot: '^$1/' },
    },
    {
      name: 'faces-thin',
      severity: 'error',
      comment: 'A face talks to the supervisor through core/control only; it may read the api, config, model and lib.',
      from: { path: '^(server|cli)/' },
      to: { path: '^core/', pathNot: '^core/(api|control|config|lib|model)/' },
    },
    {
      name: 'model-stands-alone',
      severity: 'error',
      comment: 'core/model is the vocabulary every layer shares; it depends on nothing of ours.',
      from: { path: '^core/model/' },
      to: { path: '^(core|server|cli)/', pathNot: '^core/model/' },
    },
    {
      name: 'lib-stands-alone',
      severity: 'error',
      comment: 'core/lib holds helpers that know nothing of boxes, tunnels or jobs.',
      from: { path: '^core/lib/' },
      to: { path: '^(core|server|cli)/', pathNot: '^core/lib/' },
    },
    {
      name: 'simulator-behind-local-provider',
      severity: 'error',
      comment: 'The simulated box is reached through the local provider, like any other box.',
      from: { path: '^(core|server|cli)/', pathNot: '^core/(simulator/|providers/local\\.ts$)' },
      to: { path: '^core/simulator/' },
    },
    {
      name: 'product-not-tests',
      severity: 'error',
      comment: 'Shipped code never depends on tests, benchmarks or dev-only packages.',
      from: { path: '^(core|server|cli)/' },
      to: { path: '^(test|bench|scratch)/' },
    },
    {
      name: 'product-not-dev-deps',
      severity: 'error',
      from: { path: '^(core|server|cli)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'declared-packages-only',
      severity: 'error',
      comment: 'Every package we import is in package.json (not just present through another one).',
      from: {},
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown', 'unknown', 'undetermined'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.test.json' },
    // Packages such as the MCP SDK and cac are ESM with an exports map.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'types', 'node', 'default'] },
  },
};
