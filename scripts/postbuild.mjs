// Make the built bins executable (tsc keeps their shebang lines but not the mode).
import { chmodSync, existsSync } from 'node:fs';
for (const bin of ['dist/cli/index.js', 'dist/server/index.js', 'dist/core/supervisor/main.js']) {
  if (existsSync(bin)) chmodSync(bin, 0o755);
}
