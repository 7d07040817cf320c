// Bundles the pages' ES modules and CSS into static/dist/ (run by `make assets`).
//
// One entry per page (assets/js/pages/*.js); what several pages share (ECharts, the live
// socket) goes into content-hashed chunks that the browser caches once. ECharts is imported
// from `echarts/core` with only the charts and components the pages use (assets/js/lib/charts.js),
// so the overview's JavaScript stays far below its budget (bench/ui.py measures it).
import { build, context } from "esbuild";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const outdir = join(root, "static", "dist");
const pages = readdirSync(join(root, "assets", "js", "pages"))
  .filter((name) => name.endsWith(".js"))
  .map((name) => join(root, "assets", "js", "pages", name));

const options = {
  entryPoints: [...pages, join(root, "assets", "css", "app.css")],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  entryNames: "[name]",
  chunkNames: "chunks/[name]-[hash]",
  assetNames: "assets/[name]-[hash]",
  metafile: true,
  logLevel: "warning",
};

if (process.argv.includes("--watch")) {
  const ctx = await context(options);
  await ctx.watch();
  console.log("watching assets/ for changes");
} else {
  rmSync(outdir, { recursive: true, force: true });
  const result = await build(options);
  writeFileSync(join(outdir, "meta.json"), JSON.stringify(result.metafile));
  const outputs = Object.entries(result.metafile.outputs).filter(([name]) => !name.endsWith(".map"));
  console.log(`built ${outputs.length} files into static/dist/`);
}
