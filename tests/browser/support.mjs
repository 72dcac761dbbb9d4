// Helpers shared by the browser specs (chat.spec.mjs, tls.spec.mjs, devices.spec.mjs): polling,
// the jimd binary, starting and stopping the daemon, a raw JIM client, the browser, the steps
// of a run and their end, the accessibility audit, and a few page steps.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Default wait for one thing to show up in a page (ms); the machine may be loaded. */
export const STEP_MS = 20000;

/** Resolves after `ms` milliseconds (for polling only, never as synchronisation). */
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Throws Error(msg) unless `cond`. */
export function assert(cond, msg) { if (!cond) throw new Error(msg); }

/**
 * Polls `fn` every 50 ms until it returns a truthy value (returned) or `ms` milliseconds pass
 * (throws, naming `what` and the last error `fn` threw).
 */
export async function waitUntil(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(50);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's ephemeral choice). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The daemon to test: $JIMD, else the newest build*\/bin/jimd of the repository. */
export function findJimd() {
  if (process.env.JIMD) return path.resolve(process.env.JIMD);
  const found = fs.readdirSync(ROOT)
    .filter((d) => d.startsWith('build'))
    .map((d) => path.join(ROOT, d, 'bin', 'jimd'))
    .filter((f) => fs.existsSync(f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!found.length) throw new Error('no jimd binary: build it or set JIMD=/path/to/jimd');
  return found[0];
}

/** GET over http, or https verified against `ca` (PEM); resolves {status, headers, body}. */
export function httpGet(url, ca) {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.get(url, { timeout: 3000, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * A jimd on 127.0.0.1 with its data in `dir`: the JIM port is the kernel's choice (read from
 * its --port-file into `tcpPort`), HTTP (and WebSocket) on `httpPort`. Options: `certs`
 * ({cert, key, ca}: --tls-cert/--tls-key, and the page is https), `args` (more options, e.g.
 * ['--max-sessions', '1'] or ['--admin', 'root']). Fast password hashing, no rate limits.
 */
export class Daemon {
  constructor(bin, dir, httpPort, { certs = null, args = [] } = {}) {
    Object.assign(this, { bin, dir, httpPort, certs, extra: args, proc: null, output: '', tcpPort: 0 });
  }

  async start() {
    const portFile = path.join(this.dir, 'port');
    fs.rmSync(portFile, { force: true });
    const args = ['-a', '127.0.0.1', '-p', '0', '--port-file', portFile,
      '--http-port', String(this.httpPort), '--http-address', '127.0.0.1',
      ...(this.certs ? ['--tls-cert', this.certs.cert, '--tls-key', this.certs.key] : []),
      '--kdf-iterations', '1000', '--rate-limit', '0', '--throttle-loopback', 'no',
      ...this.extra,
      '--data-dir', path.join(this.dir, 'data'), '--log-dir', path.join(this.dir, 'logs')];
    const proc = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const keep = (d) => { this.output = (this.output + d.toString()).slice(-20000); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    proc.exited = new Promise((r) => proc.once('exit', (code, sig) => r({ code, sig })));
    this.tcpPort = await waitUntil(() => {
      if (proc.exitCode !== null) throw new Error(`jimd exited with ${proc.exitCode}:\n${this.output}`);
      const t = fs.existsSync(portFile) ? fs.readFileSync(portFile, 'utf8').trim() : '';
      return /^\d+$/.test(t) ? Number(t) : 0;
    }, 15000, 'the port file');
    await waitUntil(async () => (await httpGet(this.url('/'), this.certs && this.certs.ca)).status === 200, 15000,
      `${this.certs ? 'https' : 'HTTP'} on port ${this.httpPort}`);
  }

  /** The address of `p` on the daemon's HTTP port (https with `certs`). */
  url(p) { return `${this.certs ? 'https' : 'http'}://127.0.0.1:${this.httpPort}${p}`; }

  /** SIGTERM (jimd saves and exits), SIGKILL after 10 s. Only ever the PID we started. */
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return null;
    proc.kill('SIGTERM');
    const done = await Promise.race([proc.exited, sleep(10000).then(() => null)]);
    if (!done) {
      proc.kill('SIGKILL');
      await Promise.race([proc.exited, sleep(3000)]);
      throw new Error('jimd did not exit within 10 s of SIGTERM');
    }
    return done;
  }

  /** SIGKILL, for a watchdog that gives up on the whole run. */
  kill() { if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL'); }
}

// ------------------------------------------------------------------ a raw JIM client

/**
 * A raw JIM client on the daemon's JIM port: plain TCP, or TLS verified against `ca` (PEM) when
 * given. Every frame received is kept in `frames`; `ready` resolves once connected.
 */
export class LineClient {
  constructor(port, { ca = null } = {}) {
    this.frames = [];
    this.buf = '';
    this.what = ca ? 'TLS frame' : 'TCP frame';
    this.sock = ca ? tls.connect({ port, host: '127.0.0.1', ca }) : net.connect(port, '127.0.0.1');
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (line) this.frames.push(JSON.parse(line));
      }
    });
    this.sock.on('error', () => {});
    this.ready = new Promise((resolve, reject) => {
      this.sock.once(ca ? 'secureConnect' : 'connect', resolve);
      this.sock.once('error', reject);
    });
  }

  /** Sends one object as a line. */
  send(obj) { this.sock.write(JSON.stringify(obj) + '\n'); }

  /** Sends `obj` with a fresh tag; resolves its reply (waits at most `ms`). */
  async request(obj, ms = STEP_MS) {
    const tag = `t${Math.random().toString(36).slice(2, 10)}`;
    this.send({ ...obj, tag });
    return this.waitFor((f) => f.tag === tag && typeof f.response === 'number', ms, `reply to ${obj.action}`);
  }

  /** The first frame received so far or within `ms` for which `pred` is true. */
  waitFor(pred, ms, what) {
    return waitUntil(() => this.frames.find(pred), ms, `${this.what}: ${what}`);
  }

  close() { this.sock.destroy(); }
}

// ------------------------------------------------------------------ the browser

/** Chromium's options for every spec: headless in a container, nothing fetched from outside. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

/**
 * Launches headless Chromium ($CHROMIUM, default /usr/bin/chromium) with CHROMIUM_ARGS and
 * `args`; `env` (optional) replaces its environment (e.g. a HOME of its own).
 */
export function launchChromium({ args = [], env } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 60000,
    ...(env ? { env } : {}),
    args: [...CHROMIUM_ARGS, ...args],
  });
}

let axeSource = null;   // axe-core's script, read once when first needed

/** axe-core's violations on the page as it is now: [{id, impact, targets}] (axe from npm, run in the page). */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    axeSource ??= fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
    await page.evaluate(axeSource);
  }
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    if (r.passes.length < 10) throw new Error(`axe checked only ${r.passes.length} rules`);
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.slice(0, 4).map((n) => n.target.join(' ')) }));
  });
}

// ------------------------------------------------------------------ steps of a run

/**
 * The steps of one spec: `step` stops the steps after it when it fails (they build on it),
 * `check` does not (it only reads the pages). One line per step; `finish` prints the totals
 * and exits 1 if anything failed.
 */
export class Run {
  constructor() { this.results = []; this.failed = false; this.started = Date.now(); }

  async #run(name, fn, fatal) {
    if (this.failed) {
      this.results.push({ name, ok: false, skipped: true });
      console.log(`not run - ${name}`);
      return;
    }
    const t0 = Date.now();
    try {
      await fn();
      this.results.push({ name, ok: true });
      console.log(`ok - ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      if (fatal) this.failed = true;
      this.results.push({ name, ok: false });
      console.log(`FAILED - ${name} (${Date.now() - t0} ms)\n  ${String(e && e.stack || e).split('\n').join('\n  ')}`);
    }
  }

  step(name, fn) { return this.#run(name, fn, true); }

  check(name, fn) { return this.#run(name, fn, false); }

  /** Records a failure outside any step (setup, stopping the daemon). */
  fail(name, e) {
    this.failed = true;
    this.results.push({ name, ok: false });
    console.log(`FAILED - ${name}${e ? `: ${e && e.stack || e}` : ''}`);
  }

  /**
   * Ends the whole run after `ms` milliseconds (the daemon killed, exit 1) unless end() comes
   * first: a spec that hangs still says so and stops.
   */
  watchdog(ms, daemon) {
    this.timer = setTimeout(() => {
      console.log(`FAILED - the whole test took more than ${ms / 1000} s`);
      daemon.kill();
      process.exit(1);
    }, ms);
  }

  /**
   * The end of a spec's steps (call it from `finally`): closes `browser` (bounded by 10 s),
   * stops the daemon (a failure of its own), prints the daemon's output when anything failed,
   * stops the watchdog and removes `tmp`.
   */
  async end({ browser, daemon, tmp }) {
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10000)]);
    try {
      await daemon.stop();
    } catch (e) {
      this.fail('jimd stops', e.message);
    }
    if (this.failed && daemon.output) console.log(`--- jimd output (tail) ---\n${daemon.output.slice(-4000)}`);
    clearTimeout(this.timer);
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  /** Prints `label: N s` (with `, note` when given) and the totals; exits 1 if anything failed. */
  finish(label, note = '') {
    const passed = this.results.filter((r) => r.ok).length;
    const notOk = this.results.length - passed;
    console.log(`${label}: ${((Date.now() - this.started) / 1000).toFixed(1)} s${note ? `, ${note}` : ''}`);
    console.log(`${passed} passed, ${notOk} failed`);
    process.exit(notOk ? 1 : 0);
  }
}

/** Runs a spec's `main`; an error outside every step fails the run. */
export function runMain(main) {
  main().catch((e) => {
    console.log(`FAILED - ${e && e.stack || e}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  });
}

// ------------------------------------------------------------------ page steps

/** The message list of the view on screen. */
export const shown = (page) => page.locator('.messages:not([hidden])');

/** Waits until a line containing `text` is visible in the view on screen. */
export async function seeMessage(page, text, ms = STEP_MS) {
  await shown(page).locator('li', { hasText: text }).first().waitFor({ state: 'visible', timeout: ms });
}

/** Types `text` into the message box and presses Enter. */
export async function say(page, text) {
  await page.locator('#text').fill(text);
  await page.locator('#text').press('Enter');
}

/** Waits until the heading names `room` (or '@name' for a conversation). */
export async function roomIs(page, room) {
  await page.waitForFunction((r) => document.getElementById('room-title').textContent === r, room, { timeout: STEP_MS });
}

/** Signs in with an existing account's name and password. */
export async function signIn(page, name, password) {
  await page.locator('#name').fill(name);
  await page.locator('#password').fill(password);
  await page.locator('#password').press('Enter');
  await page.locator('#chat-view').waitFor({ state: 'visible', timeout: STEP_MS });
}

/**
 * Creates an account from the sign-in form (the password typed twice); lands in #general, signed
 * in as `name`. `mismatchFirst`: a wrong repetition first, which the form must refuse.
 */
export async function signUp(page, name, password, { mismatchFirst = false } = {}) {
  await page.locator('#name').fill(name);
  await page.locator('#password').fill(password);
  await page.locator('#signin-submit').click();
  await page.locator('#password2').waitFor({ state: 'visible', timeout: STEP_MS });
  if (mismatchFirst) {
    await page.locator('#password2').fill(`${password}-typo`);
    await page.locator('#password2').press('Enter');
    await page.locator('#signin-error', { hasText: /differ/i }).waitFor({ timeout: STEP_MS });
    await page.locator('#password').fill(password);
  }
  await page.locator('#password2').fill(password);
  await page.locator('#password2').press('Enter');
  await page.locator('#chat-view').waitFor({ state: 'visible', timeout: STEP_MS });
  await roomIs(page, '#general');
  const me = await page.locator('#me').textContent();
  assert(me === name, `signed in as ${me}, expected ${name}`);
}

/** The line of message `id` in the view on screen of `page`. */
export const lineOf = (page, id) => shown(page).locator(`li.msg[data-id="${id}"]`);

/** The id of the last line with `text` in the view on screen. */
export async function lastIdOf(page, text) {
  const id = await shown(page).locator('li.msg', { hasText: text }).last().getAttribute('data-id');
  assert(/^\d+$/.test(id || ''), `the line "${text}" has no message id: ${id}`);
  return id;
}

/** Opens the menu of message `id` with the keyboard; returns the labels of its items. */
export async function openMenuOf(page, id) {
  await lineOf(page, id).locator('.msg-menu-button').focus();
  await page.keyboard.press('Enter');
  await page.locator('#menu').waitFor({ state: 'visible', timeout: STEP_MS });
  return page.locator('#menu [role="menuitem"]').allTextContents();
}
