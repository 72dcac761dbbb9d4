// The web client's pure logic: no DOM, no sockets. app.js uses it in the browser;
// tests/browser/logic.test.mjs runs it in node. A classic script (no modules) so the page
// works from any static server and needs no build step.
(function (root) {
  'use strict';

  var ACCOUNT_RE = /^[A-Za-z0-9_.-]{1,25}$/;
  var ROOM_RE = /^#?[A-Za-z0-9_-]{1,32}$/;
  var GENERAL = '#general';
  var BACKOFF_FIRST_MS = 1000;
  var BACKOFF_MAX_MS = 30000;

  /** The WebSocket endpoint of the page's own server: ws(s)://host[:port]/chat. */
  function wsUrl(loc) {
    var scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + loc.host + '/chat';
  }

  /** Delay before reconnect attempt n (0-based): 1 s, 2 s, 4 s ... capped at 30 s. */
  function backoffDelay(attempt) {
    var n = Math.max(0, Math.floor(attempt || 0));
    if (n >= 15) return BACKOFF_MAX_MS;
    return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, n));
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }

  /** Local HH:MM of a unix time in seconds ('' if it is not a number). */
  function formatTime(unixSeconds) {
    if (typeof unixSeconds !== 'number' || !isFinite(unixSeconds)) return '';
    var d = new Date(unixSeconds * 1000);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }

  /** ISO 8601 form for a <time datetime="..."> attribute. */
  function isoTime(unixSeconds) {
    if (typeof unixSeconds !== 'number' || !isFinite(unixSeconds)) return '';
    return new Date(unixSeconds * 1000).toISOString();
  }

  /**
   * Frames of one WebSocket text message. One message is one frame, but a trailing newline
   * or several newline-separated objects are tolerated. Returns {frames, errors}.
   */
  function parseFrames(text) {
    var frames = [];
    var errors = [];
    String(text).split('\n').forEach(function (line) {
      var l = line.replace(/\r$/, '').trim();
      if (!l) return;
      try {
        var v = JSON.parse(l);
        if (v && typeof v === 'object' && !Array.isArray(v)) frames.push(v);
        else errors.push('not a JSON object: ' + l.slice(0, 80));
      } catch (e) {
        errors.push('invalid JSON: ' + l.slice(0, 80));
      }
    });
    return { frames: frames, errors: errors };
  }

  /** 'reply' (has a numeric response), 'push' (has an action) or 'unknown'. */
  function classify(frame) {
    if (frame && typeof frame.response === 'number') return 'reply';
    if (frame && typeof frame.action === 'string') return 'push';
    return 'unknown';
  }

  function isAccountName(s) { return typeof s === 'string' && ACCOUNT_RE.test(s); }
  function isRoomName(s) { return typeof s === 'string' && ROOM_RE.test(s); }

  /** '#name' for 'name' or '#name'. */
  function roomName(s) {
    s = String(s).trim();
    return s.charAt(0) === '#' ? s : '#' + s;
  }

  /** Case-insensitive key of a room or account name ('#General' and 'general' are one room). */
  function roomKey(s) { return roomName(s).toLowerCase(); }
  function sameName(a, b) {
    return typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
  }

  /** Account name problems in words, or '' when the name is valid. */
  function accountNameProblem(s) {
    if (!s) return 'Enter an account name.';
    if (s.length > 25) return 'Account names have at most 25 characters.';
    if (!ACCOUNT_RE.test(s)) return 'Account names use only letters, digits, "_", "." and "-".';
    return '';
  }

  function roomNameProblem(s) {
    var bare = String(s || '').replace(/^#/, '');
    if (!bare) return 'Enter a room name.';
    if (bare.length > 32) return 'Room names have at most 32 characters.';
    if (!ROOM_RE.test(bare)) return 'Room names use only letters, digits, "_" and "-".';
    return '';
  }

  function sentence(text) {
    text = String(text).trim();
    if (!text) return text;
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?…]$/.test(text) ? text : text + '.';
  }

  function seconds(retryAfter) {
    return Math.max(0.1, Math.round(retryAfter * 10) / 10);
  }

  // Server texts the client knows, reworded for people. Each entry: [pattern, words(match)].
  var KNOWN_ERRORS = [
    [/^no such room (#[A-Za-z0-9_-]+)/i, function (m) { return 'There is no room ' + m[1] + '.'; }],
    [/^no such account ([A-Za-z0-9_.-]+)/i, function (m) { return 'There is no account ' + m[1] + '.'; }],
    [/^wrong password for (#[A-Za-z0-9_-]+)/i, function (m) { return 'Wrong password for ' + m[1] + '.'; }],
    [/^(#[A-Za-z0-9_-]+) needs a password/i, function (m) { return m[1] + ' needs its password.'; }],
    [/^you are not in (#[A-Za-z0-9_-]+)/i, function (m) { return 'You are not in ' + m[1] + ': join it first.'; }],
    [/^you are not a member of (#[A-Za-z0-9_-]+)/i, function (m) { return 'You are not a member of ' + m[1] + '.'; }],
    [/^only the owner of (#[A-Za-z0-9_-]+) can invite/i, function (m) { return 'Only the owner of ' + m[1] + ' can invite people to it.'; }],
    [/^only the owner of (#[A-Za-z0-9_-]+)/i, function (m) { return 'Only the owner of ' + m[1] + ' can do that.'; }],
    [/^only its author can edit/i, function () { return 'Only its author can edit a message.'; }],
    [/^only its author, the room.s owner or an admin can delete/i, function () { return 'Only its author, the owner of the room or a server admin can delete a message.'; }],
    [/^no message \d+/i, function () { return 'That message is gone (deleted, or too old to change).'; }],
    [/^you are banned from (#[A-Za-z0-9_-]+)/i, function (m) { return 'You are banned from ' + m[1] + ', so you cannot join it (only its owner can lift the ban).'; }],
    [/^([A-Za-z0-9_.-]+) is banned from (#[A-Za-z0-9_-]+)/i, function (m) { return m[1] + ' is banned from ' + m[2] + ': lift the ban first.'; }],
    [/^this account is banned: ([\s\S]*)$/i, function (m) { return 'This account is banned (' + m[1].trim() + ').'; }],
    [/^the owner cannot be banned/i, function () { return 'The owner of a room cannot be removed from it.'; }],
    [/^you cannot do that to yourself/i, function () { return 'You cannot do that to yourself.'; }],
    [/^you cannot report yourself/i, function () { return 'You cannot report yourself.'; }],
    [/^too many scheduled messages/i, function () { return 'You have too many scheduled messages: cancel one first.'; }],
    [/^no scheduled message \d+/i, function () { return 'That scheduled message is no longer pending.'; }],
    [/must be in the future/i, function () { return 'That time has passed: choose a time in the future.'; }],
    [/seconds ahead/i, function () { return 'That is too far ahead for the server.'; }],
    [/^room name (#?[A-Za-z0-9_-]+) is taken/i, function (m) { return 'There is already a room ' + roomName(m[1]) + '.'; }],
    [/^account name ([A-Za-z0-9_.-]+) is taken/i, function (m) { return 'The name ' + m[1] + ' is already taken.'; }],
    [/^#general is built in/i, function () { return '#general always exists: choose another name.'; }],
    [/passwords differ/i, function () { return 'The two passwords differ. Type the password twice again.'; }],
    [/^already signed in as ([A-Za-z0-9_.-]+)/i, function (m) { return 'You are already signed in as ' + m[1] + '.'; }]
  ];

  // What each code means when the server's text is not one the client knows.
  var CODE_WORDS = {
    400: 'The server did not accept that request.',
    401: 'You are not signed in. Sign in again.',
    402: 'Wrong password.',
    403: 'You are not allowed to do that.',
    404: 'That does not exist.',
    409: 'That name is already taken.',
    413: 'That is too long for the server.',
    429: 'Too many attempts: wait a moment.',
    500: 'Something went wrong on the server. Try again.',
    503: 'The server is full or restarting. Try again in a moment.'
  };

  // Words that only mean something to programmers (protocol fields, options, formats).
  var INTERNALS = /["'{}\[\]();=_\\<>]|\b(json|frame|field|presence|authenticate|tag|action|max-[a-z]+|bytes?|closing|null|undefined|utf-?8|errno|exception)\b/i;

  /**
   * An error reply in plain words for people, never protocol internals. `action` is the request
   * it answers ('msg', 'join', 'authenticate', ...; optional). Known server texts are reworded,
   * plain ones are kept, the rest say what the code means. A 429 says when to try again.
   */
  function describeError(reply, action) {
    if (!reply || typeof reply.response !== 'number') return 'The server did not answer. Try again.';
    var code = reply.response;
    var raw = typeof reply.error === 'string' ? reply.error.trim() : '';
    var text = '';
    if (code === 403 && typeof reply.until === 'number' && isFinite(reply.until)) {
      // A muted account (reported by others): say until when, in local time.
      return 'You are muted until ' + formatTime(reply.until) + '.';
    }
    for (var i = 0; i < KNOWN_ERRORS.length && !text; i++) {
      var m = KNOWN_ERRORS[i][0].exec(raw);
      if (m) text = KNOWN_ERRORS[i][1](m);
    }
    if (!text) {
      if (code === 402) text = 'Wrong password.';
      else if (code === 429) {
        text = action === 'msg' ? 'Too many messages: slow down.'
          : action === 'authenticate' || action === 'register' ? 'Too many failed sign-ins for this account.'
          : CODE_WORDS[429];
      } else if (code === 413) {
        text = action === 'msg' ? 'That message is too long.' : CODE_WORDS[413];
      } else if (code === 404 && action === 'join') text = 'There is no such room.';
      else if (code === 404 && action === 'msg') text = 'There is no such account.';
      else if (code === 500 || code === 503) text = CODE_WORDS[code];
      else if (raw && raw.length <= 120 && !INTERNALS.test(raw)) text = sentence(raw);
      else text = CODE_WORDS[code] || 'The server could not do that.';
    }
    if (code === 429 && typeof reply.retry_after === 'number' && isFinite(reply.retry_after)) {
      text = text.replace(/\.$/, '') + ' (try again in ' + seconds(reply.retry_after) + ' s).';
    }
    return text;
  }

  /**
   * Why an error reply happened, which says when its text may go: 'rate' (a 429: gone after
   * retry_after), 'connection' (the server is busy, restarting or gone: gone once signed in
   * again), 'room' (about entering, leaving or using a room: gone when the current room
   * changes), 'signin', or 'action' (gone when the user edits or sends again).
   */
  function errorCause(action, reply) {
    var code = reply && reply.response;
    if (code === 429) return 'rate';
    if (code === 503 || code === 401 || !reply) return 'connection';
    if (action === 'authenticate' || action === 'register' || action === 'presence') return 'signin';
    if (['join', 'create', 'exit', 'leave', 'invite', 'history', 'users'].indexOf(action) >= 0) return 'room';
    if (action === 'msg' && code === 403) return 'room';
    return 'action';
  }

  /** Milliseconds until a 429's wait is over (0 when the reply has none). */
  function retryAfterMs(reply) {
    if (!reply || reply.response !== 429 || typeof reply.retry_after !== 'number' || !isFinite(reply.retry_after)) return 0;
    return Math.max(100, Math.ceil(reply.retry_after * 1000));
  }

  /**
   * User text (a name, a status, a message) isolated for bidi in a plain string (a title, a
   * placeholder): FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE, so that an override or
   * right-to-left text inside cannot reorder what follows it. In the DOM use <bdi> instead.
   */
  function isolate(text) { return '\u2068' + String(text) + '\u2069'; }

  function isError(reply) { return !reply || typeof reply.response !== 'number' || reply.response >= 400; }

  var HELP = [
    '/join ROOM [PASSWORD] — enter a room',
    '/create ROOM — create a room (you get its password once)',
    '/exit — back to #general',
    '/invite USER — let USER into the current room (owner only)',
    '/unban USER — lift the ban of USER from the current room (owner only)',
    '/msg USER TEXT — private message',
    '/query USER — open the private conversation with USER',
    '/away [TEXT] — tell others you are away (TEXT: your status), /back — online again',
    '/at HH:MM TEXT or /at +10m TEXT — send TEXT later (to this room or conversation)',
    '/scheduled — your scheduled messages (with Cancel)',
    '/rooms, /users — refresh the lists',
    '/history — load older messages',
    '//text — send a message that starts with "/"'
  ];

  var UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };

  /**
   * When `/at SPEC` means, for a clock at `nowMs` (milliseconds, default now): SPEC is a local
   * time "HH:MM" (today, or tomorrow when that time has passed) or a delay "+10m", "+2h",
   * "+1h30m", "+45s", "+1d" (a bare "+N" is minutes). Returns {at} (unix seconds) or {error}.
   * (The server refuses a time more than --schedule-max ahead, 7 days by default.)
   */
  function parseAt(spec, nowMs) {
    var now = typeof nowMs === 'number' ? nowMs : Date.now();
    spec = String(spec || '').trim();
    var m = /^(\d{1,2})[:.h](\d{2})$/.exec(spec);
    if (m) {
      var hh = Number(m[1]), mm = Number(m[2]);
      if (hh > 23 || mm > 59) return { error: 'There is no time ' + spec + ': use HH:MM from 00:00 to 23:59.' };
      var d = new Date(now);
      d.setHours(hh, mm, 0, 0);
      if (d.getTime() <= now) d.setDate(d.getDate() + 1);
      return { at: Math.floor(d.getTime() / 1000) };
    }
    if (/^\+\d+$/.test(spec)) spec += 'm';
    if (/^\+(\d+[smhd])+$/i.test(spec)) {
      var secs = 0;
      spec.slice(1).replace(/(\d+)([smhd])/gi, function (all, n, unit) {
        secs += Number(n) * UNIT_SECONDS[unit.toLowerCase()];
        return all;
      });
      if (secs < 1) return { error: 'Choose a time in the future.' };
      return { at: Math.ceil(now / 1000) + secs };
    }
    return { error: 'Say when as HH:MM (e.g. 18:30) or as a delay (e.g. +10m, +2h).' };
  }

  /**
   * What the composer text means. Plain text is a message to the current target; a leading
   * '/' is a command. Returns {kind, ...} with kind one of say, msg, join, create, exit,
   * invite, unban, rooms, users, history, help, error.
   */
  function parseCommand(input, nowMs) {
    var text = String(input);
    if (!text.trim()) return { kind: 'error', error: 'Type a message first.' };
    if (text.charAt(0) !== '/') return { kind: 'say', text: text };
    if (text.charAt(1) === '/') return { kind: 'say', text: text.slice(1) };
    var m = /^\/(\S+)\s*([\s\S]*)$/.exec(text);
    var cmd = m[1].toLowerCase();
    var rest = m[2];
    var words = rest.trim() ? rest.trim().split(/\s+/) : [];
    switch (cmd) {
      case 'join':
      case 'j':
        if (!words.length) return { kind: 'error', error: 'Usage: /join ROOM [PASSWORD]' };
        if (roomNameProblem(words[0])) return { kind: 'error', error: roomNameProblem(words[0]) };
        return { kind: 'join', room: roomName(words[0]), password: words[1] };
      case 'create':
        if (words.length !== 1) return { kind: 'error', error: 'Usage: /create ROOM' };
        if (roomNameProblem(words[0])) return { kind: 'error', error: roomNameProblem(words[0]) };
        return { kind: 'create', room: roomName(words[0]) };
      case 'exit':
      case 'leave':
      case 'part':
        return { kind: 'exit' };
      case 'invite':
        if (words.length !== 1) return { kind: 'error', error: 'Usage: /invite USER' };
        if (accountNameProblem(words[0])) return { kind: 'error', error: accountNameProblem(words[0]) };
        return { kind: 'invite', user: words[0] };
      case 'unban':
        if (words.length !== 1) return { kind: 'error', error: 'Usage: /unban USER' };
        if (accountNameProblem(words[0])) return { kind: 'error', error: accountNameProblem(words[0]) };
        return { kind: 'unban', user: words[0] };
      case 'msg':
      case 'm':
      case 'pm': {
        var mm = /^(\S+)\s+([\s\S]+)$/.exec(rest.replace(/^\s+/, ''));
        if (!mm || !mm[2].trim()) return { kind: 'error', error: 'Usage: /msg USER TEXT' };
        if (accountNameProblem(mm[1])) return { kind: 'error', error: accountNameProblem(mm[1]) };
        return { kind: 'msg', to: mm[1], text: mm[2] };
      }
      case 'query':
      case 'q':
        if (words.length !== 1) return { kind: 'error', error: 'Usage: /query USER' };
        if (accountNameProblem(words[0])) return { kind: 'error', error: accountNameProblem(words[0]) };
        return { kind: 'query', user: words[0] };
      case 'away': {
        var st = rest.trim() || 'away';
        if (st.length > 64) return { kind: 'error', error: 'A status has at most 64 characters.' };
        return { kind: 'status', status: st };
      }
      case 'back': return { kind: 'status', status: 'online' };
      case 'at': {
        var am = /^(\S+)\s+([\s\S]+)$/.exec(rest.replace(/^\s+/, ''));
        if (!am || !am[2].trim()) return { kind: 'error', error: 'Usage: /at HH:MM TEXT or /at +10m TEXT' };
        var when = parseAt(am[1], nowMs);
        if (when.error) return { kind: 'error', error: when.error };
        return { kind: 'at', at: when.at, text: am[2] };
      }
      case 'scheduled': return { kind: 'scheduled' };
      case 'rooms': return { kind: 'rooms' };
      case 'users':
      case 'who': return { kind: 'users' };
      case 'history':
      case 'older': return { kind: 'history' };
      case 'help':
      case '?': return { kind: 'help' };
      default:
        return { kind: 'error', error: 'Unknown command /' + cmd + ' (type /help)' };
    }
  }

  /**
   * Requests awaiting their reply, matched by the tag the server echoes. Tags are strings
   * ('w1', 'w2', ...). A reply without a known tag goes to the oldest request only when the
   * server could not read our tag (a 400 for a frame it could not parse), which keeps the
   * one-reply-per-request order intact.
   */
  function Pending() {
    this.next = 1;
    this.byTag = new Map();
  }
  Pending.prototype.add = function (entry) {
    var tag = 'w' + this.next++;
    this.byTag.set(tag, entry);
    return tag;
  };
  /** The entry the reply belongs to (removed from the table), or null. */
  Pending.prototype.take = function (reply) {
    var tag = reply && reply.tag;
    if (tag !== undefined && tag !== null) {
      tag = String(tag);
      var e = this.byTag.get(tag);
      if (e === undefined) return null;
      this.byTag.delete(tag);
      return e;
    }
    if (reply && reply.response === 400 && this.byTag.size) {
      var first = this.byTag.keys().next().value;
      var f = this.byTag.get(first);
      this.byTag.delete(first);
      return f;
    }
    return null;
  };
  /** Every entry still waiting, the table emptied (connection lost). */
  Pending.prototype.drain = function () {
    var all = Array.from(this.byTag.values());
    this.byTag.clear();
    return all;
  };
  Object.defineProperty(Pending.prototype, 'size', { get: function () { return this.byTag.size; } });

  /**
   * Where a message with this id goes in a list whose message ids are `ids` (ascending, as
   * displayed): the index to insert before, ids.length to append, or -1 for a duplicate.
   */
  function insertionIndex(ids, id) {
    var lo = 0, hi = ids.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (ids[mid] < id) lo = mid + 1; else hi = mid;
    }
    if (lo < ids.length && ids[lo] === id) return -1;
    return lo;
  }

  /**
   * How a msg frame (push, history item or own sent message) is shown to `me`:
   * {room, private, mine, peer, view} — room is the room key (null for private messages),
   * peer the other side of a private message, view the key of the view it is shown in
   * ('room:#den', or 'dm:bob' for a private message: never inside a room).
   */
  function describeMessage(m, me) {
    var to = typeof m.to === 'string' ? m.to : '';
    var isRoom = to.charAt(0) === '#' || to === '';
    var mine = sameName(m.from, me);
    if (isRoom) {
      var rk = to ? roomKey(to) : null;
      return { room: rk, private: false, mine: mine, peer: null, view: rk ? roomView(rk) : null };
    }
    var peer = mine ? to : m.from;
    return { room: null, private: true, mine: mine, peer: peer, view: dmView(peer) };
  }

  // ---------------------------------------------------------------- edits, deletions, moderation

  /** The tooltip of an "(edited)" mark: "Edited at HH:MM" (local) of unix time `t`. */
  function editedTitle(t) {
    if (typeof t !== 'number' || !isFinite(t)) return 'Edited';
    return 'Edited at ' + formatTime(t) + ' (' + new Date(t * 1000).toLocaleString() + ')';
  }

  /**
   * Whether `me` may delete a message: its author always, the owner of its room (`owner`, the
   * room's owner as the `rooms` list gives it, or null) for a room message, and a server admin
   * (`admin` true: `jimd --admin`, PROTOCOL.md §19.5) any message, private ones included.
   */
  function canDelete(m, me, owner, admin) {
    if (!m || m.deleted) return false;
    if (sameName(m.from, me) || admin === true) return true;
    var to = typeof m.to === 'string' ? m.to : '';
    return to.charAt(0) === '#' && typeof owner === 'string' && sameName(owner, me);
  }

  /**
   * A server notice about moderation, in plain words: {kind, room, by, words} for "you were
   * kicked/banned from #r by X; you are in #general" (kind 'kick'/'ban') and "your account was
   * banned: REASON" (kind 'account'); null for any other notice.
   */
  function moderationNotice(text) {
    var m = /^you were (kicked|banned) from (#[A-Za-z0-9_-]+) by ([A-Za-z0-9_.-]+)(?:; you are in (#[A-Za-z0-9_-]+))?/i.exec(String(text));
    if (m) {
      var kick = m[1].toLowerCase() === 'kicked';
      var back = m[4] || GENERAL;
      return { kind: kick ? 'kick' : 'ban', room: m[2], by: m[3], to: back,
        words: kick
          ? m[3] + ' removed you from ' + m[2] + '. You are in ' + back + ' now; you can join ' + m[2] + ' again.'
          : m[3] + ' banned you from ' + m[2] + '. You are in ' + back + ' now and cannot join ' + m[2] + ' again.' };
    }
    m = /^your account was banned(?::\s*([\s\S]*))?$/i.exec(String(text));
    if (m) {
      return { kind: 'account', room: null, by: null, to: null,
        words: 'Your account was banned' + (m[1] && m[1].trim() ? ' (' + m[1].trim() + ')' : '') + '. You cannot sign in with it any more.' };
    }
    return null;
  }

  // ---------------------------------------------------------------- views, unread, mentions

  /** Key of a room's view ('room:#den') and of a private conversation's ('dm:bob'). */
  function roomView(room) { return 'room:' + roomKey(room); }
  function dmView(account) { return 'dm:' + String(account).toLowerCase(); }

  /** The server's default `max-message` (bytes of UTF-8), see the protocol contract. */
  var MAX_MESSAGE_BYTES = 4096;

  /**
   * Bytes of `text` in UTF-8, as the server counts a message (a lone surrogate, which the
   * browser sends as U+FFFD, counts 3).
   */
  function utf8Bytes(text) {
    var s = String(text);
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
               s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff) { n += 4; i++; }
      else n += 3;
    }
    return n;
  }

  /**
   * What the message box says about the length of `text` (limit `max` bytes, default 4096):
   * {bytes, left, level, words}: level 'ok' (nothing shown), 'near' (at least 90 % used: a
   * counter) or 'over' (the server would refuse it: say so and do not send).
   */
  function lengthState(text, max) {
    max = max || MAX_MESSAGE_BYTES;
    var bytes = utf8Bytes(text);
    var left = max - bytes;
    if (left < 0) {
      return { bytes: bytes, left: left, level: 'over',
        words: 'Too long to send: shorten it by ' + (-left) + ' bytes (the limit is ' + max +
          ' bytes; letters outside A–Z take 2 to 4 bytes each).' };
    }
    if (bytes >= Math.floor(max * 0.9)) {
      return { bytes: bytes, left: left, level: 'near', words: left + ' bytes left of ' + max + '.' };
    }
    return { bytes: bytes, left: left, level: 'ok', words: '' };
  }

  /** Whether `text` mentions the account `me` (the name as a whole word, "@" optional, any case). */
  function mentions(text, me) {
    if (typeof text !== 'string' || !isAccountName(me)) return false;
    var name = me.replace(/[.\-]/g, '\\$&');
    return new RegExp('(^|[^A-Za-z0-9_.-])@?' + name + '(?![A-Za-z0-9_-]|\\.[A-Za-z0-9_-])', 'i').test(text);
  }

  /**
   * Unread bookkeeping of one view: {unread, lastRead, newest}. unread is the server's count
   * (`rooms`, `conversations`) kept up to date by the pushes; lastRead the read marker; newest
   * the highest message id known in the view.
   */
  function unreadEntry(unread, lastRead) {
    return { unread: Math.max(0, unread | 0), lastRead: Math.max(0, lastRead | 0), newest: Math.max(0, lastRead | 0) };
  }

  /**
   * The entry after a live message `id` arrived: `mine` (own messages never count and mean
   * everything before them was read: the server does the same), `seen` (the view is on screen
   * at its newest line, so it is read at once). Returns a new entry; `read` is the id to send
   * a `read` for (0: none).
   */
  function afterMessage(e, id, mine, seen) {
    var n = { unread: e.unread, lastRead: e.lastRead, newest: Math.max(e.newest, id) };
    if (id <= e.lastRead) return { entry: n, read: 0 };
    if (mine) return { entry: n, read: 0 };
    if (seen) { n.unread = 0; n.lastRead = id; return { entry: n, read: id }; }
    n.unread = e.unread + 1;
    return { entry: n, read: 0 };
  }

  /**
   * The entry after a read marker moved to `id` (our own `read`, or a `read` push from another
   * connection of the account). Returns {entry, exact}: exact is false when messages after
   * `id` may still be unread and only the server can say how many (ask `rooms` again).
   */
  function afterRead(e, id) {
    if (id <= e.lastRead) return { entry: e, exact: true };
    var n = { unread: e.unread, lastRead: id, newest: Math.max(e.newest, id) };
    if (id >= e.newest) { n.unread = 0; return { entry: n, exact: true }; }
    return { entry: n, exact: false };
  }

  /** Total unread over entries (an iterable of entries, or of [key, entry] pairs). */
  function totalUnread(entries) {
    var t = 0;
    for (var x of entries) { var e = Array.isArray(x) ? x[1] : x; if (e) t += e.unread || 0; }
    return t;
  }

  /** The tab title: "(3) #den · jimd" when 3 messages are unread, "#den · jimd" when none. */
  function pageTitle(total, where) {
    var base = where ? where + ' · jimd' : 'jimd';
    return total > 0 ? '(' + total + ') ' + base : base;
  }

  /** Short text of a badge: "1" … "99", then "99+". */
  function badgeText(n) { return n > 99 ? '99+' : String(n); }

  /**
   * Where the "new messages" divider goes in a view whose message ids are `ids` (ascending) and
   * whose authors are `mine(id)`: before the first message above `lastRead` not written by us;
   * -1 when there is none.
   */
  function dividerIndex(ids, lastRead, mine) {
    for (var i = 0; i < ids.length; i++) {
      if (ids[i] > lastRead && (!mine || !mine(ids[i]))) return i;
    }
    return -1;
  }

  /**
   * For a view whose read marker is unknown (a private conversation) but whose unread count `n`
   * is: the id after which the divider goes (the n-th newest message not ours starts the unread
   * ones), 0 when all the loaded messages are unread.
   */
  function lastReadFromCount(ids, n, mine) {
    var seen = 0;
    for (var i = ids.length - 1; i >= 0; i--) {
      if (mine && mine(ids[i])) continue;
      if (++seen === n) return i > 0 ? ids[i - 1] : 0;
    }
    return 0;
  }

  /** Status text for people: '' for "online", else the status ("away", free text). */
  function statusWords(status) {
    if (typeof status !== 'string' || !status || status === 'online') return 'online';
    return status;
  }

  /** Whether a status means "not at the keyboard" (anything but "online"). */
  function isAway(status) { return typeof status === 'string' && status !== '' && status !== 'online'; }

  // The resume token of the account signed in on this page, kept in localStorage (one per
  // origin, so one per server) so that a reload signs in without the password. The password
  // itself is never stored.
  var SESSION_KEY = 'jimd.session';
  var TOKEN_RE = /^[\x21-\x7e]{1,1024}$/;

  /** The saved {name, token} in `storage` (a Storage), or null (none, damaged, no storage). */
  function loadSession(storage) {
    try {
      var v = JSON.parse(storage.getItem(SESSION_KEY));
      if (v && isAccountName(v.name) && typeof v.token === 'string' && TOKEN_RE.test(v.token)) {
        return { name: v.name, token: v.token };
      }
    } catch (e) { /* no storage, or not ours */ }
    return null;
  }

  /** Saves {name, token}; false when the storage refuses (private mode, quota, disabled). */
  function saveSession(storage, name, token) {
    try {
      storage.setItem(SESSION_KEY, JSON.stringify({ name: name, token: token }));
      return true;
    } catch (e) {
      return false;
    }
  }

  function clearSession(storage) {
    try { storage.removeItem(SESSION_KEY); } catch (e) { /* nothing to clear */ }
  }

  var api = {
    GENERAL: GENERAL,
    SESSION_KEY: SESSION_KEY,
    loadSession: loadSession,
    saveSession: saveSession,
    clearSession: clearSession,
    BACKOFF_FIRST_MS: BACKOFF_FIRST_MS,
    BACKOFF_MAX_MS: BACKOFF_MAX_MS,
    HELP: HELP,
    wsUrl: wsUrl,
    backoffDelay: backoffDelay,
    formatTime: formatTime,
    isoTime: isoTime,
    parseFrames: parseFrames,
    classify: classify,
    isAccountName: isAccountName,
    isRoomName: isRoomName,
    accountNameProblem: accountNameProblem,
    roomNameProblem: roomNameProblem,
    roomName: roomName,
    roomKey: roomKey,
    sameName: sameName,
    describeError: describeError,
    errorCause: errorCause,
    retryAfterMs: retryAfterMs,
    isolate: isolate,
    isError: isError,
    parseCommand: parseCommand,
    Pending: Pending,
    insertionIndex: insertionIndex,
    describeMessage: describeMessage,
    parseAt: parseAt,
    editedTitle: editedTitle,
    canDelete: canDelete,
    moderationNotice: moderationNotice,
    roomView: roomView,
    dmView: dmView,
    MAX_MESSAGE_BYTES: MAX_MESSAGE_BYTES,
    utf8Bytes: utf8Bytes,
    lengthState: lengthState,
    mentions: mentions,
    unreadEntry: unreadEntry,
    afterMessage: afterMessage,
    afterRead: afterRead,
    totalUnread: totalUnread,
    pageTitle: pageTitle,
    badgeText: badgeText,
    dividerIndex: dividerIndex,
    lastReadFromCount: lastReadFromCount,
    statusWords: statusWords,
    isAway: isAway
  };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.JimLogic = api;
})(typeof self !== 'undefined' ? self : this);
