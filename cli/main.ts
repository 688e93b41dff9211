#!/usr/bin/env node
// Entry of the `stratavec` admin CLI (the commands are in cli/commands.ts). @riaskov/mmap-io
// finds its native binary with node-pre-gyp, which parses process.argv when the module loads:
// a flag of ours such as `--dir` would steer that lookup and fail it. So the arguments are taken
// and cleared before anything that loads the engine is imported.

const argv = process.argv.slice(2);
process.argv.splice(2);
const { run } = await import('./commands.js');
await run(argv);
