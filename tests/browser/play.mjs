#!/usr/bin/env node
// Plays one live URL in headless Chromium with a real web player and reports what happened.
//
//   node play.mjs --player mpegts|hls [--low-latency] [--min-time S] [--timeout S] URL
//
// The test page and the player bundles (from npm: mpegts.js, hls.js) are served by this
// script's own HTTP server on a loopback port, so the page's origin differs from the media
// server's and the media requests are cross-origin (CORS applies, as on a real website).
// The browser is Debian's /usr/bin/chromium driven by playwright-core, with a fresh empty
// profile.
//
// Success: the video shows pictures (videoWidth > 0) and its currentTime advanced more than
// --min-time (default 1 s) from where playback started, before --timeout (default 30 s).
// Prints one JSON line on stdout:
//   {"ok":true,"currentTime":..,"startTime":..,"advanced":..,"videoWidth":..,
//    "videoHeight":..,"error":null,"latencyMs":..,"latencySource":..., ...}
// latencyMs (hls only): live-edge latency, the median of 5 samples taken after success;
// latencySource "program-date-time" (wall clock minus the playing picture's
// EXT-X-PROGRAM-DATE-TIME) or "hls.js-latency" (hls.js's estimate from the playlist).
// and exits 0; otherwise prints the same line with ok=false and the player's error and
// exits 1 (2 for bad arguments or a browser that does not start).
// stderr gets "play.mjs: browser-pid N" once the browser runs (its own process group, so a
// caller that has to kill us can kill the browser too) and diagnostics.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // muted autoplay is allowed anyway; this keeps play() from ever waiting for a gesture
  '--autoplay-policy=no-user-gesture-required',
];

function usage(msg) {
  process.stderr.write(`play.mjs: ${msg}\n` +
    'usage: node play.mjs --player mpegts|hls [--low-latency] [--min-time S] [--timeout S] URL\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { player: null, url: null, lowLatency: false, minTime: 1.0, timeout: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--player') o.player = val();
    else if (a === '--low-latency') o.lowLatency = true;
    else if (a === '--min-time') o.minTime = Number(val());
    else if (a === '--timeout') o.timeout = Number(val());
    else if (a === '--url') o.url = val();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (!o.url) o.url = a;
    else usage(`unexpected argument ${a}`);
  }
  if (o.player !== 'mpegts' && o.player !== 'hls') usage('--player must be mpegts or hls');
  if (!o.url) usage('no URL given');
  if (!(o.minTime >= 0) || !(o.timeout > 0)) usage('bad --min-time or --timeout');
  return o;
}

const FILES = {
  '/': ['page.html', 'text/html; charset=utf-8'],
  '/lib/mpegts.js': ['node_modules/mpegts.js/dist/mpegts.js', 'text/javascript'],
  '/lib/hls.min.js': ['node_modules/hls.js/dist/hls.min.js', 'text/javascript'],
};

function serve() {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const f = FILES[p];
    if (p === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    if (!f) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    fs.readFile(path.join(here, f[0]), (err, body) => {
      if (err) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
        return;
      }
      res.writeHead(200, { 'content-type': f[1], 'cache-control': 'no-store' });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Our children that lead their own process group: the browser (playwright starts it
// detached). Read from /proc, since the client API does not expose the browser's pid.
function childGroupLeaders() {
  const out = [];
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return out; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat;
    try { stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8'); } catch { continue; }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[1]) === process.pid && Number(f[2]) === Number(e)) out.push(Number(e));
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = parseArgs(process.argv.slice(2));
  for (const f of Object.values(FILES)) {
    if (!fs.existsSync(path.join(here, f[0]))) {
      usage(`${f[0]} is missing: run ./scripts/test (it runs npm ci in tests/browser)`);
    }
  }
  const started = Date.now();
  const deadline = started + o.timeout * 1000;
  const result = {
    ok: false, currentTime: 0, startTime: 0, advanced: 0, videoWidth: 0, videoHeight: 0, error: null,
    player: o.player, url: o.url, elapsedMs: 0, events: [], console: [],
  };
  const logs = [];
  const log = (s) => { logs.push(s); if (logs.length > 30) logs.shift(); };

  // Hard stop: whatever hangs, we answer and leave before the deadline's grace is over.
  const hard = setTimeout(() => {
    result.error = result.error || `play.mjs hard deadline (${o.timeout} s + 10 s) hit`;
    finish(result, 1);
  }, o.timeout * 1000 + 10_000);
  hard.unref();

  const server = await serve();
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: Math.max(1000, deadline - Date.now()),
    });
  } catch (e) {
    server.close();
    result.error = `chromium did not start: ${e.message}`;
    finish(result, 2);
    return;
  }
  for (const pid of childGroupLeaders()) process.stderr.write(`play.mjs: browser-pid ${pid}\n`);

  let code = 1;
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => log(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('response', (r) => {
      if (r.status() >= 300) log(`response ${r.status()} ${r.url()}`);
    });

    const q = new URLSearchParams({ player: o.player, src: o.url });
    if (o.lowLatency) q.set('lowLatency', '1');
    await page.goto(`${pageOrigin}/?${q}`, { timeout: Math.max(1000, deadline - Date.now()) });

    const snap = () => page.evaluate(() => {
      const v = document.getElementById('v');
      const s = window.__play || {};
      return {
        currentTime: v.currentTime, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
        startTime: s.startTime, error: s.error || null, events: s.events || [],
      };
    });
    // Progress is counted from where playback started ('playing'), or else from the first
    // currentTime seen, so a live player parked behind the edge does not pass for playing.
    let firstSeen = null;
    const advanced = (s) => {
      if (firstSeen === null && s.currentTime > 0) firstSeen = s.currentTime;
      const start = s.startTime ?? firstSeen ?? 0;
      return s.currentTime - start;
    };
    const playing = (s) => !s.error && s.videoWidth > 0 && advanced(s) > o.minTime;
    let s = await snap();
    while (Date.now() < deadline && !s.error && !playing(s)) {
      await sleep(100);
      s = await snap();
    }
    if (playing(s)) {
      result.ok = true;
      code = 0;
      if (o.player === 'hls') {
        // A few samples of the live-edge latency; the median goes out.
        const samples = [];
        for (let i = 0; i < 5 && Date.now() < deadline; i++) {
          const l = await page.evaluate(() => (window.__latency ? window.__latency() : null));
          if (l) { samples.push(l.ms); result.latencySource = l.source; }
          await sleep(200);
        }
        if (samples.length) {
          samples.sort((a, b) => a - b);
          result.latencyMs = Math.round(samples[Math.floor(samples.length / 2)]);
        }
      }
      s = await snap();
    } else if (!s.error) {
      s.error = `playback did not advance ${o.minTime} s within ${o.timeout} s ` +
        `(currentTime ${s.currentTime.toFixed(2)} from ${(s.startTime ?? firstSeen ?? 0).toFixed(2)}, ` +
        `videoWidth ${s.videoWidth})`;
    }
    Object.assign(result, {
      currentTime: s.currentTime, startTime: s.startTime ?? firstSeen ?? 0,
      advanced: advanced(s), videoWidth: s.videoWidth, videoHeight: s.videoHeight,
      error: result.ok ? null : s.error, events: s.events,
    });
  } catch (e) {
    result.error = `play.mjs: ${e.message}`;
  }
  result.console = logs;
  result.elapsedMs = Date.now() - started;
  try { await browser.close(); } catch { /* going anyway */ }
  server.close();
  finish(result, code);
}

function finish(result, code) {
  if (code !== 0) process.stderr.write(`play.mjs: FAILED: ${result.error}\n`);
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

main().catch((e) => {
  process.stderr.write(`play.mjs: ${e.stack || e}\n`);
  finish({ ok: false, currentTime: 0, videoWidth: 0, videoHeight: 0, error: String(e.message || e) }, 2);
});
