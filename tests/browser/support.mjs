// Small helpers shared by the browser specs (chat.spec.mjs, tls.spec.mjs). No browser here.
import net from 'node:net';

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
