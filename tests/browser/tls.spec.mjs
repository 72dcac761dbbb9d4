// The web client over https and wss (issue 14), in a real browser: a throwaway CA and a server
// certificate for 127.0.0.1 made here with the openssl CLI, jimd started with --tls-cert and
// --tls-key, and Chromium made to trust that CA for real: the CA goes into an NSS database in a
// HOME of its own (certutil, Debian's libnss3-tools), so Chromium verifies the chain and the name
// as it would for any site. Only when certutil is missing does it fall back to pinning the
// server key's SPKI hash (--ignore-certificate-errors-spki-list: errors are ignored for that
// one key only), and it says so. A browser without the CA must refuse the page (the trust is
// real, not "ignore every error"). Then a sign-up, chat with a raw TLS client on the JIM port,
// and a reload that signs in again with the saved token, all on https://127.0.0.1:PORT/ and
// wss://127.0.0.1:PORT/chat.
//
//   JIMD=build-test/bin/jimd node tests/browser/tls.spec.mjs     (tests/browser/run.sh runs it)
//
// Env: JIMD (default: the newest build*/bin/jimd), CHROMIUM (default /usr/bin/chromium),
// JIM_E2E_TIMEOUT (seconds, default 120), JIM_TLS_TRUST=spki (use the SPKI fallback even when
// certutil is there, to check that path). Prints one line per step, then "N passed, N failed".
import {
  Daemon, LineClient, Run, STEP_MS, assert, findJimd, freePort, httpGet as get, launchChromium, runMain, say,
  seeMessage, signUp,
} from './support.mjs';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TOTAL_MS = Number(process.env.JIM_E2E_TIMEOUT || 120) * 1000;

// ------------------------------------------------------------------ certificates

/** A CA and a leaf for 127.0.0.1 / localhost, signed by it, in `dir` (openssl CLI). */
function makeCertificates(dir) {
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=jimd browser test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  fs.writeFileSync(path.join(dir, 'leaf.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
    'keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'leaf.ext', '-out', 'server.pem']);
  const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
  const leaf = new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'server.pem')));
  const spki = crypto.createHash('sha256')
    .update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return { ca, cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key'), spki };
}

/** An NSS database trusting `caFile` under `home`/.pki/nssdb; false when certutil is missing. */
function trustInNss(home, caFile) {
  const db = path.join(home, '.pki', 'nssdb');
  fs.mkdirSync(db, { recursive: true });
  try {
    execFileSync('certutil', ['-N', '-d', `sql:${db}`, '--empty-password'], { stdio: 'ignore' });
    execFileSync('certutil', ['-A', '-d', `sql:${db}`, '-n', 'jimd-browser-test-ca', '-t', 'C,,', '-i', caFile],
      { stdio: 'ignore' });
    return true;
  } catch (e) {
    if (e.code === 'ENOENT') return false;
    throw e;
  }
}

// ------------------------------------------------------------------ the run

async function main() {
  const run = new Run();
  const bin = findJimd();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jimd-browser-tls-'));
  const certs = makeCertificates(tmp);
  const home = path.join(tmp, 'home');
  const nss = process.env.JIM_TLS_TRUST !== 'spki' && trustInNss(home, path.join(tmp, 'ca.pem'));
  const daemon = new Daemon(bin, tmp, await freePort(), { certs });
  let browser = null;
  let carol = null;
  const pageErrors = [];
  const insecure = [];
  const sockets = [];
  console.log(`jimd: ${bin}`);
  console.log(nss ? 'trust: the test CA in an NSS database (certutil); chain and name verified by Chromium'
    : `trust: ${process.env.JIM_TLS_TRUST === 'spki' ? 'JIM_TLS_TRUST=spki' : 'certutil is missing (apt-get install libnss3-tools)'}: pinning the server key's SPKI instead`);

  run.watchdog(TOTAL_MS, daemon);

  try {
    await run.step('jimd serves the web client over https (and still over http on the same port)', async () => {
      await daemon.start();
      const index = await get(daemon.url('/'), certs.ca);
      assert(index.body.includes('id="chat-view"'), '/ over https is not the web client');
      const plain = await get(`http://127.0.0.1:${daemon.httpPort}/`);
      assert(plain.status === 200, `plain http on the TLS port: HTTP ${plain.status}`);
    });

    await run.step('carol signs up over TLS on the JIM port', async () => {
      carol = new LineClient(daemon.tcpPort, { ca: certs.ca });
      await carol.ready;
      const r = await carol.request({ action: 'register', user: { account_name: 'carol', password: 'carol-pw' } });
      assert(r.response === 201, `register carol: ${JSON.stringify(r)}`);
    });

    if (nss) {
      await run.step('a browser that does not trust the test CA refuses the page', async () => {
        const bare = await launchChromium({ env: { ...process.env, HOME: path.join(tmp, 'empty-home') } });
        try {
          const page = await (await bare.newContext()).newPage();
          let error = null;
          await page.goto(daemon.url('/'), { timeout: STEP_MS }).catch((e) => { error = e; });
          assert(error && /ERR_CERT/.test(error.message), `the untrusted page loaded: ${error && error.message}`);
        } finally {
          await bare.close().catch(() => {});
        }
      });
    }

    browser = await launchChromium({
      env: { ...process.env, HOME: home },
      // (The SPKI list is honoured with a --user-data-dir, which Playwright always gives.)
      args: nss ? [] : [`--ignore-certificate-errors-spki-list=${certs.spki}`],
    });
    const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    ctx.setDefaultTimeout(STEP_MS);
    const alice = await ctx.newPage();
    alice.on('pageerror', (e) => pageErrors.push(e.message));
    alice.on('request', (req) => { if (!/^(https:|wss:|data:)/.test(req.url())) insecure.push(req.url()); });
    alice.on('websocket', (ws) => sockets.push(ws.url()));

    await run.step('the page loads over https and its socket is wss://', async () => {
      const res = await alice.goto(daemon.url('/'), { waitUntil: 'load' });
      assert(res && res.status() === 200, `GET /: ${res && res.status()}`);
      const sec = await res.securityDetails();
      assert(sec && /TLS 1\.[23]/.test(sec.protocol), `security details: ${JSON.stringify(sec)}`);
      assert(sec.issuer === 'jimd browser test CA' || !nss, `issuer: ${sec.issuer}`);
      await alice.waitForFunction(() => window.jimClient && window.jimClient.connected, null, { timeout: STEP_MS });
      assert(sockets.length >= 1 && sockets.every((u) => u.startsWith(`wss://127.0.0.1:${daemon.httpPort}/`)),
        `sockets: ${JSON.stringify(sockets)}`);
    });

    await run.step('alice signs up in the browser and chats with carol', async () => {
      await signUp(alice, 'alice', 'alice-pw');
      await say(alice, 'hello over wss');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'alice' && f.message === 'hello over wss',
        STEP_MS, 'alice\'s message');
      const r = await carol.request({ action: 'msg', message: 'carol over TLS' });
      assert(r.response === 200, `carol's msg: ${JSON.stringify(r)}`);
      await seeMessage(alice, 'carol over TLS');
    });

    await run.step('a reload over https signs in again with the saved token', async () => {
      const saved = await alice.evaluate(() => window.localStorage.getItem('jimd.session'));
      assert(saved && JSON.parse(saved).token, `no token saved: ${saved}`);
      await alice.reload({ waitUntil: 'load' });
      await alice.waitForFunction(() => window.jimClient.signedIn, null, { timeout: STEP_MS });
      assert(await alice.locator('#signin-view').isHidden(), 'the sign-in form is shown after the reload');
      await say(alice, 'back after an https reload');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'alice' && f.message === 'back after an https reload',
        STEP_MS, 'alice\'s message after the reload');
    });

    await run.step('no page errors, nothing fetched without TLS', async () => {
      assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
      assert(insecure.length === 0, `requests without TLS: ${insecure.join(', ')}`);
    });
  } catch (e) {
    run.fail('setup', e);
  } finally {
    if (carol) carol.close();
    await run.end({ browser, daemon, tmp });
  }
  run.finish('browser test over https');
}

runMain(main);
