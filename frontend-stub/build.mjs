// Bundles src/ into OUTDIR (default dist/) with esbuild; `--serve` also serves
// it on HOST:PORT (default 0.0.0.0:3000). BACKEND_URL (default
// http://localhost:4567) is the API the page calls and the relay its browser
// spans are sent to.
import * as esbuild from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';

const outdir = process.env.OUTDIR || 'dist';
const backendUrl = (process.env.BACKEND_URL || 'http://localhost:4567').replace(/\/+$/, '');
const options = {
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: 'es2020',
  outfile: `${outdir}/app.js`,
  define: { __BACKEND_URL__: JSON.stringify(backendUrl) },
  logLevel: 'warning',
};

await mkdir(outdir, { recursive: true });
for (const file of ['index.html', 'style.css']) {
  await copyFile(`src/${file}`, `${outdir}/${file}`);
}
if (process.argv.includes('--serve')) {
  const context = await esbuild.context(options);
  await context.rebuild();
  const host = process.env.HOST || '0.0.0.0';
  const served = await context.serve({ servedir: outdir, host, port: Number(process.env.PORT || 3000) });
  console.log(`frontend-stub on http://${host}:${served.port}, calling ${backendUrl}`);
} else {
  await esbuild.build(options);
  console.log(`frontend-stub built into ${outdir}/, calling ${backendUrl}`);
}
