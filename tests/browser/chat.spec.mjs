// End-to-end test of the web client in a real browser (Debian's headless Chromium, driven by
// playwright-core): jimd serves the page and the WebSocket; two browser pages sign up, chat in
// #general, create and join a room, send private messages, page back through history, follow
// an invitation and survive a daemon restart, while a raw TCP client sees the #general talk;
// unread badges, conversation views, notifications, the people list, the byte counter, keyboard
// use and an axe-core accessibility audit are checked on the way.
//
//   JIMD=build-test/bin/jimd node tests/browser/chat.spec.mjs      (tests/browser/run.sh does it all)
//
// Env: JIMD (the daemon; default: the newest build*/bin/jimd), CHROMIUM (default
// /usr/bin/chromium), JIM_E2E_TIMEOUT (seconds), JIM_SCREENSHOT (where the screenshot goes:
// docs/web-client.png when that file is missing, else a temporary file, so that a test run
// leaves the work tree clean; JIM_SCREENSHOT=docs/web-client.png refreshes the committed one).
// Prints one line per step and closes with "N passed, N failed".
import {
  Daemon, LineClient, ROOT, Run, STEP_MS, assert, axeViolations, findJimd, freePort, httpGet, lastIdOf,
  launchChromium, lineOf, openMenuOf, roomIs, runMain, say, seeMessage, shown, signIn, signUp, sleep, waitUntil,
} from './support.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TOTAL_MS = Number(process.env.JIM_E2E_TIMEOUT || 280) * 1000;   // run.sh stops it at 300

// ------------------------------------------------------------------ page helpers

/** Texts of the lines (messages and system lines) of the room shown, in page order. */
async function lines(page) {
  return shown(page).locator(':scope > li').allTextContents();
}

/** Index of the first line containing `part` (-1 if none). */
function lineIndex(texts, part) { return texts.findIndex((t) => t.includes(part)); }

/** Waits until the element's text is empty; returns how long that took (ms). */
async function becomesEmpty(page, selector, ms = STEP_MS) {
  const t0 = Date.now();
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === '', selector, { timeout: ms });
  return Date.now() - t0;
}

/**
 * The fonts Chromium really used to draw the text of the `index`-th element matching
 * `selector` (DevTools protocol, CSS.getPlatformFontsForNode): [{familyName, glyphCount}].
 */
async function fontsUsed(page, selector, index) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('DOM.enable');
    await cdp.send('CSS.enable');
    const { root } = await cdp.send('DOM.getDocument', { depth: -1 });
    const { nodeIds } = await cdp.send('DOM.querySelectorAll', { nodeId: root.nodeId, selector });
    assert(index < nodeIds.length, `no element ${index} for ${selector}`);
    const { fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId: nodeIds[index] });
    return fonts;
  } finally {
    await cdp.detach().catch(() => {});
  }
}

// ------------------------------------------------------------------ the run

async function main() {
  const run = new Run();
  const bin = findJimd();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jimd-browser-'));
  // One connection per account: the steps below were written for sign-in takeover (several
  // devices of one account are tested in devices.spec.mjs).
  const daemon = new Daemon(bin, tmp, await freePort(), { args: ['--max-sessions', '1'] });
  const committedShot = path.join(ROOT, 'docs', 'web-client.png');
  const shot = process.env.JIM_SCREENSHOT ? path.resolve(process.env.JIM_SCREENSHOT)
    : fs.existsSync(committedShot) ? path.join(tmp, 'web-client.png') : committedShot;
  let browser = null;
  let carol = null;
  let givesTokens = false;    // the daemon's password sign-in replies carry a resume token
  const pageErrors = [];
  const foreign = [];
  console.log(`jimd: ${bin}`);

  run.watchdog(TOTAL_MS, daemon);

  try {
    await run.step('jimd starts and serves the web client over HTTP', async () => {
      await daemon.start();
      const index = await httpGet(daemon.url('/'));
      assert(/text\/html/.test(index.headers['content-type'] || ''), `/ has content-type ${index.headers['content-type']}`);
      assert(index.body.includes('id="chat-view"'), '/ is not the web client');
      for (const [p, type] of [['/app.js', /javascript/], ['/logic.js', /javascript/], ['/style.css', /text\/css/], ['/favicon.svg', /image\/svg\+xml/]]) {
        const r = await httpGet(daemon.url(p));
        assert(r.status === 200, `${p}: HTTP ${r.status}`);
        assert(type.test(r.headers['content-type'] || ''), `${p} has content-type ${r.headers['content-type']}`);
      }
      const missing = await httpGet(daemon.url('/no-such-file.js'));
      assert(missing.status === 404, `/no-such-file.js: HTTP ${missing.status}, expected 404`);
    });

    await run.step('carol signs up over raw TCP', async () => {
      carol = new LineClient(daemon.tcpPort);
      await carol.ready;
      const r = await carol.request({ action: 'register', user: { account_name: 'carol', password: 'carol-pw' } });
      assert(r.response === 201, `register carol: ${JSON.stringify(r)}`);
      givesTokens = typeof r.token === 'string' && r.token.length > 0;
      const m = await carol.request({ action: 'msg', message: 'carol was here first' });
      assert(m.response === 200, `carol's first message: ${JSON.stringify(m)}`);
    });

    browser = await launchChromium();
    const newPage = async (label, viewport, { notifications = false } = {}) => {
      const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1 });
      ctx.setDefaultTimeout(STEP_MS);
      if (notifications) {
        // Permission granted as a user would; every notification the page shows is recorded.
        await ctx.grantPermissions(['notifications'], { origin: daemon.url('') });
        await ctx.addInitScript(() => {
          window.__notes = [];
          const Real = window.Notification;
          const Recording = function (title, opts) {
            window.__notes.push({ title, body: opts && opts.body, tag: opts && opts.tag });
            return new Real(title, opts);
          };
          Recording.requestPermission = (...a) => Real.requestPermission(...a);
          Object.defineProperty(Recording, 'permission', { get: () => Real.permission });
          window.Notification = Recording;
        });
      }
      const page = await ctx.newPage();
      page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
      page.on('request', (req) => {
        const u = req.url();
        if (!u.startsWith(daemon.url('/')) && !u.startsWith(`ws://127.0.0.1:${daemon.httpPort}/`) && !u.startsWith('data:')) foreign.push(`${label}: ${u}`);
      });
      await page.goto(daemon.url('/'), { waitUntil: 'load' });
      await page.waitForFunction(() => window.jimClient && window.jimClient.connected, null, { timeout: STEP_MS });
      return page;
    };
    const alice = await newPage('alice', { width: 1200, height: 760 }, { notifications: true });
    const bob = await newPage('bob', { width: 1000, height: 720 });

    await run.step('alice signs up in the browser (password typed twice)', async () => {
      await signUp(alice, 'alice', 'alice-pw');
      await seeMessage(alice, 'Welcome, alice');
      await seeMessage(alice, 'carol was here first');
    });

    await run.check('the welcome line comes after the history it follows', async () => {
      const texts = await lines(alice);
      const history = lineIndex(texts, 'carol was here first');
      const welcome = lineIndex(texts, 'Welcome, alice');
      assert(history >= 0 && welcome > history, `history at ${history}, welcome at ${welcome}: ${JSON.stringify(texts)}`);
    });

    await run.step('bob signs up; passwords that differ are refused and asked again', async () => {
      await signUp(bob, 'bob', 'bob-pw', { mismatchFirst: true });
    });

    await run.step('alice and bob chat in #general; carol (TCP) sees both', async () => {
      await say(alice, 'Hello from alice in the browser');
      await seeMessage(bob, 'Hello from alice in the browser');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'alice' && f.message === 'Hello from alice in the browser', STEP_MS, 'alice\'s message');
      await say(bob, 'Hi alice, bob here');
      await seeMessage(alice, 'Hi alice, bob here');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'bob' && f.message === 'Hi alice, bob here' && f.to === '#general', STEP_MS, 'bob\'s message');
      // The author and a local HH:MM time are shown with each message.
      const line = shown(bob).locator('li.msg', { hasText: 'Hello from alice' }).first();
      assert((await line.locator('.from').textContent()) === 'alice', 'author not shown');
      assert(/^\d\d:\d\d$/.test(await line.locator('time').textContent()), 'time is not HH:MM');
    });

    await run.step('carol (TCP) talks to both browser pages', async () => {
      const r = await carol.request({ action: 'msg', message: 'carol from the terminal <b>not bold</b>' });
      assert(r.response === 200 && r.delivered === 2, `carol's msg: ${JSON.stringify(r)}`);
      await seeMessage(alice, 'carol from the terminal <b>not bold</b>');
      await seeMessage(bob, 'carol from the terminal <b>not bold</b>');
      // User text is text, never markup.
      const bolds = await shown(alice).locator('b').count();
      assert(bolds === 0, 'user text was rendered as HTML');
    });

    await run.step('errors are shown next to the input', async () => {
      await say(alice, '/join nosuchroom');
      await alice.locator('#composer-error', { hasText: /#nosuchroom/i }).waitFor({ timeout: STEP_MS });
      await say(alice, '/frobnicate');
      await alice.locator('#composer-error', { hasText: /unknown command/i }).waitFor({ timeout: STEP_MS });
    });

    await run.check('errors are in plain words and go when the text that caused them is edited', async () => {
      await say(alice, '/join nosuchroom');
      const text = await alice.locator('#composer-error', { hasText: /#nosuchroom/ }).textContent();
      assert(text === 'There is no room #nosuchroom.', `error text: ${JSON.stringify(text)}`);
      await alice.locator('#text').press('End');
      await alice.locator('#text').type('x');
      await becomesEmpty(alice, '#composer-error', 3000);
      await alice.locator('#text').fill('');
    });

    let roomPassword = '';
    await run.step('alice creates #den; its password is shown once, ready to copy', async () => {
      await alice.locator('#open-join').click();
      await alice.locator('#join-dialog').waitFor({ state: 'visible', timeout: STEP_MS });
      await alice.locator('#create-room').fill('den');
      await alice.locator('#create-room').press('Enter');
      await roomIs(alice, '#den');
      await alice.locator('#secret').waitFor({ state: 'visible', timeout: STEP_MS });
      roomPassword = await alice.locator('#secret-value').inputValue();
      assert(/^[A-Za-z0-9_-]{16,}$/.test(roomPassword), `room password looks wrong: ${roomPassword}`);
      await alice.locator('#secret-copy').click();
      await alice.locator('#secret-status', { hasText: /copied|copy it/i }).waitFor({ timeout: STEP_MS });
      assert(await alice.locator('#join-dialog').isHidden(), 'the rooms dialog is still open');
      await alice.locator('#rooms [data-view="room:#den"][aria-current="page"]').waitFor({ timeout: STEP_MS });
    });

    await run.step('bob joins #den with the shown password (asked for it first)', async () => {
      await bob.locator('#open-join').click();
      await bob.locator('#join-room').fill('den');
      await bob.locator('#join-room').press('Enter');
      await bob.locator('#join-error', { hasText: /password/i }).waitFor({ timeout: STEP_MS });
      const focused = await bob.evaluate(() => document.activeElement && document.activeElement.id);
      assert(focused === 'join-password', `focus is on ${focused}, not the room password field`);
      await bob.locator('#join-password').fill('wrong-password');
      await bob.locator('#join-password').press('Enter');
      await bob.locator('#join-error', { hasText: /wrong password/i }).waitFor({ timeout: STEP_MS });
      await bob.locator('#join-password').fill(roomPassword);
      await bob.locator('#join-password').press('Enter');
      await roomIs(bob, '#den');
      await seeMessage(alice, 'bob joined #den');
      await alice.locator('#users li', { hasText: 'bob' }).waitFor({ timeout: STEP_MS });
    });

    await run.step('alice and bob talk in #den; carol in #general does not see it', async () => {
      await say(bob, 'Nice den, alice 🎉😀 很好');
      await seeMessage(alice, 'Nice den, alice 🎉😀 很好');
      await say(alice, 'Welcome to the den, bob');
      await seeMessage(bob, 'Welcome to the den, bob');
      const r = await carol.request({ action: 'rooms' });
      const den = (r.rooms || []).find((x) => x.room === '#den');
      assert(den && den.online === 2 && den.member === false, `rooms as carol sees them: ${JSON.stringify(r.rooms)}`);
      assert(!carol.frames.some((f) => f.action === 'msg' && f.to === '#den'), 'carol got a #den message');
    });

    let editedId = '';
    let deletedId = '';

    await run.step('alice edits her message in place from its menu (keyboard only); bob sees the new text, marked edited', async () => {
      await say(alice, 'tpyo in the den');
      await seeMessage(bob, 'tpyo in the den');
      const id = await lastIdOf(alice, 'tpyo in the den');
      editedId = id;
      assert(await lastIdOf(bob, 'tpyo in the den') === id, 'bob\'s line has another id');
      let items = await openMenuOf(alice, id);
      assert(items[0] === 'Edit' && items.includes('Delete'), `alice's menu on her message: ${JSON.stringify(items)}`);
      assert(await alice.evaluate(() => document.activeElement.getAttribute('role')) === 'menuitem', 'the focus is not in the menu');
      assert(await lineOf(alice, id).locator('.msg-menu-button').getAttribute('aria-expanded') === 'true', 'aria-expanded not set');
      await alice.keyboard.press('Escape');
      await alice.locator('#menu').waitFor({ state: 'hidden', timeout: STEP_MS });
      assert(await alice.evaluate(() => document.activeElement.classList.contains('msg-menu-button')), 'Escape did not give the focus back to the menu button');
      // Edit, then Escape: nothing changes.
      await openMenuOf(alice, id);
      await alice.keyboard.press('Enter');
      const input = lineOf(alice, id).locator('.edit-input');
      await input.waitFor({ timeout: STEP_MS });
      assert(await input.evaluate((el) => el === document.activeElement), 'the edit field has no focus');
      assert(await input.inputValue() === 'tpyo in the den', `edit field holds ${await input.inputValue()}`);
      await alice.keyboard.press('Escape');
      await input.waitFor({ state: 'detached', timeout: STEP_MS });
      assert(await lineOf(alice, id).locator('.body').textContent() === 'tpyo in the den', 'Escape changed the text');
      // Edit for real; too long is refused with the byte count first.
      await openMenuOf(alice, id);
      await alice.keyboard.press('Enter');
      await input.fill('é'.repeat(2049));
      await lineOf(alice, id).locator('.count[data-level="over"]', { hasText: /shorten it by 2 bytes/ }).waitFor({ timeout: STEP_MS });
      await input.press('Enter');
      await lineOf(alice, id).locator('.edit-box .error', { hasText: /too long/i }).waitFor({ timeout: STEP_MS });
      await input.fill('typo fixed in the den');
      await input.press('Enter');
      await input.waitFor({ state: 'detached', timeout: STEP_MS });
      for (const p of [alice, bob]) {
        await lineOf(p, id).locator('.body', { hasText: 'typo fixed in the den' }).waitFor({ timeout: STEP_MS });
        const mark = lineOf(p, id).locator('.edited');
        assert((await mark.textContent()).trim() === '(edited)', 'no "(edited)"');
        assert(/^Edited at \d\d:\d\d/.test(await mark.getAttribute('title')), `title of (edited): ${await mark.getAttribute('title')}`);
      }
      assert(await shown(bob).locator('li.msg', { hasText: 'tpyo' }).count() === 0, 'bob still sees the old text');
      // bob may not edit or delete alice's message (he does not own #den).
      items = await openMenuOf(bob, id);
      assert(!items.includes('Edit') && !items.includes('Delete'), `bob's menu on alice's message: ${JSON.stringify(items)}`);
      assert(items.includes('Message alice privately'), `bob's menu: ${JSON.stringify(items)}`);
      await bob.keyboard.press('Escape');
      await bob.locator('#menu').waitFor({ state: 'hidden', timeout: STEP_MS });
    });

    await run.step('alice deletes her message (asked first); bob sees "message deleted" without the text; the owner deletes bob\'s', async () => {
      await say(alice, 'to be taken back');
      await seeMessage(bob, 'to be taken back');
      const id = await lastIdOf(alice, 'to be taken back');
      deletedId = id;
      await openMenuOf(alice, id);
      await alice.locator('#menu [role="menuitem"]', { hasText: 'Delete' }).click();
      await alice.locator('#confirm-dialog').waitFor({ state: 'visible', timeout: STEP_MS });
      await alice.locator('#confirm-cancel').click();   // asked first: Cancel keeps it
      await alice.locator('#confirm-dialog').waitFor({ state: 'hidden', timeout: STEP_MS });
      assert(await lineOf(alice, id).locator('.body').textContent() === 'to be taken back', 'Cancel deleted it');
      await openMenuOf(alice, id);
      await alice.locator('#menu [role="menuitem"]', { hasText: 'Delete' }).click();
      await alice.locator('#confirm-ok').click();
      for (const p of [alice, bob]) {
        await lineOf(p, id).locator('.body', { hasText: 'message deleted' }).waitFor({ timeout: STEP_MS });
        assert(await lineOf(p, id).locator('.msg-menu-button').count() === 0, 'a deleted message still has a menu');
      }
      assert(await shown(bob).locator('li', { hasText: 'to be taken back' }).count() === 0, 'bob still sees the deleted text');
      // alice owns #den: she may delete bob's message too; bob's menu on his own has Edit and Delete.
      await say(bob, 'bob says something rude');
      await seeMessage(alice, 'bob says something rude');
      const rude = await lastIdOf(bob, 'bob says something rude');
      const own = await openMenuOf(bob, rude);
      assert(own.includes('Edit') && own.includes('Delete'), `bob's menu on his own message: ${JSON.stringify(own)}`);
      await bob.keyboard.press('Escape');
      const items = await openMenuOf(alice, rude);
      assert(!items.includes('Edit') && items.includes('Delete'), `the owner's menu on bob's message: ${JSON.stringify(items)}`);
      await alice.locator('#menu [role="menuitem"]', { hasText: 'Delete' }).click();
      await alice.locator('#confirm-ok').click();
      await lineOf(bob, rude).locator('.body', { hasText: 'message deleted' }).waitFor({ timeout: STEP_MS });
    });

    await run.step('the owner removes bob from #den (member menu, confirmed); bob sees why in plain words and can come back', async () => {
      const more = alice.locator('#users li[data-user="bob"] .member-menu');
      await more.click();
      const items = await alice.locator('#menu [role="menuitem"]').allTextContents();
      assert(items.includes('Remove bob from #den') && items.includes('Ban bob from #den'), `alice's member menu: ${JSON.stringify(items)}`);
      await alice.locator('#menu [role="menuitem"]', { hasText: 'Remove bob' }).click();
      await alice.locator('#confirm-dialog', { hasText: /Remove bob from #den\?/ }).waitFor({ timeout: STEP_MS });
      await alice.locator('#confirm-ok').click();
      await roomIs(bob, '#general');
      const banner = await bob.locator('#banner').textContent();
      assert(banner.includes('alice removed you from #den. You are in #general now; you can join #den again.'), `bob's banner: ${banner}`);
      assert(await bob.locator('#banner').getAttribute('role') === 'alert', 'the banner is not announced');
      await seeMessage(bob, 'alice removed you from #den');
      await seeMessage(alice, 'bob was removed from #den');
      await bob.locator('#banner-close').click();
      await bob.locator('#banner').waitFor({ state: 'hidden', timeout: STEP_MS });
      // bob is still a member: back in #den without a password.
      await bob.locator('#rooms button[data-view="room:#den"]').click();
      await roomIs(bob, '#den');
      await run.check('bob, not the owner, gets no Remove or Ban in his member menu', async () => {
        await bob.locator('#users li[data-user="alice"] .member-menu').click();
        const his = await bob.locator('#menu [role="menuitem"]').allTextContents();
        assert(his.length === 1 && his[0] === 'Report alice for abuse', `bob's member menu: ${JSON.stringify(his)}`);
        await bob.keyboard.press('Escape');
        await bob.locator('#menu').waitFor({ state: 'hidden', timeout: STEP_MS });
      });
    });

    await run.step('a private message opens its own conversation, never inside a room; badges and the title count it', async () => {
      await say(bob, '/msg alice psst, just for you');
      await bob.waitForFunction(() => window.jimClient.view === 'dm:alice', null, { timeout: STEP_MS });
      await seeMessage(bob, 'psst, just for you');
      const item = alice.locator('#dms button[data-view="dm:bob"]');
      await item.locator('.badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
      assert(await item.evaluate((b) => b.classList.contains('unread') && getComputedStyle(b).fontWeight >= 700), 'bob is not bold in the sidebar');
      assert(/^\(1\) /.test(await alice.title()), `title: ${await alice.title()}`);
      assert(await alice.locator('.messages[data-view="room:#den"] li', { hasText: 'psst' }).count() === 0, 'the private message is in #den');
      assert(await alice.evaluate(() => window.jimClient.view) === 'room:#den', 'alice left #den by herself');
      await item.click();
      await roomIs(alice, '@bob');
      await seeMessage(alice, 'psst, just for you');
      await run.check('a "new messages" divider comes right before the unread message', async () => {
        const texts = await lines(alice);
        const d = texts.indexOf('New messages');
        assert(d >= 0 && texts[d + 1].includes('psst'), `lines: ${JSON.stringify(texts)}`);
      });
      await alice.waitForFunction(() => !/^\(/.test(document.title), null, { timeout: STEP_MS });
      await item.locator('.badge').waitFor({ state: 'detached', timeout: STEP_MS });
      assert(await item.getAttribute('aria-current') === 'page', 'the open conversation is not highlighted');
      await say(alice, 'got it, bob');
      await shown(bob).locator('li.msg.private', { hasText: 'got it, bob' }).waitFor({ timeout: STEP_MS });
      // Escape goes back to the room.
      await alice.locator('#text').press('Escape');
      await roomIs(alice, '#den');
      assert(await shown(alice).locator('li', { hasText: 'got it, bob' }).count() === 0, 'the private reply is in #den');
      await bob.locator('#rooms button[data-view="room:#den"]').click();
      await roomIs(bob, '#den');
      // From the terminal too, wherever alice is.
      const r = await carol.request({ action: 'msg', to: 'alice', message: 'carol here, from a terminal' });
      assert(r.response === 200 && r.delivered === 1, `carol's private msg: ${JSON.stringify(r)}`);
      await alice.locator('#dms button[data-view="dm:carol"] .badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
      // The newest conversation is at the top.
      const order = await alice.locator('#dms .nav-name').allTextContents();
      assert(order[0] === 'carol' && order[1] === 'bob', `conversations: ${JSON.stringify(order)}`);
    });

    await run.check('the message box counts bytes as the server does and warns before a long Cyrillic text is refused', async () => {
      await alice.locator('#text').fill('я'.repeat(1900));
      await alice.locator('#composer-count', { hasText: /bytes left/ }).waitFor({ timeout: STEP_MS });
      await alice.locator('#text').fill('я'.repeat(2049));     // 2049 characters, 4098 bytes
      await alice.locator('#composer-count', { hasText: /^Too long to send: shorten it by 2 bytes/ }).waitFor({ timeout: STEP_MS });
      const before = carol.frames.length;
      await alice.locator('#text').press('Enter');
      await alice.locator('#composer-error', { hasText: /^Too long to send/ }).waitFor({ timeout: STEP_MS });
      await sleep(300);
      assert((await alice.locator('#text').inputValue()).length === 2049, 'the long text was taken out of the box');
      assert(!carol.frames.slice(before).some((f) => f.action === 'msg' && f.from === 'alice'), 'the long text was sent');
      await alice.locator('#text').fill('я'.repeat(2048));     // exactly the limit: accepted
      await becomesEmpty(alice, '#composer-error', 3000);
      await alice.locator('#composer-count', { hasText: /^0 bytes left/ }).waitFor({ timeout: STEP_MS });
      await alice.locator('#text').fill('');
    });

    await run.check('people of the room with their status, visible at 1280x800 without scrolling; away and back', async () => {
      await alice.setViewportSize({ width: 1280, height: 800 });
      const row = alice.locator('#users li[data-user="bob"]');
      await row.waitFor({ timeout: STEP_MS });
      for (const sel of ['#users li[data-user="bob"]', '#users li[data-user="alice"]']) {
        const box = await alice.locator(sel).boundingBox();
        assert(box && box.y >= 0 && box.y + box.height <= 800 && box.x + box.width <= 1280, `${sel} is not on screen: ${JSON.stringify(box)}`);
      }
      // Awaited, not read once: bob's row may still be redrawn from his rejoin a moment ago.
      await row.locator('.user-status', { hasText: /^online$/ }).waitFor({ timeout: 5000 });
      await bob.locator('#away-toggle').click();
      await row.locator('.user-status', { hasText: 'away' }).waitFor({ timeout: 5000 });
      assert(await bob.locator('#away-toggle').getAttribute('aria-pressed') === 'true', 'the away button is not pressed');
      await bob.locator('#away-toggle').click();
      await row.locator('.user-status', { hasText: 'online' }).waitFor({ timeout: 5000 });
      await alice.setViewportSize({ width: 1200, height: 760 });
    });

    await run.check('emoji and CJK are drawn with fonts that have them (no boxes)', async () => {
      const sel = '.messages:not([hidden]) li.msg .body';
      const bodies = await alice.locator(sel).allTextContents();
      const i = bodies.indexOf('Nice den, alice 🎉😀 很好');
      assert(i >= 0, `message not found in ${JSON.stringify(bodies)}`);
      const fonts = await fontsUsed(alice, sel, i);
      const names = fonts.map((f) => `${f.familyName} (${f.glyphCount})`).join(', ');
      assert(fonts.some((f) => /emoji/i.test(f.familyName) && f.glyphCount >= 2), `the emoji font did not draw both 🎉 and 😀: ${names}`);
      assert(fonts.some((f) => /wenquanyi|cjk|hei|fallback|mincho|gothic|song|ming/i.test(f.familyName)),
        `no CJK font drew 很好: ${names}`);
    });

    await run.step('screenshot of the web client', async () => {
      await alice.locator('#secret-close').click();
      await say(alice, 'See you in #general later');
      await seeMessage(bob, 'See you in #general later');
      await alice.locator('#text').fill('typing a reply…');
      fs.mkdirSync(path.dirname(shot), { recursive: true });
      await alice.screenshot({ path: shot });
      await alice.locator('#text').fill('');
      assert(fs.statSync(shot).size > 10000, 'screenshot is suspiciously small');
    });

    await run.check('user text is isolated: an override in a message does not reverse what is around it', async () => {
      const r = await carol.request({ action: 'msg', to: 'alice', message: '\u202Eevil override' });
      assert(r.response === 200, `carol's msg: ${JSON.stringify(r)}`);
      await alice.locator('#dms button[data-view="dm:carol"]').click();
      await roomIs(alice, '@carol');
      const li = shown(alice).locator('li.msg.private', { hasText: 'evil override' });
      await li.waitFor({ timeout: STEP_MS });
      const geo = await li.evaluate((el) => {
        const body = el.querySelector('.body').getBoundingClientRect();
        const from = el.querySelector('.from').getBoundingClientRect();
        return { bodyLeft: body.left, fromRight: from.right };
      });
      assert(geo.fromRight <= geo.bodyLeft + 1, `the author is drawn after the message text: ${JSON.stringify(geo)}`);
      // Every kind of user text sits in its own isolate.
      const loose = await alice.evaluate(() => {
        const isolated = (el) => /isolate|plaintext/.test(getComputedStyle(el).unicodeBidi);
        const want = ['#me', '#room-title', '#target-label', '.messages li.msg .from',
          '.messages li.msg .body', '#users .user-name', '#users .user-status', '#rooms .room-name', '#dms .nav-name'];
        const bad = [];
        for (const sel of want) {
          const els = Array.from(document.querySelectorAll(sel));
          if (!els.length) bad.push(`${sel}: none`);
          for (const el of els) {
            if (isolated(el)) continue;
            const inner = Array.from(el.querySelectorAll('bdi'));
            if (!inner.length || !inner.every(isolated)) bad.push(`${sel}: ${JSON.stringify(el.textContent.slice(0, 30))}`);
          }
        }
        // Our own lines that name somebody or a room: the name is in an isolate.
        for (const el of document.querySelectorAll('.messages li.sys .body, #directory .room-meta')) {
          const names = el.textContent.match(/\b(alice|bob|carol|dave)\b|#den\b/g) || [];
          for (const n of names) {
            if (!Array.from(el.querySelectorAll('bdi')).some((b) => isolated(b) && b.textContent === n)) {
              bad.push(`${JSON.stringify(el.textContent.slice(0, 40))}: ${n} not isolated`);
            }
          }
        }
        return bad;
      });
      assert(loose.length === 0, `user text not isolated: ${loose.slice(0, 8).join('; ')}`);
      await alice.locator('#rooms button[data-view="room:#den"]').click();
      await roomIs(alice, '#den');
    });

    let dave = null;
    await run.step('history scroll-back on a phone-sized screen (dave, 390x844)', async () => {
      for (let i = 1; i <= 30; i++) carol.send({ action: 'msg', message: `count ${i}`, tag: `count${i}` });
      const last = await carol.waitFor((f) => f.tag === 'count30', STEP_MS, 'the reply to count 30');
      assert(last.response === 200, `count 30: ${JSON.stringify(last)}`);
      dave = await newPage('dave', { width: 390, height: 844 });
      await signUp(dave, 'dave', 'dave-pw');
      await seeMessage(dave, 'count 30');
      // Only the last 20 were pushed on sign-in: the older ones come with "Load older messages".
      assert(await shown(dave).locator('li', { hasText: 'Hello from alice in the browser' }).count() === 0, 'old message shown before scrolling back');
      await dave.locator('#older').click();
      await seeMessage(dave, 'Hello from alice in the browser');
      await seeMessage(dave, 'count 1');
      const texts = await shown(dave).locator('li.msg .body').allTextContents();
      const i1 = texts.indexOf('count 1');
      const i30 = texts.indexOf('count 30');
      const iHello = texts.indexOf('Hello from alice in the browser');
      assert(iHello >= 0 && iHello < i1 && i1 < i30, `messages out of order: ${JSON.stringify(texts)}`);
      assert(new Set(texts).size === texts.length, 'a message is shown twice');
      await dave.locator('#older', { hasText: /no older/i }).waitFor({ timeout: STEP_MS });
    });

    await run.check('dave\'s welcome line comes after the 20 messages of history it follows', async () => {
      const texts = await lines(dave);
      const last = lineIndex(texts, 'count 30');
      const welcome = lineIndex(texts, 'Welcome, dave');
      assert(last >= 0 && welcome > last, `count 30 at ${last}, welcome at ${welcome}: ${JSON.stringify(texts.slice(-6))}`);
    });

    await run.step('phone layout: panel toggles, no horizontal scroll, 44 px touch targets, labelled inputs', async () => {
      const wide = await dave.evaluate(() => document.documentElement.scrollWidth);
      assert(wide <= 390, `page is ${wide} px wide on a 390 px screen`);
      assert(!(await dave.locator('#side').isVisible()), 'side panel visible before it is opened');
      await dave.locator('#side-toggle').click();
      await dave.locator('#rooms').waitFor({ state: 'visible', timeout: STEP_MS });
      assert(await dave.locator('#side-toggle').getAttribute('aria-expanded') === 'true', 'aria-expanded not updated');
      const small = await dave.evaluate(() => Array.from(document.querySelectorAll('button, input, textarea'))
        .filter((el) => el.offsetParent !== null)
        .map((el) => ({ id: el.id || el.textContent.trim().slice(0, 20), h: el.getBoundingClientRect().height, w: el.getBoundingClientRect().width }))
        .filter((r) => r.h < 43.5 || r.w < 43.5));
      assert(small.length === 0, `touch targets under 44 px: ${JSON.stringify(small)}`);
      const unlabelled = await dave.evaluate(() => Array.from(document.querySelectorAll('input, textarea'))
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map((el) => el.id));
      assert(unlabelled.length === 0, `inputs without a label: ${unlabelled}`);
      assert(await dave.locator('[role="log"][aria-live]').count() === 1, 'no aria-live message log');
      await dave.keyboard.press('Escape');
      await dave.waitForFunction(() => !document.body.classList.contains('side-open'), null, { timeout: STEP_MS });
      await run.check('the panels slide, but not with prefers-reduced-motion', async () => {
        const slide = () => dave.evaluate(() => getComputedStyle(document.getElementById('side')).transitionDuration);
        assert(await slide() !== '0s', `no transition: ${await slide()}`);
        await dave.emulateMedia({ reducedMotion: 'reduce' });
        assert(await slide() === '0s', `transition with reduced motion: ${await slide()}`);
      });
    });

    await run.step('dave tries #den with a wrong password', async () => {
      await dave.locator('#side-toggle').click();
      await dave.locator('#open-join').click();
      await dave.locator('#join-room').fill('den');
      await dave.locator('#join-password').fill('not-the-password');
      await dave.locator('#join-password').press('Enter');
      await dave.locator('#join-error', { hasText: /wrong password for #den/i }).waitFor({ timeout: STEP_MS });
      await dave.keyboard.press('Escape');
      await dave.waitForFunction(() => !document.body.classList.contains('side-open'), null, { timeout: STEP_MS });
    });

    await run.step('an invitation shows a clickable "join #den" notice', async () => {
      await say(alice, '/invite dave');
      await seeMessage(alice, 'dave is invited');
      const join = shown(dave).getByRole('button', { name: 'join #den' });
      await join.waitFor({ timeout: STEP_MS });
      await join.click();
      await roomIs(dave, '#den');
      await seeMessage(dave, 'Welcome to the den, bob');   // the room's recent history
      await seeMessage(alice, 'dave joined #den');
      await run.check('the wrong-password error is gone once dave is in the room', async () => {
        const text = await dave.locator('#join-error').textContent();
        assert(text === '', `#join-error still says ${JSON.stringify(text)}`);
      });
      await run.check('"You are now in #den" comes after the room\'s history', async () => {
        const texts = await lines(dave);
        const history = lineIndex(texts, 'Welcome to the den, bob');
        const now = lineIndex(texts, 'You are now in #den');
        assert(history >= 0 && now > history, `history at ${history}, "You are now in" at ${now}: ${JSON.stringify(texts)}`);
      });
      await dave.locator('#exit').click();
      await roomIs(dave, '#general');
      await seeMessage(alice, 'dave left #den');
      await seeMessage(dave, 'count 30');
    });

    await run.check('people and room counts follow joins and exits in seconds (no 30 s poll)', async () => {
      // alice and bob are in #den, dave (phone, panel open) in #general. carol (TCP) goes into
      // #den and back.
      await dave.locator('#side-toggle').click();
      await dave.locator('#rooms').waitFor({ state: 'visible', timeout: STEP_MS });
      const roomsText = (page) => page.evaluate(() => document.getElementById('directory').textContent);
      const usersText = (page) => page.evaluate(() => document.getElementById('users').textContent);
      await dave.waitForFunction(() => /carol/.test(document.getElementById('users').textContent), null, { timeout: 8000 });
      const t0 = Date.now();
      const j = await carol.request({ action: 'join', room: 'den', password: roomPassword });
      assert(j.response === 200, `carol joins #den: ${JSON.stringify(j)}`);
      await alice.locator('#users li', { hasText: 'carol' }).waitFor({ timeout: 3000 });    // a join event
      await waitUntil(async () => /#den3 online/.test(await roomsText(dave)), 8000, 'dave\'s list of rooms: #den 3 online');
      await waitUntil(async () => !/carol/.test(await usersText(dave)), 8000, 'carol gone from dave\'s people in #general');
      const joined = Date.now() - t0;
      const x = await carol.request({ action: 'exit' });
      assert(x.response === 200, `carol exits: ${JSON.stringify(x)}`);
      await waitUntil(async () => !/carol/.test(await usersText(alice)), 3000, 'carol gone from alice\'s people in #den');
      await waitUntil(async () => /#den2 online/.test(await roomsText(dave)), 8000, 'dave\'s room list: #den 2 online');
      await waitUntil(async () => /carol/.test(await usersText(dave)), 8000, 'carol back in dave\'s people in #general');
      console.log(`  (counts followed carol's join in ${joined} ms)`);
      await dave.keyboard.press('Escape');
      await dave.waitForFunction(() => !document.body.classList.contains('side-open'), null, { timeout: STEP_MS });
    });

    await run.check('a message that arrives while the view is scrolled up stays unread until the view is scrolled down', async () => {
      const badge = dave.locator('#rooms button[data-view="room:#general"] .badge');
      await dave.evaluate(() => { document.getElementById('log-wrap').scrollTop = 0; });
      assert(await dave.evaluate(() => document.getElementById('log-wrap').scrollHeight > document.getElementById('log-wrap').clientHeight + 100), 'nothing to scroll');
      await carol.request({ action: 'msg', message: 'while dave reads older messages' });
      await badge.waitFor({ state: 'attached', timeout: STEP_MS });   // (in the folded panel)
      assert(await dave.locator('#side-toggle-badge').isVisible(), 'the Rooms button shows no unread count');
      await dave.evaluate(() => { const w = document.getElementById('log-wrap'); w.scrollTop = w.scrollHeight; });
      await badge.waitFor({ state: 'detached', timeout: STEP_MS });
    });

    await run.step('rooms being watched get unread badges and a bold name; opening one shows a divider and clears them', async () => {
      // alice is in #den; carol (TCP, in #general) talks in #general, once naming alice. (alice
      // has not seen carol's 30 "count" messages nor the one of the check above either.)
      const badgeOf = async (loc) => Number((await loc.locator('.badge').count()) ? await loc.locator('.badge').textContent() : 0);
      const general = alice.locator('#rooms button[data-view="room:#general"]');
      const before = await badgeOf(general);
      assert(before === 31, `#general's badge before: ${before}`);   // 30 counts, 1 while dave scrolled
      for (const text of ['first unseen in general', 'second one, alice: look here']) {
        const r = await carol.request({ action: 'msg', message: text });
        assert(r.response === 200, `carol: ${JSON.stringify(r)}`);
      }
      await waitUntil(async () => (await badgeOf(general)) === before + 2, STEP_MS, `#general's badge: ${before + 2}`);
      assert(await general.evaluate((b) => b.classList.contains('unread')), '#general is not bold');
      const total = await alice.evaluate(() => window.jimClient.unread);
      assert(total >= 33 && (await alice.title()).startsWith(`(${total}) `), `title: ${await alice.title()}, ${total} unread`);
      assert(/33 unread/.test(await general.textContent()), 'the badge has no words for screen readers');
      await general.click();
      await roomIs(alice, '#general');
      await seeMessage(alice, 'second one, alice: look here');
      const texts = await lines(alice);
      const d = texts.indexOf('New messages');
      assert(d >= 0 && texts[d + 1].includes('count 1'), `lines: ${JSON.stringify(texts)}`);
      assert(texts.slice(0, d).some((t) => t.includes('carol from the terminal')), 'what alice had read is not above the divider');
      await general.locator('.badge').waitFor({ state: 'detached', timeout: STEP_MS });
      await run.check('a mention of your name is highlighted, other messages are not', async () => {
        assert(await shown(alice).locator('li.msg.mention', { hasText: 'alice: look here' }).count() === 1, 'mention not highlighted');
        assert(await shown(alice).locator('li.msg.mention', { hasText: 'first unseen' }).count() === 0, 'a plain message is highlighted');
      });
      await alice.locator('#rooms button[data-view="room:#den"]').click();
      await roomIs(alice, '#den');
    });

    await run.step('desktop notifications for private messages and mentions while the tab is hidden (permission granted)', async () => {
      assert(await alice.locator('#notify-ask').isHidden(), 'alice (permission granted) is asked again');
      assert(await bob.locator('#notify-ask').isVisible(), 'bob is not offered notifications');
      await bob.locator('#notify-no').click();
      assert(await bob.locator('#notify-ask').isHidden(), 'the offer stays after "Not now"');
      assert(await bob.evaluate(() => window.localStorage.getItem('jimd.notifications-asked')) === '1', 'the answer is not kept');
      const hide = (hidden) => alice.evaluate((h) => {
        if (h) Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
        else delete document.visibilityState;
        document.dispatchEvent(new Event('visibilitychange'));
      }, hidden);
      await alice.evaluate(() => { window.__notes.length = 0; });
      await hide(true);
      try {
        await carol.request({ action: 'msg', to: 'alice', message: 'are you there?' });
        await carol.request({ action: 'msg', message: 'plain chatter in general' });
        await carol.request({ action: 'msg', message: '@alice meeting now' });
        await say(bob, 'bob talks in the den meanwhile');
        const notes = await waitUntil(async () => {
          const n = await alice.evaluate(() => window.__notes);
          return n.length >= 2 ? n : null;
        }, STEP_MS, 'two notifications');
        await sleep(300);
        const all = await alice.evaluate(() => window.__notes);
        assert(all.length === 2, `notifications: ${JSON.stringify(all)}`);
        assert(notes[0].tag === 'dm:carol' && notes[0].body === 'are you there?' && /carol/.test(notes[0].title), `first: ${JSON.stringify(notes[0])}`);
        assert(notes[1].tag === 'room:#general' && notes[1].body === '@alice meeting now', `second: ${JSON.stringify(notes[1])}`);
        // The room on screen counts as unread while the tab is hidden ...
        await alice.locator('#rooms button[data-view="room:#den"] .badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
      } finally {
        await hide(false);
      }
      // ... and is read once it can be seen again.
      await alice.locator('#rooms button[data-view="room:#den"] .badge').waitFor({ state: 'detached', timeout: STEP_MS });
    });

    await run.check('keyboard only: skip link, Alt+arrows between views, a dialog that gives the focus back', async () => {
      const firstClass = await alice.evaluate(() => {
        const el = Array.from(document.querySelectorAll('a[href], button, input, textarea, select, [tabindex]'))
          .find((e) => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length);
        return el && el.className;
      });
      assert(firstClass === 'skip-link', `the first stop of Tab is ${firstClass}, not the skip link`);
      await alice.locator('.skip-link').focus();
      const box = await alice.locator('.skip-link').boundingBox();
      assert(box && box.y >= 0, 'the skip link is not shown when it has the focus');
      await alice.keyboard.press('Enter');
      await alice.waitForFunction(() => document.activeElement.id === 'text', null, { timeout: 3000 });
      const order = await alice.evaluate(() => Array.from(document.querySelectorAll('#side .nav-item')).map((b) => b.dataset.view));
      const at = order.indexOf('room:#den');
      await alice.keyboard.press('Alt+ArrowDown');
      await alice.waitForFunction((v) => window.jimClient.view === v, order[at + 1], { timeout: STEP_MS });
      await alice.keyboard.press('Alt+ArrowUp');
      await alice.waitForFunction(() => window.jimClient.view === 'room:#den', null, { timeout: STEP_MS });
      assert(await alice.evaluate(() => document.activeElement.id) === 'text', 'the focus left the message box');
      // A message that redraws the sidebar leaves the focus where it was.
      await alice.locator('#rooms button[data-view="room:#general"]').focus();
      await carol.request({ action: 'msg', message: 'redraw the badges' });
      await alice.locator('#rooms button[data-view="room:#general"] .badge').waitFor({ timeout: STEP_MS });
      assert(await alice.evaluate(() => document.activeElement.dataset.view) === 'room:#general', 'a new message took the focus away');
      await alice.locator('#open-join').focus();
      await alice.keyboard.press('Enter');
      await alice.waitForFunction(() => document.activeElement.id === 'join-room', null, { timeout: 3000 });
      await alice.keyboard.press('Escape');
      await alice.waitForFunction(() => document.activeElement.id === 'open-join' && !document.getElementById('join-dialog').open, null, { timeout: 3000 });
    });

    await run.check('accessibility audit (axe-core): no serious or critical violations', async () => {
      const states = [
        ['alice, desktop, a room', alice, async () => {}],
        ['alice, a message menu open', alice, async () => {
          await shown(alice).locator('li.msg .msg-menu-button').last().click();
          await alice.locator('#menu').waitFor({ state: 'visible', timeout: STEP_MS });
        }],
        ['alice, editing a message', alice, async () => {
          await alice.keyboard.press('Escape');
          await say(alice, 'a line to edit for the audit');
          const line = shown(alice).locator('li.msg.mine', { hasText: 'a line to edit for the audit' }).last();
          await line.locator('.msg-menu-button').click();
          await alice.locator('#menu [role="menuitem"]', { hasText: 'Edit' }).click();
          await line.locator('.edit-input').waitFor({ timeout: STEP_MS });
        }],
        ['alice, a member menu open', alice, async () => {
          await alice.keyboard.press('Escape');
          await alice.locator('#users .member-menu').first().click();
          await alice.locator('#menu').waitFor({ state: 'visible', timeout: STEP_MS });
        }],
        ['alice, the confirm dialog', alice, async () => {
          await alice.locator('#menu [role="menuitem"]').last().click();
          await alice.locator('#confirm-dialog').waitFor({ state: 'visible', timeout: STEP_MS });
        }],
        ['alice, desktop, a conversation', alice, async () => {
          await alice.locator('#confirm-cancel').click();
          await alice.locator('#dms button[data-view="dm:bob"]').click();
          await roomIs(alice, '@bob');
        }],
        ['alice, dark colours', alice, async () => { await alice.emulateMedia({ colorScheme: 'dark' }); }],
        ['alice, the rooms dialog', alice, async () => {
          await alice.emulateMedia({ colorScheme: 'light' });
          await alice.locator('#rooms button[data-view="room:#den"]').click();
          await roomIs(alice, '#den');
          await alice.locator('#open-join').click();
        }],
        ['dave, phone, rooms panel open', dave, async () => { await dave.locator('#side-toggle').click(); }],
        ['the sign-in form', null, async () => {}],
      ];
      const bad = [];
      for (const [label, given, prepare] of states) {
        await prepare();
        const page = given || await newPage('audit', { width: 1000, height: 700 });
        const found = await axeViolations(page);
        if (!given) await page.context().close();
        const serious = found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
        console.log(`  axe ${label}: ${found.length} violations${found.length ? ` (${found.map((v) => `${v.id}/${v.impact}`).join(', ')})` : ''}`);
        for (const v of serious) bad.push(`${label}: ${v.id} (${v.impact}) ${JSON.stringify(v.targets)}`);
      }
      await alice.keyboard.press('Escape');
      await dave.keyboard.press('Escape');
      assert(bad.length === 0, `serious violations:\n  ${bad.join('\n  ')}`);
    });

    await run.step('after a daemon restart the pages reconnect and sign in again by themselves', async () => {
      carol.close();
      const stopped = await daemon.stop();
      assert(stopped && stopped.code === 0, `jimd exit after SIGTERM: ${JSON.stringify(stopped)}`);
      await alice.locator('#conn[data-state="offline"]').waitFor({ timeout: STEP_MS });
      await say(alice, 'typed while offline');
      await alice.locator('#composer-error', { hasText: /not connected/i }).waitFor({ timeout: STEP_MS });
      await daemon.start();
      for (const [p, room] of [[alice, '#den'], [bob, '#den'], [dave, '#general']]) {
        await p.waitForFunction(() => window.jimClient.signedIn, null, { timeout: 40000 });
        await roomIs(p, room);
      }
      await seeMessage(alice, 'Reconnected');
      await run.check('"Not connected" goes once the page is connected again; the text is kept', async () => {
        await becomesEmpty(alice, '#composer-error', 3000);
        const kept = await alice.locator('#text').inputValue();
        assert(kept === 'typed while offline', `the message box holds ${JSON.stringify(kept)}`);
      });
      await say(alice, 'Back after the restart');
      await seeMessage(bob, 'Back after the restart');
      const texts = await shown(bob).locator('li.msg:not(.deleted) .body').allTextContents();
      assert(new Set(texts).size === texts.length, `a message is shown twice after reconnecting: ${JSON.stringify(texts)}`);
      carol = new LineClient(daemon.tcpPort);
      await carol.ready;
      const r = await carol.request({ action: 'authenticate', user: { account_name: 'carol', password: 'carol-pw' } });
      assert(r.response === 200, `carol after the restart: ${JSON.stringify(r)}`);
      await say(dave, 'dave is back too');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'dave' && f.message === 'dave is back too', STEP_MS, 'dave\'s message');
    });

    await run.step('a reload signs in again with the saved token, without the password', async () => {
      if (!givesTokens) {
        console.log('  (skipped: this jimd gives no resume tokens)');
        return;
      }
      const saved = await alice.evaluate(() => window.localStorage.getItem('jimd.session'));
      assert(saved, 'no session in localStorage');
      const session = JSON.parse(saved);
      assert(session.name === 'alice' && typeof session.token === 'string', `saved: ${saved}`);
      assert(!saved.includes('alice-pw'), 'the password is in localStorage');
      await alice.reload({ waitUntil: 'load' });
      await alice.waitForFunction(() => window.jimClient.signedIn, null, { timeout: STEP_MS });
      await roomIs(alice, '#general');
      assert(await alice.locator('#signin-view').isHidden(), 'the sign-in form is still shown');
      const me = await alice.locator('#me').textContent();
      assert(me === 'alice', `signed in as ${me}`);
      await say(alice, 'back after a reload');
      await carol.waitFor((f) => f.action === 'msg' && f.from === 'alice' && f.message === 'back after a reload',
        STEP_MS, 'alice\'s message after the reload');
      await run.check('after the reload the conversations are listed and one opens with its history', async () => {
        const item = alice.locator('#dms button[data-view="dm:bob"]');
        await item.waitFor({ timeout: STEP_MS });
        assert(await alice.locator('#rooms button[data-view="room:#general"] .badge').count() === 0, '#general still has a badge after it was read');
        await item.click();
        await roomIs(alice, '@bob');
        await seeMessage(alice, 'psst, just for you');
        await seeMessage(alice, 'got it, bob');
        await alice.locator('#rooms button[data-view="room:#general"]').click();
        await roomIs(alice, '#general');
      });
      await run.check('after the reload #den\'s history shows the edited message as edited and the deleted one as deleted', async () => {
        await alice.locator('#rooms button[data-view="room:#den"]').click();
        await roomIs(alice, '#den');
        await lineOf(alice, editedId).locator('.body', { hasText: 'typo fixed in the den' }).waitFor({ timeout: STEP_MS });
        assert(await lineOf(alice, editedId).locator('.edited').count() === 1, 'no "(edited)" in the history');
        await lineOf(alice, deletedId).locator('.body', { hasText: 'message deleted' }).waitFor({ timeout: STEP_MS });
        assert(await shown(alice).locator('li', { hasText: 'to be taken back' }).count() === 0, 'the deleted text is back in the history');
        assert(await shown(alice).locator('li.msg:not([data-id])').count() === 0, 'a message line without its id');
        await alice.locator('#rooms button[data-view="room:#general"]').click();
        await roomIs(alice, '#general');
      });
      await run.check('a token that no longer works brings back the sign-in form, in plain words', async () => {
        await alice.evaluate(() => window.localStorage.setItem('jimd.session',
          JSON.stringify({ name: 'alice', token: 'not-a-valid-token' })));
        await alice.reload({ waitUntil: 'load' });
        await alice.locator('#signin-info', { hasText: /saved sign-in has expired/i }).waitFor({ timeout: STEP_MS });
        assert(await alice.evaluate(() => window.localStorage.getItem('jimd.session')) === null,
          'the refused token is still saved');
        await alice.waitForFunction(() => window.jimClient.connected, null, { timeout: STEP_MS });
        await signIn(alice, 'alice', 'alice-pw');
        await roomIs(alice, '#general');
      });
    });

    await run.step('signing in from a second window takes over without a reconnect fight', async () => {
      const bob2 = await newPage('bob2', { width: 800, height: 600 });
      await signIn(bob2, 'bob', 'bob-pw');
      await roomIs(bob2, '#general');
      await bob.locator('#conn', { hasText: /another window/i }).waitFor({ timeout: STEP_MS });
      await sleep(2500);   // longer than the first back-off step: the old window must stay out
      assert(!(await bob.evaluate(() => window.jimClient.signedIn)), 'the old window signed in again');
      assert(await bob2.evaluate(() => window.jimClient.signedIn), 'the new window lost the account');
      await bob2.context().close();
      await bob.locator('#reconnect-now').click();
      await bob.waitForFunction(() => window.jimClient.signedIn, null, { timeout: STEP_MS });
      await roomIs(bob, '#den');
    });

    await run.step('sign out returns to the sign-in form; a wrong password is refused', async () => {
      await say(bob, '/frobnicate');
      await bob.locator('#composer-error', { hasText: /unknown command/i }).waitFor({ timeout: STEP_MS });
      const tokenBefore = await bob.evaluate(() => window.localStorage.getItem('jimd.session'));
      await bob.locator('#signout').click();
      await bob.locator('#signin').waitFor({ state: 'visible', timeout: STEP_MS });
      await run.check('sign out forgets the saved token and the server revokes it', async () => {
        assert(await bob.evaluate(() => window.localStorage.getItem('jimd.session')) === null, 'the token is still saved');
        if (!givesTokens) return;
        const token = JSON.parse(tokenBefore).token;
        const c = new LineClient(daemon.tcpPort);
        await c.ready;
        const r = await c.request({ action: 'authenticate', user: { account_name: 'bob', token } });
        c.close();
        assert(r.response === 402, `the old token still signs in: ${JSON.stringify(r)}`);
      });
      await bob.waitForFunction(() => window.jimClient.connected, null, { timeout: STEP_MS });
      await bob.locator('#name').fill('bob');
      await bob.locator('#password').fill('not-bobs-password');
      await bob.locator('#password').press('Enter');
      await bob.locator('#signin-error', { hasText: /wrong password/i }).waitFor({ timeout: STEP_MS });
      await run.check('a wrong password is said in plain words', async () => {
        const text = await bob.locator('#signin-error').textContent();
        assert(text === 'Wrong password.', `sign-in error: ${JSON.stringify(text)}`);
      });
      // While bob is away: one message in #general and a private one, both unread at his return.
      assert((await carol.request({ action: 'msg', message: 'posted while bob was out' })).response === 200, 'carol in #general');
      assert((await carol.request({ action: 'msg', to: 'bob', message: 'for bob, later' })).response === 202, 'carol to offline bob');
      await bob.waitForFunction(() => window.jimClient.connected, null, { timeout: STEP_MS });
      await bob.locator('#password').fill('bob-pw');
      await bob.locator('#password').press('Enter');
      await roomIs(bob, '#general');
      await seeMessage(bob, 'dave is back too');
      await run.check('at sign-in what came meanwhile is unread: a divider in the room, a badge on the conversation', async () => {
        await seeMessage(bob, 'posted while bob was out');
        await waitUntil(async () => (await lines(bob)).includes('New messages'), STEP_MS, 'the divider');
        const texts = await lines(bob);
        // (bob was in #den when dave and alice last wrote in #general: those are unread too.)
        const d = texts.indexOf('New messages');
        const p = lineIndex(texts, 'posted while bob was out');
        assert(d >= 0 && d < p, `lines: ${JSON.stringify(texts.slice(-8))}`);
        assert(texts[p].includes('mentions you'), 'the mention of bob is not marked');
        await bob.locator('#dms button[data-view="dm:carol"] .badge', { hasText: '1' }).waitFor({ timeout: STEP_MS });
        await bob.locator('#rooms button[data-view="room:#general"] .badge').waitFor({ state: 'detached', timeout: STEP_MS });
      });
      await run.check('no error from before signing out is left over', async () => {
        const left = await bob.evaluate(() => Array.from(document.querySelectorAll('.error'))
          .map((el) => `${el.id}: ${el.textContent}`).filter((t) => !/: $/.test(t)));
        assert(left.length === 0, `errors left: ${JSON.stringify(left)}`);
      });
    });

    await run.step('a muted account is told until when; scheduled messages are listed and cancelled', async () => {
      const mallory = await newPage('mallory', { width: 900, height: 700 });
      await signUp(mallory, 'mallory', 'mallory-pw');
      await run.check('/at schedules a message, the Scheduled list shows it and Cancel removes it', async () => {
        await say(mallory, '/at +2h remember the milk');
        await seeMessage(mallory, 'remember the milk');
        await mallory.locator('#open-scheduled').click();
        await mallory.locator('#scheduled-list li', { hasText: 'remember the milk' }).waitFor({ timeout: STEP_MS });
        await mallory.locator('#scheduled-list li button', { hasText: 'Cancel' }).click();
        await mallory.locator('#scheduled-list li').waitFor({ state: 'detached', timeout: STEP_MS });
        await mallory.locator('#scheduled-empty').waitFor({ state: 'visible', timeout: STEP_MS });
        await say(mallory, '/at 99:99 never');
        await mallory.locator('#composer-error', { hasText: /00:00 to 23:59/ }).waitFor({ timeout: STEP_MS });
        await mallory.locator('#text').fill('');
      });
      const reporters = [carol];
      for (const name of ['rep1', 'rep2']) {
        const c = new LineClient(daemon.tcpPort);
        await c.ready;
        const r = await c.request({ action: 'register', user: { account_name: name, password: `${name}-pw` } });
        assert(r.response === 201, `register ${name}: ${JSON.stringify(r)}`);
        reporters.push(c);
      }
      const t0 = Date.now() / 1000;
      for (const c of reporters) {
        const r = await c.request({ action: 'report', user: 'mallory', reason: 'spam' });
        assert(r.response === 200, `report: ${JSON.stringify(r)}`);
      }
      for (const c of reporters.slice(1)) c.close();
      await say(mallory, 'buy now, cheap');
      const err = mallory.locator('#composer-error', { hasText: /muted/ });
      await err.waitFor({ timeout: STEP_MS });
      const text = await err.textContent();
      assert(/^You are muted until \d\d:\d\d\.$/.test(text), `mallory's error: ${JSON.stringify(text)}`);
      // Muted for 4 h (the default --mute-duration) from the third report, in the page's local time.
      const hhmm = await mallory.evaluate((ts) => ts.map((t) => { const d = new Date(t * 1000); return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0'); }),
        [t0 + 4 * 3600 - 1, t0 + 4 * 3600 + 61]);
      assert(hhmm.some((x) => text.includes(x)), `muted until the wrong time: ${text}, expected about ${hhmm.join(' or ')}`);
      assert(await mallory.locator('#text').inputValue() === 'buy now, cheap', 'the refused text is lost');
      await mallory.context().close();
    });

    await run.step('no script errors and no request leaves the daemon', async () => {
      assert(pageErrors.length === 0, `page errors:\n${pageErrors.join('\n')}`);
      assert(foreign.length === 0, `requests to other hosts:\n${foreign.join('\n')}`);
    });
  } catch (e) {
    run.fail('setup', e);
  } finally {
    if (carol) carol.close();
    await run.end({ browser, daemon, tmp });
  }
  run.finish('browser test', `screenshot ${shot}`);
}

runMain(main);
