// Copies the browser builds the pages need from node_modules into vendor/, so whipcast
// serves every script itself (no CDN). Runs as npm `postinstall`; idempotent.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vendor = join(root, 'vendor');
mkdirSync(vendor, { recursive: true });

const files = [
  // [package, file inside the package, name in vendor/]
  ['hls.js', 'dist/hls.min.js', 'hls.min.js'],
];
for (const [pkg, file, name] of files) {
  const dir = join(root, 'node_modules', pkg);
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  copyFileSync(join(dir, file), join(vendor, name));
  console.log(`vendor: ${pkg}@${version} ${file} -> vendor/${name}`);
}
