// Unit tests of the web client's pure logic (web/logic.js), no browser needed:
//   node --test tests/browser/logic.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const L = require('../../web/logic.js');

test('the WebSocket URL follows the page: ws for http, wss for https, /chat on the same host', () => {
  assert.equal(L.wsUrl({ protocol: 'http:', host: '127.0.0.1:7780' }), 'ws://127.0.0.1:7780/chat');
  assert.equal(L.wsUrl({ protocol: 'https:', host: 'chat.example.org' }), 'wss://chat.example.org/chat');
  assert.equal(L.wsUrl({ protocol: 'http:', host: '[::1]:7780' }), 'ws://[::1]:7780/chat');
});

test('reconnect back-off starts at 1 s, doubles and stays at 30 s', () => {
  const delays = Array.from({ length: 8 }, (_, i) => L.backoffDelay(i));
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(L.backoffDelay(1000), 30000);
  assert.equal(L.backoffDelay(-1), 1000);
  assert.equal(L.backoffDelay(undefined), 1000);
});

test('times are local HH:MM', () => {
  const d = new Date(2024, 0, 2, 7, 5, 59);
  assert.equal(L.formatTime(d.getTime() / 1000), '07:05');
  const e = new Date(2024, 0, 2, 23, 59, 0);
  assert.equal(L.formatTime(e.getTime() / 1000), '23:59');
  assert.equal(L.formatTime('soon'), '');
  assert.equal(L.isoTime(0), '1970-01-01T00:00:00.000Z');
});

test('a WebSocket message is one frame; a trailing newline or several lines are tolerated', () => {
  assert.deepEqual(L.parseFrames('{"response":200,"time":1}').frames, [{ response: 200, time: 1 }]);
  assert.deepEqual(L.parseFrames('{"action":"probe"}\n').frames, [{ action: 'probe' }]);
  const two = L.parseFrames('{"action":"probe"}\r\n\n{"response":100,"auth":"login"}\n');
  assert.equal(two.frames.length, 2);
  const bad = L.parseFrames('not json\n[1,2]\n{"action":"probe"}');
  assert.equal(bad.frames.length, 1);
  assert.equal(bad.errors.length, 2);
});

test('replies are told from pushes by response vs action', () => {
  assert.equal(L.classify({ response: 200, time: 1 }), 'reply');
  assert.equal(L.classify({ action: 'msg', id: 1 }), 'push');
  assert.equal(L.classify({ foo: 1 }), 'unknown');
  assert.equal(L.classify(null), 'unknown');
});

test('account and room names follow the protocol rules', () => {
  assert.equal(L.accountNameProblem('alice'), '');
  assert.equal(L.accountNameProblem('A.b-c_9'), '');
  assert.match(L.accountNameProblem(''), /enter/i);
  assert.match(L.accountNameProblem('x'.repeat(26)), /25/);
  assert.match(L.accountNameProblem('al ice'), /letters/i);
  assert.equal(L.roomNameProblem('#den'), '');
  assert.equal(L.roomNameProblem('den_2-x'), '');
  assert.match(L.roomNameProblem('#'), /enter/i);
  assert.match(L.roomNameProblem('a.b'), /letters/i);
  assert.match(L.roomNameProblem('r'.repeat(33)), /32/);
  assert.equal(L.roomName('den'), '#den');
  assert.equal(L.roomName('#den'), '#den');
  assert.equal(L.roomKey('Den'), L.roomKey('#dEN'));
  assert.ok(L.sameName('Alice', 'alice'));
  assert.ok(!L.sameName('alice', null));
});

test('error replies are said in plain words, never protocol internals', () => {
  const say = (reply, action) => L.describeError(reply, action);
  // Texts the server sends, reworded.
  assert.equal(say({ response: 404, error: 'no such room #x' }, 'join'), 'There is no room #x.');
  assert.equal(say({ response: 404, error: 'no such account bot (register it)' }, 'msg'), 'There is no account bot.');
  assert.equal(say({ response: 403, error: 'wrong password for #den' }, 'join'), 'Wrong password for #den.');
  assert.equal(say({ response: 403, error: '#Cats needs a password' }, 'join'), '#Cats needs its password.');
  assert.equal(say({ response: 403, error: 'you are not in #Cats (join it first)' }, 'msg'), 'You are not in #Cats: join it first.');
  assert.equal(say({ response: 409, error: '#general is built in' }, 'create'), '#general always exists: choose another name.');
  assert.equal(say({ response: 402, error: 'wrong password; closing' }, 'authenticate'), 'Wrong password.');
  assert.match(say({ response: 400, error: 'passwords differ; choose a password again' }, 'authenticate'), /^The two passwords differ\./);
  // Internals are never shown: the code's meaning instead.
  const internal = [
    [{ response: 401, error: 'sign in first (presence, then authenticate; or register)' }, 'users'],
    [{ response: 400, error: '"message" must not be empty' }, 'msg'],
    [{ response: 413, error: '"message" is longer than 4096 bytes' }, 'msg'],
    [{ response: 413, error: 'frame exceeds 65536 bytes; closing' }, 'msg'],
    [{ response: 503, error: 'server full (max-clients reached)' }, null],
    [{ response: 500, error: 'sign-in state lost; start again with presence' }, 'authenticate'],
    [{ response: 400, error: 'invalid JSON: syntax error' }, 'rooms'],
    [{ response: 400, error: 'unknown action "quit!"' }, 'quit!'],
    [{ response: 418 }, 'rooms'],
  ];
  for (const [reply, action] of internal) {
    const text = say(reply, action);
    assert.doesNotMatch(text, /["{}();_]|json|frame|presence|authenticate|max-|bytes|closing|\b4\d\d\b|\b5\d\d\b/i,
      `${JSON.stringify(reply)} -> ${text}`);
    assert.match(text, /^[A-Z#].*[.!?]$/, `a sentence: ${text}`);
  }
  assert.equal(say({ response: 413, error: '"message" is longer than 4096 bytes' }, 'msg'), 'That message is too long.');
  assert.equal(say({ response: 503, error: 'server shutting down' }), 'The server is full or restarting. Try again in a moment.');
  // A plain text the client does not know is kept.
  assert.equal(say({ response: 403, error: 'only the owner of #den can invite to it' }, 'invite'),
    'Only the owner of #den can invite people to it.');
  assert.equal(say({ response: 403, error: 'you may not do that today' }, 'invite'), 'You may not do that today.');
  // A 429 says when to try again.
  assert.equal(say({ response: 429, error: 'too many messages, slow down', retry_after: 0.25 }, 'msg'),
    'Too many messages: slow down (try again in 0.3 s).');
  assert.equal(say({ response: 429, error: 'slow down', retry_after: 0.001 }, 'msg'), 'Too many messages: slow down (try again in 0.1 s).');
  assert.equal(say(null), 'The server did not answer. Try again.');
  assert.ok(L.isError({ response: 403 }));
  assert.ok(!L.isError({ response: 202 }));
  assert.ok(!L.isError({ response: 100 }));
});

test('each error has a cause that says when it goes', () => {
  assert.equal(L.errorCause('msg', { response: 429, retry_after: 1 }), 'rate');
  assert.equal(L.errorCause('authenticate', { response: 429, retry_after: 1 }), 'rate');
  assert.equal(L.errorCause(null, { response: 503 }), 'connection');
  assert.equal(L.errorCause('users', { response: 401 }), 'connection');
  assert.equal(L.errorCause('authenticate', { response: 402 }), 'signin');
  assert.equal(L.errorCause('presence', { response: 400 }), 'signin');
  for (const a of ['join', 'create', 'exit', 'invite', 'history', 'users']) assert.equal(L.errorCause(a, { response: 403 }), 'room', a);
  assert.equal(L.errorCause('msg', { response: 403 }), 'room');
  assert.equal(L.errorCause('msg', { response: 404 }), 'action');
  assert.equal(L.errorCause('msg', { response: 413 }), 'action');
  assert.equal(L.retryAfterMs({ response: 429, retry_after: 0.25 }), 250);
  assert.equal(L.retryAfterMs({ response: 429, retry_after: 0.001 }), 100);
  assert.equal(L.retryAfterMs({ response: 429 }), 0);
  assert.equal(L.retryAfterMs({ response: 403, retry_after: 3 }), 0);
});

test('user text in a plain string is a first-strong isolate', () => {
  assert.equal(L.isolate('#den'), '\u2068#den\u2069');
  assert.equal(L.isolate('\u202Eevil'), '\u2068\u202Eevil\u2069');
});

test('composer text: messages, // escapes and commands', () => {
  assert.deepEqual(L.parseCommand('hello'), { kind: 'say', text: 'hello' });
  assert.deepEqual(L.parseCommand('//etc/passwd is a path'), { kind: 'say', text: '/etc/passwd is a path' });
  assert.equal(L.parseCommand('   ').kind, 'error');
  assert.deepEqual(L.parseCommand('/join den s3cret'), { kind: 'join', room: '#den', password: 's3cret' });
  assert.deepEqual(L.parseCommand('/join #den'), { kind: 'join', room: '#den', password: undefined });
  assert.equal(L.parseCommand('/join').kind, 'error');
  assert.equal(L.parseCommand('/join bad.name').kind, 'error');
  assert.deepEqual(L.parseCommand('/create den'), { kind: 'create', room: '#den' });
  assert.deepEqual(L.parseCommand('/msg bob hi there\nsecond line'), { kind: 'msg', to: 'bob', text: 'hi there\nsecond line' });
  assert.equal(L.parseCommand('/msg bob').kind, 'error');
  assert.equal(L.parseCommand('/msg bad!name hi').kind, 'error');
  assert.deepEqual(L.parseCommand('/invite dave'), { kind: 'invite', user: 'dave' });
  assert.deepEqual(L.parseCommand('/unban dave'), { kind: 'unban', user: 'dave' });
  assert.equal(L.parseCommand('/unban').kind, 'error');
  assert.equal(L.parseCommand('/unban a b').kind, 'error');
  assert.equal(L.parseCommand('/EXIT').kind, 'exit');
  assert.equal(L.parseCommand('/leave').kind, 'exit');
  assert.equal(L.parseCommand('/rooms').kind, 'rooms');
  assert.equal(L.parseCommand('/users').kind, 'users');
  assert.equal(L.parseCommand('/history').kind, 'history');
  assert.equal(L.parseCommand('/help').kind, 'help');
  assert.match(L.parseCommand('/frob').error, /unknown command \/frob/i);
});

test('replies are matched to their requests by the echoed tag', () => {
  const p = new L.Pending();
  const a = p.add('a');
  const b = p.add('b');
  assert.notEqual(a, b);
  assert.equal(p.size, 2);
  assert.equal(p.take({ response: 200, tag: b }), 'b');
  assert.equal(p.take({ response: 200, tag: b }), null, 'a tag is answered once');
  assert.equal(p.take({ response: 200, tag: 'unknown' }), null);
  assert.equal(p.take({ response: 503 }), null, 'an untagged reply that is not a 400 belongs to nobody');
  assert.equal(p.take({ response: 400 }), 'a', 'an untagged 400 answers the oldest request');
  const c = p.add('c');
  p.add('d');
  assert.deepEqual(p.drain(), ['c', 'd']);
  assert.equal(p.size, 0);
  assert.equal(p.take({ response: 200, tag: c }), null);
});

test('messages are placed by id, duplicates are dropped', () => {
  assert.equal(L.insertionIndex([], 5), 0);
  assert.equal(L.insertionIndex([3, 7, 9], 10), 3);
  assert.equal(L.insertionIndex([3, 7, 9], 1), 0);
  assert.equal(L.insertionIndex([3, 7, 9], 8), 2);
  assert.equal(L.insertionIndex([3, 7, 9], 7), -1);
});

test('room messages go to their room view, private ones to the conversation with the other side', () => {
  assert.deepEqual(L.describeMessage({ from: 'bob', to: '#Den', message: 'x' }, 'alice'),
    { room: '#den', private: false, mine: false, peer: null, view: 'room:#den' });
  assert.deepEqual(L.describeMessage({ from: 'Alice', to: '#general', message: 'x' }, 'alice'),
    { room: '#general', private: false, mine: true, peer: null, view: 'room:#general' });
  assert.deepEqual(L.describeMessage({ from: 'bob', to: 'alice', message: 'x' }, 'alice'),
    { room: null, private: true, mine: false, peer: 'bob', view: 'dm:bob' });
  assert.deepEqual(L.describeMessage({ from: 'alice', to: 'Bob', message: 'x' }, 'alice'),
    { room: null, private: true, mine: true, peer: 'Bob', view: 'dm:bob' });
  assert.equal(L.roomView('Den'), 'room:#den');
  assert.equal(L.dmView('Bob'), 'dm:bob');
});

test('message length is counted in UTF-8 bytes, as the server counts it', () => {
  assert.equal(L.utf8Bytes(''), 0);
  assert.equal(L.utf8Bytes('hello'), 5);
  assert.equal(L.utf8Bytes('привет'), 12);          // Cyrillic: 2 bytes a letter
  assert.equal(L.utf8Bytes('很好'), 6);              // CJK: 3
  assert.equal(L.utf8Bytes('😀'), 4);               // outside the BMP: a surrogate pair, 4
  assert.equal(L.utf8Bytes('\ud800x'), 4);          // a lone surrogate goes as U+FFFD: 3
  for (const t of ['mixed ñ 😀 привет 很好', 'a'.repeat(100), '\u202e']) {
    assert.equal(L.utf8Bytes(t), Buffer.byteLength(t, 'utf8'));
  }
  assert.equal(L.MAX_MESSAGE_BYTES, 4096);
});

test('a long Cyrillic text is warned about before the server would refuse it', () => {
  assert.equal(L.lengthState('hi').level, 'ok');
  assert.equal(L.lengthState('hi').words, '');
  // 2048 Cyrillic letters are 4096 bytes: exactly the limit, still allowed but near it.
  const atLimit = L.lengthState('я'.repeat(2048));
  assert.equal(atLimit.bytes, 4096);
  assert.equal(atLimit.level, 'near');
  assert.match(atLimit.words, /^0 bytes left/);
  // 2049 letters are only 2049 characters (a "maxlength" of 4096 would let them through) but 4098 bytes.
  const over = L.lengthState('я'.repeat(2049));
  assert.equal(over.level, 'over');
  assert.equal(over.left, -2);
  assert.match(over.words, /^Too long to send: shorten it by 2 bytes/);
  assert.equal(L.lengthState('a'.repeat(3686)).level, 'near');
  assert.equal(L.lengthState('a'.repeat(3685)).level, 'ok');
  assert.equal(L.lengthState('abc', 2).level, 'over');
});

test('mentions: the account name as a whole word, with or without @, any case', () => {
  assert.ok(L.mentions('hi alice!', 'alice'));
  assert.ok(L.mentions('@Alice look', 'alice'));
  assert.ok(L.mentions('alice', 'alice'));
  assert.ok(L.mentions('ask alice.', 'alice'));
  assert.ok(!L.mentions('malice', 'alice'));
  assert.ok(!L.mentions('alice_2 is here', 'alice'));
  assert.ok(!L.mentions('alice.b', 'alice'));
  assert.ok(L.mentions('ping a.b now', 'a.b'));
  assert.ok(!L.mentions('axb', 'a.b'));             // "." is not a wildcard
  assert.ok(!L.mentions('hello', ''));
  assert.ok(!L.mentions(null, 'alice'));
});

test('unread bookkeeping: live messages, own messages, seen views and read markers', () => {
  let e = L.unreadEntry(2, 10);
  assert.deepEqual(e, { unread: 2, lastRead: 10, newest: 10 });
  let r = L.afterMessage(e, 11, false, false);
  assert.deepEqual(r, { entry: { unread: 3, lastRead: 10, newest: 11 }, read: 0 });
  e = r.entry;
  r = L.afterMessage(e, 12, true, false);             // our own message never counts
  assert.equal(r.entry.unread, 3);
  assert.equal(r.read, 0);
  r = L.afterMessage(e, 9, false, false);             // at or below the marker: already read
  assert.equal(r.entry.unread, 3);
  r = L.afterMessage(e, 13, false, true);             // on screen: read at once
  assert.deepEqual(r, { entry: { unread: 0, lastRead: 13, newest: 13 }, read: 13 });
  // A read push from another connection up to the newest message clears the badge exactly.
  e = { unread: 3, lastRead: 10, newest: 13 };
  assert.deepEqual(L.afterRead(e, 13), { entry: { unread: 0, lastRead: 13, newest: 13 }, exact: true });
  // Up to an older one: only the server knows how many are left.
  const partly = L.afterRead(e, 11);
  assert.equal(partly.exact, false);
  assert.equal(partly.entry.lastRead, 11);
  // Markers never move backwards.
  assert.equal(L.afterRead(e, 5).entry, e);
  assert.equal(L.totalUnread([{ unread: 2 }, { unread: 0 }, { unread: 5 }]), 7);
  assert.equal(L.totalUnread(new Map([['room:#a', { unread: 1 }], ['dm:b', { unread: 2 }]])), 3);
  assert.equal(L.totalUnread(new Map([['room:#a', { unread: 1 }]]).values()), 1);
});

test('tab title and badges', () => {
  assert.equal(L.pageTitle(0, '#den'), '#den · jimd');
  assert.equal(L.pageTitle(3, '#den'), '(3) #den · jimd');
  assert.equal(L.pageTitle(3, ''), '(3) jimd');
  assert.equal(L.badgeText(7), '7');
  assert.equal(L.badgeText(100), '99+');
});

test('the "new messages" divider goes before the first unread message of others', () => {
  const mine = (id) => id === 5;
  assert.equal(L.dividerIndex([1, 3, 5, 7], 3, mine), 3);   // 5 is ours: the divider is before 7
  assert.equal(L.dividerIndex([1, 3, 5, 7], 3), 2);
  assert.equal(L.dividerIndex([1, 3], 3), -1);
  assert.equal(L.dividerIndex([4, 6], 0), 0);
  // A conversation knows its unread count, not its marker: the 2 newest of others are unread.
  assert.equal(L.lastReadFromCount([1, 2, 3, 4], 2, (id) => id === 4), 1);
  assert.equal(L.lastReadFromCount([1, 2, 3, 4], 2), 2);
  assert.equal(L.lastReadFromCount([1, 2], 5), 0);
});

test('statuses in words; /away, /back and /query', () => {
  assert.equal(L.statusWords('online'), 'online');
  assert.equal(L.statusWords(undefined), 'online');
  assert.equal(L.statusWords('in a meeting'), 'in a meeting');
  assert.ok(L.isAway('away'));
  assert.ok(!L.isAway('online'));
  assert.deepEqual(L.parseCommand('/away'), { kind: 'status', status: 'away' });
  assert.deepEqual(L.parseCommand('/away lunch'), { kind: 'status', status: 'lunch' });
  assert.deepEqual(L.parseCommand('/back'), { kind: 'status', status: 'online' });
  assert.equal(L.parseCommand('/away ' + 'x'.repeat(65)).kind, 'error');
  assert.deepEqual(L.parseCommand('/query bob'), { kind: 'query', user: 'bob' });
  assert.equal(L.parseCommand('/query').kind, 'error');
});

test('the resume token is kept per origin as {name, token}, never with a password', () => {
  const store = new Map();
  const storage = {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => store.set(k, String(v)),
    removeItem: (k) => store.delete(k)
  };
  assert.equal(L.loadSession(storage), null);
  assert.equal(L.saveSession(storage, 'alice', 'abc_DEF-123'), true);
  assert.deepEqual(L.loadSession(storage), { name: 'alice', token: 'abc_DEF-123' });
  assert.deepEqual(Object.keys(JSON.parse(store.get(L.SESSION_KEY))).sort(), ['name', 'token']);
  L.clearSession(storage);
  assert.equal(L.loadSession(storage), null);
  // Damaged or foreign values do not count.
  for (const bad of ['{', '"x"', '{"name":"no spaces allowed","token":"t"}', '{"name":"a","token":""}',
    '{"name":"a","token":"has space"}', '{"name":"a"}']) {
    store.set(L.SESSION_KEY, bad);
    assert.equal(L.loadSession(storage), null, bad);
  }
  // Storage that throws (disabled, private mode) is no storage.
  const broken = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('quota'); }, removeItem() { throw new Error('denied'); } };
  assert.equal(L.loadSession(broken), null);
  assert.equal(L.saveSession(broken, 'a', 't'), false);
  L.clearSession(broken);
});

test('/at takes a local HH:MM (today, or tomorrow once passed) or a delay; bad times are explained', () => {
  const now = new Date(2026, 0, 2, 18, 0, 20).getTime();
  const at = (spec) => L.parseAt(spec, now);
  assert.equal(at('18:30').at, new Date(2026, 0, 2, 18, 30, 0).getTime() / 1000);
  assert.equal(at('9:05').at, new Date(2026, 0, 3, 9, 5, 0).getTime() / 1000, 'a passed time is tomorrow');
  assert.equal(at('18:00').at, new Date(2026, 0, 3, 18, 0, 0).getTime() / 1000, 'this very minute is tomorrow');
  assert.equal(at('+10m').at, Math.ceil(now / 1000) + 600);
  assert.equal(at('+10').at, Math.ceil(now / 1000) + 600, 'a bare number is minutes');
  assert.equal(at('+1h30m').at, Math.ceil(now / 1000) + 5400);
  assert.equal(at('+45s').at, Math.ceil(now / 1000) + 45);
  assert.equal(at('+2H').at, Math.ceil(now / 1000) + 7200);
  assert.equal(at('+1d').at, Math.ceil(now / 1000) + 86400);
  for (const bad of ['25:00', '12:60', 'soon', '+', '+0m', '+5x', '']) assert.ok(at(bad).error, bad);
  assert.match(at('25:00').error, /00:00 to 23:59/);

  assert.deepEqual(L.parseCommand('/at +10m stand-up in five', now),
    { kind: 'at', at: Math.ceil(now / 1000) + 600, text: 'stand-up in five' });
  assert.deepEqual(L.parseCommand('/at 18:30  two  spaces\nand a line', now),
    { kind: 'at', at: new Date(2026, 0, 2, 18, 30).getTime() / 1000, text: 'two  spaces\nand a line' });
  assert.equal(L.parseCommand('/at 18:30', now).kind, 'error');
  assert.match(L.parseCommand('/at', now).error, /Usage: \/at/);
  assert.match(L.parseCommand('/at tomorrow hello', now).error, /HH:MM/);
  assert.deepEqual(L.parseCommand('/scheduled'), { kind: 'scheduled' });
  assert.ok(L.HELP.some((h) => h.startsWith('/at ')) && L.HELP.some((h) => h.startsWith('/scheduled')));
});

test('who may delete: the author, the owner of the room (room messages only), never twice', () => {
  const m = { id: 7, from: 'Bob', to: '#den', message: 'x' };
  assert.equal(L.canDelete(m, 'bob', null), true, 'the author, any case');
  assert.equal(L.canDelete(m, 'alice', 'Alice'), true, 'the owner of #den');
  assert.equal(L.canDelete(m, 'carol', 'alice'), false);
  assert.equal(L.canDelete(m, 'carol', null), false);
  assert.equal(L.canDelete({ ...m, to: 'carol' }, 'alice', 'alice'), false, 'a private message has no owner');
  assert.equal(L.canDelete({ ...m, deleted: true }, 'bob', null), false);
  assert.equal(L.canDelete(m, 'root', null, true), true, 'a server admin: any room message');
  assert.equal(L.canDelete({ ...m, to: 'carol' }, 'root', null, true), true, 'a server admin: a private one too');
  assert.equal(L.canDelete({ ...m, deleted: true }, 'root', null, true), false, 'not twice');
  assert.equal(L.canDelete(m, 'carol', null, false), false);
  assert.match(L.editedTitle(new Date(2026, 0, 2, 9, 7).getTime() / 1000), /^Edited at 09:07 \(/);
  assert.equal(L.editedTitle(undefined), 'Edited');
});

test('moderation notices and refusals in plain words', () => {
  const kick = L.moderationNotice('you were kicked from #den by carol; you are in #general');
  assert.deepEqual([kick.kind, kick.room, kick.by, kick.to], ['kick', '#den', 'carol', '#general']);
  assert.equal(kick.words, 'carol removed you from #den. You are in #general now; you can join #den again.');
  const ban = L.moderationNotice('you were banned from #den by carol; you are in #general');
  assert.equal(ban.kind, 'ban');
  assert.match(ban.words, /banned you from #den.*cannot join #den again/);
  const acc = L.moderationNotice('your account was banned: spam');
  assert.equal(acc.kind, 'account');
  assert.equal(acc.words, 'Your account was banned (spam). You cannot sign in with it any more.');
  assert.equal(L.moderationNotice('the server restarts at 3'), null);

  const until = new Date(2026, 0, 2, 21, 5).getTime() / 1000;
  assert.equal(L.describeError({ response: 403, error: 'you are muted (reported by other users)', until }, 'msg'),
    'You are muted until 21:05.');
  const words = (error, code = 403, action = null) => L.describeError({ response: code, error }, action);
  assert.equal(words('only the owner of #den can do that'), 'Only the owner of #den can do that.');
  assert.equal(words('only the owner of #den can invite to it'), 'Only the owner of #den can invite people to it.');
  assert.equal(words('only its author can edit a message'), 'Only its author can edit a message.');
  assert.equal(words("only its author, the room's owner or an admin can delete a message"),
    'Only its author, the owner of the room or a server admin can delete a message.');
  assert.equal(words('no message 42', 404), 'That message is gone (deleted, or too old to change).');
  assert.equal(words('you are banned from #den'), 'You are banned from #den, so you cannot join it (only its owner can lift the ban).');
  assert.equal(words('bob is banned from #den (unban first)'), 'bob is banned from #den: lift the ban first.');
  assert.equal(words('this account is banned: spam links'), 'This account is banned (spam links).');
  assert.equal(words('"at" must be in the future', 400), 'That time has passed: choose a time in the future.');
  assert.equal(words('"at" is more than 604800 seconds ahead (--schedule-max)', 400), 'That is too far ahead for the server.');
  assert.equal(words('too many scheduled messages (at most 100 pending)'), 'You have too many scheduled messages: cancel one first.');
  assert.equal(words('no scheduled message 3', 404), 'That scheduled message is no longer pending.');
});
