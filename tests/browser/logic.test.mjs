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

test('error replies read as the server wrote them, with the wait for a 429', () => {
  assert.equal(L.describeError({ response: 404, error: 'no such room #x' }), 'No such room #x');
  assert.equal(L.describeError({ response: 500 }), 'Error 500');
  assert.equal(L.describeError({ response: 429, error: 'too many messages, slow down', retry_after: 0.25 }),
    'Too many messages, slow down (try again in 0.3 s)');
  assert.equal(L.describeError({ response: 429, error: 'slow down', retry_after: 0.001 }), 'Slow down (try again in 0.1 s)');
  assert.ok(L.isError({ response: 403 }));
  assert.ok(!L.isError({ response: 202 }));
  assert.ok(!L.isError({ response: 100 }));
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

test('room messages go to their room, private ones are marked with the other side', () => {
  assert.deepEqual(L.describeMessage({ from: 'bob', to: '#Den', message: 'x' }, 'alice'),
    { room: '#den', private: false, mine: false, peer: null });
  assert.deepEqual(L.describeMessage({ from: 'Alice', to: '#general', message: 'x' }, 'alice'),
    { room: '#general', private: false, mine: true, peer: null });
  assert.deepEqual(L.describeMessage({ from: 'bob', to: 'alice', message: 'x' }, 'alice'),
    { room: null, private: true, mine: false, peer: 'bob' });
  assert.deepEqual(L.describeMessage({ from: 'alice', to: 'bob', message: 'x' }, 'alice'),
    { room: null, private: true, mine: true, peer: 'bob' });
});
