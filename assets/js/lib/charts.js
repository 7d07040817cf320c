// Apache ECharts for every chart of the pages, from `echarts/core` with only what they use
// (so the bundle carries no chart type nobody draws), themed from the page's CSS custom
// properties, accessible (the aria component describes each chart; decal patterns tell the
// series apart without colour), and repainted at most a few times a second however fast
// the live feed pushes data.
import * as echarts from "echarts/core";
import { BarChart, HeatmapChart, LineChart } from "echarts/charts";
import {
  AriaComponent,
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([
  LineChart,
  BarChart,
  HeatmapChart,
  GridComponent,
  TooltipComponent,
  LegendComponent,
  DataZoomComponent,
  VisualMapComponent,
  MarkAreaComponent,
  MarkLineComponent,
  AriaComponent,
  CanvasRenderer,
]);

const charts = new Set();

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** The data palette (Okabe-Ito) and text colours of the current theme. */
export function palette() {
  return {
    series: ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7", "--c8"].map(css),
    text: css("--text"),
    muted: css("--muted"),
    grid: css("--chart-grid"),
    surface: css("--surface"),
    good: css("--good"),
    fair: css("--fair"),
    poor: css("--poor"),
  };
}

// ECharts sizes its text in pixels (12 by default): scale it with the page's root font size,
// so that a kiosk's wall screen (a 24 px base, assets/css/kiosk.css) or a reader's larger
// browser font gets axis labels to match.
function fontSize(px = 12) {
  const root = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  return Math.round((px * root) / 16);
}

function base(p, description) {
  return {
    color: p.series,
    backgroundColor: "transparent",
    textStyle: { color: p.text, fontFamily: getComputedStyle(document.body).fontFamily, fontSize: fontSize() },
    animation: false,
    aria: { enabled: true, label: description ? { description } : { enabled: true }, decal: { show: true } },
    tooltip: {
      trigger: "axis",
      backgroundColor: p.surface,
      borderColor: p.grid,
      textStyle: { color: p.text },
      confine: true,
    },
    legend: { textStyle: { color: p.text, fontSize: fontSize() }, top: 0, type: "plain" },
    grid: { left: 8, right: 16, top: fontSize(36), bottom: 8, containLabel: true },
  };
}

/** Axis styling for the theme; `extra.axisLabel` is merged into the default label style
 * (its colour and size), the rest of `extra` replaces what it names. */
export function axis(p, extra = {}) {
  const { axisLabel, ...rest } = extra;
  return {
    axisLine: { lineStyle: { color: p.grid } },
    axisTick: { lineStyle: { color: p.grid } },
    axisLabel: { color: p.muted, hideOverlap: true, fontSize: fontSize(), ...axisLabel },
    splitLine: { lineStyle: { color: p.grid } },
    nameTextStyle: { color: p.muted, fontSize: fontSize() },
    ...rest,
  };
}

/**
 * A chart in `element`. `build(palette)` returns its option; it is called again when the
 * theme changes. Returns {chart, update(option), resize()}; `update` merges (setOption without
 * notMerge), coalesced to one repaint per `minIntervalMs`.
 */
export function createChart(element, build, { description, minIntervalMs = 250 } = {}) {
  const chart = echarts.init(element, null, { renderer: "canvas" });
  let pending = null;
  let timer = null;
  let last = 0;
  const draw = () => chart.setOption({ ...base(palette(), description), ...build(palette()) }, { notMerge: true });
  draw();
  const flush = () => {
    timer = null;
    last = performance.now();
    const option = pending;
    pending = null;
    chart.setOption(option, { lazyUpdate: false, silent: true });
    // bench/ui.py sets `window.__edRepaints = []` to time POST -> repaint (bounded).
    const repaints = window.__edRepaints;
    if (repaints) {
      repaints.push(performance.timeOrigin + performance.now());
      if (repaints.length > 5000) repaints.splice(0, repaints.length - 5000);
    }
    element.dispatchEvent(new CustomEvent("chart:painted", { bubbles: true }));
  };
  const entry = {
    chart,
    element,
    redraw: draw,
    /** Merge `option` into the chart at the next repaint slot (older pending options are merged too). */
    update(option) {
      pending = pending ? mergeSeries(pending, option) : option;
      if (timer !== null) return;
      const wait = Math.max(0, minIntervalMs - (performance.now() - last));
      timer = setTimeout(() => requestAnimationFrame(flush), wait);
    },
    resize: () => chart.resize(),
    dispose() {
      charts.delete(entry);
      observer.disconnect();
      chart.dispose();
    },
  };
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(element);
  charts.add(entry);
  // The browser tests read what a chart shows from here (ECharts keeps no global registry
  // that a bundled module exposes).
  element.edChart = chart;
  return entry;
}

function mergeSeries(older, newer) {
  // The newest option wins per key; series are replaced whole (the caller sends full data).
  return { ...older, ...newer };
}

// A theme change redraws every chart with the new palette.
window.addEventListener("themechange", () => {
  for (const entry of charts) entry.redraw();
});

export { echarts };
