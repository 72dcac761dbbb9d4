// The web client with several devices of one account and with moderation seen from both sides
// (issue 16), in a real browser: jimd with its default --max-sessions (8) and `--admin root`.
// alice signs in from two browser pages at once (two contexts: two devices); a room message
// and a private message sent from one appear on the other, edits and deletes show on both, and
// both stay connected. Then carol, the owner of #den, removes alice (both her pages go to
// #general), bans bob (he is told in plain words, is moved to #general and cannot join again:
// a clear error) and lifts the ban from the Unban dialog (bob joins again by invitation);
// root, a server admin, deletes bob's message in #general. axe-core audits the Unban dialog.
//
//   JIMD=build/bin/jimd node tests/browser/devices.spec.mjs      (tests/browser/run.sh runs it)
//
// Env: JIMD, CHROMIUM (default /usr/bin/chromium), JIM_E2E_TIMEOUT (seconds, default 200).
// Prints one line per step and closes with "N passed, N failed".
import {
  Daemon, Run, STEP_MS, assert, axeViolations, findJimd, freePort, lastIdOf, launchChromium, lineOf, openMenuOf,
  roomIs, runMain, say, seeMessage, shown, signIn, signUp,
} from './support.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TOTAL_MS = Number(process.env.JIM_E2E_TIMEOUT || 200) * 1000;

/** Serious or critical axe-core violations on the page as it is now: [{id, impact, targets}]. */
async function seriousViolations(page) {
  return (await axeViolations(page)).filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** The page is signed in and its WebSocket open. */
const connected = (page) => page.evaluate(() => window.jimClient.connected && window.jimClient.signedIn);

async function main() {
  const run = new Run();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jimd-devices-'));
  const daemon = new Daemon(findJimd(), tmp, await freePort(), { args: ['--admin', 'root'] });
  const pageErrors = [];
  let browser = null;
  console.log(`jimd: ${daemon.bin}`);
  run.watchdog(TOTAL_MS, daemon);

  try {
    await daemon.start();
    browser = await launchChromium();
    // Each page has a browser context of its own: its own storage, like another device.
    const newPage = async (label) => {
      const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1 });
      ctx.setDefaultTimeout(STEP_MS);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
      await page.goto(daemon.url('/'), { waitUntil: 'load' });
      await page.waitForFunction(() => window.jimClient && window.jimClient.connected, null, { timeout: STEP_MS });
      return page;
    };
    const laptop = await newPage('alice (laptop)');
    const phone = await newPage('alice (phone)');
    const bob = await newPage('bob');
    let roomMsgId = '';

    // ---------------------------------------------------------------- one account, two devices

    await run.step('alice signs up on her laptop and signs in on her phone too; bob signs up', async () => {
      await signUp(laptop, 'alice', 'alice-pw');
      await signUp(bob, 'bob', 'bob-pw');
      await signIn(phone, 'alice', 'alice-pw');
      await roomIs(phone, '#general');
    });

    await run.step('a room message from the laptop appears on the phone (and to bob)', async () => {
      await say(laptop, 'hello from the laptop');
      await seeMessage(phone, 'hello from the laptop');
      await seeMessage(bob, 'hello from the laptop');
      roomMsgId = await lastIdOf(laptop, 'hello from the laptop');
      assert(await lastIdOf(phone, 'hello from the laptop') === roomMsgId, 'the phone shows it with another id');
      // Once, not twice: the phone got the push, the laptop only its reply.
      for (const p of [laptop, phone]) {
        const n = await shown(p).locator('li.msg', { hasText: 'hello from the laptop' }).count();
        assert(n === 1, `shown ${n} times`);
      }
    });

    await run.step('a private message from the phone appears in the laptop\'s conversation with bob', async () => {
      await say(phone, '/msg bob from my phone, privately');
      await phone.waitForFunction(() => window.jimClient.view === 'dm:bob', null, { timeout: STEP_MS });
      await seeMessage(phone, 'from my phone, privately');
      await laptop.locator('#dms button[data-view="dm:bob"]').click();
      await laptop.waitForFunction(() => window.jimClient.view === 'dm:bob', null, { timeout: STEP_MS });
      await seeMessage(laptop, 'from my phone, privately');
      const from = await shown(laptop).locator('li.msg', { hasText: 'from my phone, privately' }).first().locator('.from').textContent();
      assert(from === 'alice', `the laptop shows it from ${from}`);
      await bob.locator('#dms button[data-view="dm:alice"]').click();
      await seeMessage(bob, 'from my phone, privately');
      // bob answers: both of alice's devices get it.
      await say(bob, 'got it, alice');
      await seeMessage(phone, 'got it, alice');
      await seeMessage(laptop, 'got it, alice');
    });

    await run.step('an edit on the laptop and a delete on the phone show on both devices (and to bob)', async () => {
      const dmId = await lastIdOf(laptop, 'from my phone, privately');
      const items = await openMenuOf(laptop, dmId);
      assert(items[0] === 'Edit' && items.includes('Delete'), `the laptop's menu on alice's message: ${JSON.stringify(items)}`);
      await laptop.keyboard.press('Enter');
      const input = lineOf(laptop, dmId).locator('.edit-input');
      await input.fill('from my phone, privately (fixed on the laptop)');
      await input.press('Enter');
      await input.waitFor({ state: 'detached', timeout: STEP_MS });
      for (const p of [laptop, phone, bob]) {
        await lineOf(p, dmId).locator('.body', { hasText: '(fixed on the laptop)' }).waitFor({ timeout: STEP_MS });
        await lineOf(p, dmId).locator('.edited').waitFor({ timeout: STEP_MS });
      }
      // The room message, deleted from the phone.
      await phone.locator('#text').press('Escape');   // back from the conversation to #general
      await phone.waitForFunction(() => window.jimClient.view === 'room:#general', null, { timeout: STEP_MS });
      await openMenuOf(phone, roomMsgId);
      await phone.locator('#menu [role="menuitem"]', { hasText: 'Delete' }).click();
      await phone.locator('#confirm-ok').click();
      for (const p of [laptop, bob]) {
        await p.locator('#text').press('Escape');
        await p.waitForFunction(() => window.jimClient.view === 'room:#general', null, { timeout: STEP_MS });
      }
      for (const p of [phone, laptop, bob]) {
        await lineOf(p, roomMsgId).locator('.body', { hasText: 'message deleted' }).waitFor({ timeout: STEP_MS });
        assert(await shown(p).locator('li', { hasText: 'hello from the laptop' }).count() === 0, 'the deleted text is still shown');
      }
    });

    await run.check('both devices stay connected; neither was taken over', async () => {
      for (const p of [laptop, phone]) {
        assert(await connected(p), 'a device is not connected');
        assert(await p.locator('li', { hasText: 'signed in from another window' }).count() === 0, 'a device says it was taken over');
      }
    });

    // ---------------------------------------------------------------- moderation, seen by the moderated
    const carol = await newPage('carol');

    await run.step('carol creates #den and invites alice and bob; alice enters it on both devices, bob too', async () => {
      await signUp(carol, 'carol', 'carol-pw');
      await say(carol, '/create den');
      await roomIs(carol, '#den');
      await carol.locator('#secret-close').click();
      await say(carol, '/invite alice');
      await seeMessage(carol, 'alice is invited to #den');
      await say(carol, '/invite bob');
      await seeMessage(carol, 'bob is invited to #den');
      for (const p of [laptop, phone, bob]) {
        const item = p.locator('#rooms button[data-view="room:#den"]');
        await item.waitFor({ timeout: STEP_MS });
        await item.click();
        await roomIs(p, '#den');
      }
      await carol.locator('#users li[data-user="bob"]').waitFor({ timeout: STEP_MS });
      await carol.locator('#users li[data-user="alice"]').waitFor({ timeout: STEP_MS });
    });

    await run.step('carol removes alice: both of alice\'s devices say so in plain words and go to #general', async () => {
      await carol.locator('#users li[data-user="alice"] .member-menu').click();
      await carol.locator('#menu [role="menuitem"]', { hasText: 'Remove alice' }).click();
      await carol.locator('#confirm-ok').click();
      for (const p of [laptop, phone]) {
        await roomIs(p, '#general');
        await p.locator('#banner', { hasText: 'carol removed you from #den. You are in #general now; you can join #den again.' })
          .waitFor({ state: 'visible', timeout: STEP_MS });
        assert(await p.locator('#banner').getAttribute('role') === 'alert', 'the banner is not announced');
        assert(await connected(p), 'a removed device lost its connection');
      }
    });

    await run.step('carol bans bob: he is told in plain words, moved to #general, and #den leaves his sidebar', async () => {
      await carol.locator('#users li[data-user="bob"] .member-menu').click();
      await carol.locator('#menu [role="menuitem"]', { hasText: 'Ban bob from #den' }).click();
      await carol.locator('#confirm-dialog', { hasText: /Ban bob from #den\?/ }).waitFor({ timeout: STEP_MS });
      await carol.locator('#confirm-ok').click();
      await roomIs(bob, '#general');
      const banner = bob.locator('#banner');
      await banner.waitFor({ state: 'visible', timeout: STEP_MS });
      const text = (await banner.textContent()).trim();
      assert(text.includes('carol banned you from #den. You are in #general now and cannot join #den again.'), `bob's banner: ${text}`);
      assert(await banner.getAttribute('role') === 'alert', 'the banner is not announced');
      await seeMessage(bob, 'carol banned you from #den');
      await seeMessage(carol, 'bob is banned from #den');
      // The line that reports the ban offers to lift it.
      await shown(carol).locator('li', { hasText: 'bob is banned from #den' }).last()
        .locator('button', { hasText: 'Unban bob' }).waitFor({ timeout: STEP_MS });
      await bob.locator('#rooms button[data-view="room:#den"]').waitFor({ state: 'detached', timeout: STEP_MS });
      // The banner is closed with the keyboard; the focus goes to the message box.
      await bob.locator('#banner-close').focus();
      await bob.keyboard.press('Enter');
      await banner.waitFor({ state: 'hidden', timeout: STEP_MS });
      assert(await bob.evaluate(() => document.activeElement.id) === 'text', 'the focus did not go to the message box');
    });

    await run.step('bob cannot join #den again: a clear error, and he stays in #general', async () => {
      await say(bob, '/join den');
      const err = bob.locator('#composer-error', { hasText: /banned/ });
      await err.waitFor({ timeout: STEP_MS });
      const text = await err.textContent();
      assert(text === 'You are banned from #den, so you cannot join it (only its owner can lift the ban).', `bob's error: ${JSON.stringify(text)}`);
      await roomIs(bob, '#general');
      // Nor can carol invite him while he is banned.
      await say(carol, '/invite bob');
      const cerr = carol.locator('#composer-error', { hasText: /banned/ });
      await cerr.waitFor({ timeout: STEP_MS });
      assert(await cerr.textContent() === 'bob is banned from #den: lift the ban first.', `carol's error: ${await cerr.textContent()}`);
    });

    await run.check('accessibility audit (axe-core) with the Unban dialog open: no serious or critical violations', async () => {
      await carol.locator('#text').fill('');
      await carol.locator('#unban-open').click();
      await carol.locator('#unban-dialog').waitFor({ state: 'visible', timeout: STEP_MS });
      const found = await seriousViolations(carol);
      assert(found.length === 0, `axe: ${JSON.stringify(found)}`);
      await carol.keyboard.press('Escape');
      await carol.locator('#unban-dialog').waitFor({ state: 'hidden', timeout: STEP_MS });
    });

    await run.step('carol lifts the ban from the Unban dialog (keyboard only); bob joins again by invitation', async () => {
      assert(!(await bob.locator('#unban-open').isVisible()), 'bob, not an owner, has an Unban button');
      await carol.locator('#unban-open').focus();
      await carol.keyboard.press('Enter');
      await carol.locator('#unban-dialog').waitFor({ state: 'visible', timeout: STEP_MS });
      assert(await carol.evaluate(() => document.activeElement.id) === 'unban-user', 'the focus is not in the name field');
      // The name carol banned from this page is offered.
      assert(await carol.locator('#unban-people option[value="bob"]').count() === 1, 'bob is not suggested');
      await carol.keyboard.type('bob');
      await carol.keyboard.press('Enter');
      await carol.locator('#unban-info', { hasText: 'bob may join again.' }).waitFor({ timeout: STEP_MS });
      await carol.keyboard.press('Escape');
      await carol.locator('#unban-dialog').waitFor({ state: 'hidden', timeout: STEP_MS });
      assert(await carol.evaluate(() => document.activeElement.id) === 'unban-open', 'the focus did not go back to Unban');
      await seeMessage(carol, 'bob is no longer banned from #den');
      await say(carol, '/invite bob');
      await seeMessage(carol, 'bob is invited to #den');
      const join = bob.locator('button', { hasText: 'join #den' }).last();
      await join.waitFor({ timeout: STEP_MS });
      await join.click();
      await roomIs(bob, '#den');
    });

    // ---------------------------------------------------------------- a server admin

    const root = await newPage('root');

    await run.step('root, a server admin, deletes bob\'s message in #general; alice (no admin) may not', async () => {
      await signUp(root, 'root', 'root-pw');
      await root.waitForFunction(() => window.jimClient.admin === true, null, { timeout: STEP_MS });
      assert(await laptop.evaluate(() => window.jimClient.admin) === false, 'alice is taken for an admin');
      await say(bob, '/exit');
      await roomIs(bob, '#general');
      await say(bob, 'spam from bob in general');
      await seeMessage(root, 'spam from bob in general');
      await seeMessage(laptop, 'spam from bob in general');
      const id = await lastIdOf(root, 'spam from bob in general');
      const hers = await openMenuOf(laptop, id);
      assert(!hers.includes('Delete') && !hers.includes('Edit'), `alice's menu on bob's message: ${JSON.stringify(hers)}`);
      await laptop.keyboard.press('Escape');
      const items = await openMenuOf(root, id);
      assert(items.includes('Delete') && !items.includes('Edit'), `root's menu on bob's message: ${JSON.stringify(items)}`);
      await root.locator('#menu [role="menuitem"]', { hasText: 'Delete' }).click();
      await root.locator('#confirm-ok').click();
      for (const p of [bob, laptop, phone, root]) {
        await lineOf(p, id).locator('.body', { hasText: 'message deleted' }).waitFor({ timeout: STEP_MS });
      }
    });

    await run.step('no script errors', async () => {
      assert(pageErrors.length === 0, `page errors:\n${pageErrors.join('\n')}`);
    });
  } catch (e) {
    run.fail('setup', e);
  } finally {
    await run.end({ browser, daemon, tmp });
  }
  run.finish('devices and moderation test');
}

runMain(main);
