// jimd web client: the DOM and the WebSocket. Protocol rules live in logic.js.
// User-supplied text only ever reaches the page through textContent or input values.
(function () {
  'use strict';
  var L = window.JimLogic;
  var $ = function (id) { return document.getElementById(id); };

  // Rooms and people are refreshed after every change this page makes (sign-in, join, exit,
  // create) and on every event push about the current room, within EVENT_REFRESH_MS. The server
  // pushes nothing when someone enters or leaves #general, or a room this page is not in, so a
  // short poll covers those while the lists can be seen (the page is visible and, on a phone,
  // the side panel is open; opening it refreshes them at once).
  var REFRESH_MS = 5000;
  var EVENT_REFRESH_MS = 200;
  var HISTORY_PAGE = 50;
  var STABLE_MS = 10000;      // a connection that lived this long resets the back-off

  var state = {
    ws: null,
    openedAt: 0,
    attempt: 0,               // reconnect attempts since the last good connection
    timer: null,              // pending reconnect
    tick: null,               // countdown display
    pending: new L.Pending(),
    creds: null,              // {name, token} (also in localStorage), or {name, password} in memory
                              // only when the server gives no tokens: for re-sign-in after a drop
    restoring: false,         // signing in with the token saved by an earlier visit (a reload)
    me: null,                 // account name as registered
    signedIn: false,
    signingIn: false,
    room: L.GENERAL,          // current room as the server writes it
    wantRoom: null,           // room to go back to after a reconnect
    target: null,             // account of the private conversation, null = the room
    views: new Map(),         // room key -> view
    rooms: [],                // last `rooms` reply
    noReconnect: false,       // the account was taken over by another connection
    expectClose: false,       // the server closes after this reply (402, quit): reconnect at once
    refresh: null,
    users: new Set(),         // keys of the accounts in the people list
    // After a sign-in or join reply the server pushes that room's recent history, before the
    // reply to any later request: those messages go right after `after` (the view's last line
    // when the reply came), above the lines the reply itself led to ("Signed in as ...").
    histWin: null             // {key, after} until the next reply
  };
  var replyActions = new WeakMap();   // reply frame -> the action of the request it answers

  // ---------------------------------------------------------------- connection

  function setConn(kind, text) {
    var el = $('conn');
    el.dataset.state = kind;
    el.textContent = text;
    $('reconnect-now').hidden = kind !== 'offline';
  }

  function clearTimers() {
    clearTimeout(state.timer);
    clearInterval(state.tick);
    state.timer = state.tick = null;
  }

  function connect() {
    clearTimers();
    if (state.ws) return;
    var ws;
    try {
      ws = new WebSocket(L.wsUrl(window.location));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    setConn('connecting', 'Connecting…');
    ws.onopen = function () {
      if (state.ws !== ws) return;
      state.openedAt = Date.now();
      setConn('online', state.creds ? 'Connected, signing in…' : 'Connected');
      // The server can be reached again. (If it is full, its 503 says so again at once.)
      if (!state.creds) clearErrors('connection');
      if (state.creds) resume();
    };
    ws.onmessage = function (ev) {
      if (state.ws === ws && typeof ev.data === 'string') onText(ev.data);
    };
    ws.onclose = function () {
      if (state.ws === ws) onClosed();
    };
  }

  function onClosed() {
    var lived = state.openedAt ? Date.now() - state.openedAt : 0;
    var wasSignedIn = state.signedIn;
    state.ws = null;
    state.openedAt = 0;
    state.signedIn = false;
    stopRefresh();
    state.pending.drain().forEach(function (e) {
      e.reject(failure('The connection to the server was lost. Reconnecting…', 'connection'));
    });
    if (lived >= STABLE_MS) state.attempt = 0;
    if (state.noReconnect) {
      setConn('offline', 'Disconnected: you signed in from another window.');
      return;
    }
    if (wasSignedIn) systemLine('Connection lost. Reconnecting…');
    if (state.expectClose) {
      state.expectClose = false;
      connect();
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimers();
    var delay = L.backoffDelay(state.attempt++);
    var until = Date.now() + delay;
    var show = function () {
      var s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
      setConn('offline', 'Disconnected. Reconnecting in ' + s + ' s…');
    };
    show();
    state.tick = setInterval(show, 1000);
    state.timer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    state.noReconnect = false;
    state.attempt = 0;
    connect();
  }

  /** Sends a request; resolves with its reply (matched by tag), rejects if the link drops. */
  function request(action, fields) {
    return new Promise(function (resolve, reject) {
      var ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(failure('Not connected to the server. Reconnecting…', 'connection'));
        return;
      }
      var frame = { action: action };
      Object.keys(fields || {}).forEach(function (k) { frame[k] = fields[k]; });
      frame.tag = state.pending.add({ resolve: resolve, reject: reject, action: action });
      ws.send(JSON.stringify(frame));
    });
  }

  /** Resolves once the connection is open (reconnecting at once if it is down), or rejects. */
  function whenOpen(ms) {
    return new Promise(function (resolve, reject) {
      var t0 = Date.now();
      var check = function () {
        if (state.ws && state.ws.readyState === WebSocket.OPEN) return resolve();
        if (!state.ws) reconnectNow();
        if (Date.now() - t0 > ms) return reject(failure('Cannot reach the server. Still trying to reconnect…', 'connection'));
        setTimeout(check, 50);
      };
      check();
    });
  }

  /** The server closes after this reply (402): drop the socket now so nothing more goes on it. */
  function abandonConnection() {
    state.expectClose = true;
    if (state.ws) state.ws.close();
  }

  /** The reply if its code is one of `codes`, else throws it as a failure in plain words. */
  function expect(reply, codes) {
    if (codes.indexOf(reply.response) >= 0) return reply;
    throw replyFailure(reply);
  }

  /** An error reply as a failure: plain words, the cause (see L.errorCause), a 429's wait. */
  function replyFailure(reply, prefix) {
    var action = replyActions.get(reply) || null;
    return failure((prefix || '') + L.describeError(reply, action), L.errorCause(action, reply),
      { reply: reply, retryMs: L.retryAfterMs(reply) });
  }

  function onText(text) {
    var parsed = L.parseFrames(text);
    parsed.errors.forEach(function (err) { console.warn('jimd: ' + err); });
    parsed.frames.forEach(function (f) {
      var kind = L.classify(f);
      if (kind === 'reply') onReply(f);
      else if (kind === 'push') onPush(f);
    });
  }

  function onReply(f) {
    state.histWin = null;   // history pushed after an earlier reply has all arrived
    var entry = state.pending.take(f);
    if (entry) {
      replyActions.set(f, entry.action);
      var signIn = (entry.action === 'authenticate' || entry.action === 'register') &&
        (f.response === 200 || f.response === 201);
      if (signIn || (entry.action === 'join' && f.response === 200)) {
        var v = view(typeof f.room === 'string' ? f.room : L.GENERAL);
        state.histWin = { key: v.key, after: v.list.lastChild };
      }
      entry.resolve(f);
      return;
    }
    // Not an answer to anything we asked: e.g. 503 (server full) sent on connect.
    if (L.isError(f)) showError(state.signedIn ? 'composer' : 'signin', replyFailure(f));
  }

  function onPush(f) {
    switch (f.action) {
      case 'msg': addMessage(f); break;
      case 'event': onEvent(f); break;
      case 'invite': onInvite(f); break;
      case 'notice': onNotice(f); break;
      case 'probe':
        // Any frame answers a probe. Before sign-in `rooms` (401) leaves the sign-in state alone.
        request(state.signedIn ? 'presence' : 'rooms').catch(function () {});
        break;
      default: break;
    }
  }

  // ---------------------------------------------------------------- sign-in

  function showConfirm(name) {
    $('confirm-row').hidden = false;
    $('signin-title').textContent = 'Create an account';
    $('signin-submit').textContent = 'Create account';
    setParts($('signin-info'), ['There is no account “', u(name), '” yet. ' +
      'Type the same password again to create it.']);
    $('password2').value = '';
    $('password2').focus();
  }

  function hideConfirm() {
    $('confirm-row').hidden = true;
    $('password2').value = '';
    $('signin-title').textContent = 'Sign in';
    $('signin-submit').textContent = 'Sign in';
    $('signin-info').textContent = '';
  }

  async function onSignInSubmit(ev) {
    ev.preventDefault();
    if (state.signingIn) return;
    clearError('signin');
    var name = $('name').value.trim();
    var pw = $('password').value;
    var pw2 = $('password2').value;
    var problem = L.accountNameProblem(name);
    if (problem) return fieldError('signin', problem, $('name'));
    if (!pw) return fieldError('signin', 'Enter a password.', $('password'));
    var registering = !$('confirm-row').hidden;
    if (registering && !pw2) return fieldError('signin', 'Type the password a second time.', $('password2'));
    state.signingIn = true;
    $('signin-submit').disabled = true;
    try {
      await whenOpen(8000);
      var p = expect(await request('presence', { user: { account_name: name } }), [100]);
      if (p.auth === 'login') {
        hideConfirm();
        var a = await request('authenticate', { user: { account_name: name, password: pw } });
        if (a.response === 402) {
          abandonConnection();  // the server closes after a wrong password
          $('password').value = '';
          $('password').focus();
        }
        expect(a, [200]);
        return await signedIn(a, name, pw);
      }
      if (p.auth !== 'register') throw failure('The server answered in a way this page does not understand. Try again.', 'signin');
      if (!registering) {
        showConfirm(name);
        return;
      }
      expect(await request('authenticate', { user: { account_name: name, password: pw } }), [100]);
      var r = await request('authenticate', { user: { account_name: name, password: pw2 } });
      if (r.response === 400) {
        // Passwords differ: the server is back at "choose a password".
        $('password').value = '';
        $('password2').value = '';
        $('password').focus();
      }
      expect(r, [201]);
      return await signedIn(r, name, pw);
    } catch (e) {
      showError('signin', e);
    } finally {
      state.signingIn = false;
      $('signin-submit').disabled = false;
    }
  }

  /**
   * Signs in again (one-shot) after a reconnect, or at page load with the token saved by an
   * earlier visit: with the token when there is one, else with the password kept in memory.
   */
  async function resume() {
    var c = state.creds;
    var restoring = state.restoring;
    var user = c.token ? { account_name: c.name, token: c.token } : { account_name: c.name, password: c.password };
    try {
      var a = await request('authenticate', { user: user });
      if (a.response === 200) {
        state.restoring = false;
        return await signedIn(a, c.name, c.token ? null : c.password, !restoring);
      }
      if (a.response === 402) abandonConnection();
      // Expired or revoked (or the account is gone): the password is needed again.
      if (c.token) L.clearSession(window.localStorage);
      state.restoring = false;
      forgetCredentials();
      showSignIn();
      if (c.token && (a.response === 402 || a.response === 404)) {
        $('signin-info').textContent = 'Your saved sign-in has expired. Sign in with your password.';
      } else {
        showError('signin', replyFailure(a, 'Could not sign in again. '));
      }
    } catch (e) {
      // The connection dropped again; onClosed schedules the next try.
    }
  }

  async function signedIn(reply, name, password, resumed) {
    var back = resumed ? state.wantRoom : null;
    var token = typeof reply.token === 'string' && reply.token ? reply.token
      : (state.creds && state.creds.token) || null;
    // With a token the password is not kept, not even in memory; without one (a server that
    // gives no tokens) it is kept in memory only, to sign in again after a drop.
    state.creds = token ? { name: name, token: token } : { name: name, password: password };
    if (token) L.saveSession(window.localStorage, name, token);
    state.signedIn = true;
    state.noReconnect = false;
    state.attempt = 0;
    if (!L.sameName(state.me, name)) resetViews();
    state.me = name;
    $('password').value = '';
    hideConfirm();
    setParts($('me'), [u(name)]);
    $('whoami').hidden = false;
    $('signin-view').hidden = true;
    $('chat-view').hidden = false;
    setConn('online', 'Connected');
    // Signed in: whatever the connection or the sign-in went wrong with is over.
    clearErrors('connection');
    clearError('signin');
    enterRoom(reply.room || L.GENERAL);
    if (reply.response === 201) systemLine(['Welcome, ', u(name), '! Your account is ready.']);
    else if (!resumed) systemLine(['Signed in as ', u(name), '.']);
    if (typeof reply.missed === 'number' && reply.missed > 0) {
      systemLine([reply.missed + ' new message' + (reply.missed === 1 ? '' : 's') + ' in ',
        u(L.GENERAL), ' since you were last here' +
        (reply.missed > 20 ? ' (use “Load older messages” to see them all).' : '.')]);
    }
    if (!resumed) $('text').focus();
    startRefresh();
    try {
      var p = await request('presence', {});
      if (p.account_name && L.sameName(p.account_name, name)) {
        state.me = p.account_name;
        state.creds.name = p.account_name;
        if (state.creds.token) L.saveSession(window.localStorage, p.account_name, state.creds.token);
        setParts($('me'), [u(p.account_name)]);
      }
      if (back && L.roomKey(back) !== L.roomKey(L.GENERAL)) {
        await joinRoom(back, undefined, true);
      }
      if (resumed) systemLine('Reconnected.');
    } catch (e) {
      showError('composer', e);
    }
    refreshRooms();
    refreshUsers();
  }

  function forgetCredentials() {
    state.creds = null;
    state.signedIn = false;
  }

  function showSignIn() {
    stopRefresh();
    $('chat-view').hidden = true;
    $('whoami').hidden = true;
    $('signin-view').hidden = false;
    if (!$('name').value && state.me) $('name').value = state.me;
    ($('name').value ? $('password') : $('name')).focus();
  }

  function signOut() {
    var ws = state.ws;
    var hadToken = !!(state.creds && state.creds.token);
    L.clearSession(window.localStorage);
    forgetCredentials();
    $('name').value = state.me || '';
    state.me = null;
    state.wantRoom = null;
    state.room = L.GENERAL;
    resetViews();
    setTarget(null);
    hideSecret();
    $('rooms').textContent = '';
    $('users').textContent = '';
    state.users.clear();
    // Nothing the signed-out account did is anybody's business now.
    ERROR_SLOTS.forEach(clearError);
    ['signin-info', 'invite-info'].forEach(function (id) { $(id).textContent = ''; });
    showSignIn();
    if (ws && ws.readyState === WebSocket.OPEN) {
      // Say goodbye (revoking the token: `logout`), then start a fresh connection for the
      // next sign-in.
      request(hadToken ? 'logout' : 'quit').catch(function () {});
      abandonConnection();
    }
  }

  // ---------------------------------------------------------------- views (one per room)

  function view(roomName) {
    var key = L.roomKey(roomName);
    var v = state.views.get(key);
    if (!v) {
      var list = document.createElement('ol');
      list.className = 'messages';
      list.dataset.room = L.roomName(roomName);
      list.hidden = true;
      $('log').appendChild(list);
      v = { key: key, name: L.roomName(roomName), list: list, ids: [], byId: new Map(), oldest: null, done: false };
      state.views.set(key, v);
    }
    return v;
  }

  function currentView() { return view(state.room); }

  function resetViews() {
    state.views.forEach(function (v) { v.list.remove(); });
    state.views.clear();
  }

  function isGeneral(room) { return L.roomKey(room) === L.roomKey(L.GENERAL); }

  function enterRoom(room) {
    var changed = L.roomKey(room) !== L.roomKey(state.room);
    state.room = room;
    state.wantRoom = room;
    var v = view(room);
    v.name = room;
    v.list.dataset.room = room;
    state.views.forEach(function (o) { o.list.hidden = o !== v; });
    setParts($('room-title'), [u(room)]);
    setParts($('users-room'), [u(room)]);
    setParts($('invite-room'), [u(room)]);
    $('exit').hidden = isGeneral(room);
    $('invite-form').hidden = isGeneral(room);
    updateOlderButton();
    updateTarget();
    markCurrentRoom();
    if (changed) {
      document.title = L.isolate(room) + ' · jimd chat';
      // Errors about entering, leaving or using the previous room are moot in this one.
      clearErrors('room');
      $('invite-info').textContent = '';
      state.users.clear();
      $('users').textContent = '';
    }
    scrollToBottom(true);
  }

  function atBottom() {
    var w = $('log-wrap');
    return w.scrollHeight - w.scrollTop - w.clientHeight < 40;
  }

  function scrollToBottom(force) {
    var w = $('log-wrap');
    if (force || atBottom()) w.scrollTop = w.scrollHeight;
  }

  function timeEl(t) {
    var el = document.createElement('time');
    var now = typeof t === 'number' ? t : Date.now() / 1000;
    el.dateTime = L.isoTime(now);
    el.textContent = L.formatTime(now);
    el.title = new Date(now * 1000).toLocaleString();
    return el;
  }

  function span(cls, text) {
    var s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    return s;
  }

  // ---------------------------------------------------------------- user text and bidi
  // Every piece of user text (names, room names, statuses, message texts, server notices) goes
  // into its own <bdi>: a bidi isolate whose direction comes from its own first strong letter,
  // so right-to-left text or an unclosed override (U+202E) in it cannot reorder what follows.

  /** A user-text part for parts()/setParts(): `text` isolated, with class `cls`. */
  function u(text, cls) { return { user: String(text), cls: cls }; }

  /** A <bdi> holding user text. */
  function bdi(text, cls) {
    var b = document.createElement('bdi');
    if (cls) b.className = cls;
    b.textContent = text;
    return b;
  }

  /** A fragment of plain strings (our own words) and u() parts (user text, isolated). */
  function parts(list) {
    var f = document.createDocumentFragment();
    (Array.isArray(list) ? list : [list]).forEach(function (p) {
      f.appendChild(typeof p === 'string' ? document.createTextNode(p) : bdi(p.user, p.cls));
    });
    return f;
  }

  function setParts(el, list) {
    el.textContent = '';
    el.appendChild(parts(list));
  }

  function smallButton(text, onClick, label) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'small';
    b.appendChild(parts(text));
    if (label) b.setAttribute('aria-label', label);
    b.addEventListener('click', onClick);
    return b;
  }

  /**
   * Shows a msg frame (push, history item or our own sent message) in the view it belongs
   * to, in id order, once.
   */
  function addMessage(m, extra) {
    extra = extra || {};
    if (typeof m.message !== 'string') return;
    var d = L.describeMessage(m, state.me);
    var v = d.room ? view(m.to) : currentView();
    var idx = -1;
    if (typeof m.id === 'number') {
      idx = L.insertionIndex(v.ids, m.id);
      if (idx < 0) return;  // already shown (history pushed again after a reconnect)
    }
    var li = document.createElement('li');
    li.className = 'msg' + (d.private ? ' private' : '') + (d.mine ? ' mine' : '') + (m.history ? ' old' : '');
    if (typeof m.id === 'number') li.dataset.id = String(m.id);
    li.appendChild(timeEl(m.time));
    var head = document.createElement('span');
    head.className = 'head';
    if (d.private) {
      head.appendChild(span('badge', 'private'));
      head.appendChild(document.createTextNode(' '));
      var from = document.createElement('span');
      from.className = 'from';
      from.appendChild(parts(d.mine ? ['you → ', u(d.peer)] : [u(m.from), ' → you']));
      head.appendChild(from);
    } else {
      head.appendChild(bdi(String(m.from), 'from'));
    }
    head.appendChild(document.createTextNode(': '));
    li.appendChild(head);
    li.appendChild(bdi(m.message, 'body'));
    if (extra.note) {
      var note = document.createElement('span');
      note.className = 'note';
      note.appendChild(document.createTextNode(' '));
      note.appendChild(parts(extra.note));
      li.appendChild(note);
    }
    if (d.private && d.peer) {
      var peer = d.peer;
      li.appendChild(smallButton('Reply', function () { setTarget(peer); $('text').focus(); },
        'Reply privately to ' + peer));
    }
    var atEnd = idx < 0 || idx === v.ids.length;
    var follow = v.key === L.roomKey(state.room) && (atBottom() || d.mine);
    var win = state.histWin;
    if (atEnd && m.history === true && win && win.key === v.key) {
      // Recent history pushed after a sign-in or join: above the lines that reply led to.
      var after = win.after && win.after.parentNode === v.list ? win.after : null;
      v.list.insertBefore(li, after ? after.nextSibling : v.list.firstChild);
      win.after = li;
      if (idx >= 0) v.ids.push(m.id);
    } else if (atEnd) {
      v.list.appendChild(li);   // the newest: after everything, system lines included
      if (idx >= 0) v.ids.push(m.id);
    } else {
      v.list.insertBefore(li, v.byId.get(v.ids[idx]));
      v.ids.splice(idx, 0, m.id);
    }
    if (typeof m.id === 'number') {
      v.byId.set(m.id, li);
      if (!d.private && (v.oldest === null || m.id < v.oldest)) v.oldest = m.id;
    }
    if (atEnd && follow) scrollToBottom(true);
    // Somebody not in the people list spoke in this room (#general has no join events).
    if (!d.private && !m.history && v.key === L.roomKey(state.room) && typeof m.from === 'string' &&
        !d.mine && !state.users.has(m.from.toLowerCase())) soon('users', refreshUsers);
  }

  /**
   * A line from the client or server (not a chat message), in the current view. `text` is a
   * string of our own words or a parts() list with the user text in u().
   */
  function systemLine(text, kind, extraNode) {
    var v = currentView();
    var li = document.createElement('li');
    li.className = 'sys' + (kind ? ' ' + kind : '');
    li.appendChild(timeEl());
    var body = document.createElement('span');
    body.className = 'body';
    body.appendChild(parts(text));
    li.appendChild(body);
    if (extraNode) {
      li.appendChild(document.createTextNode(' '));
      li.appendChild(extraNode);
    }
    var follow = atBottom();
    v.list.appendChild(li);
    if (follow) scrollToBottom(true);
    return li;
  }

  function onEvent(f) {
    if (f.event === 'status' && typeof f.user === 'string') {
      setStatus(f.user, typeof f.status === 'string' ? f.status : '');
      return;
    }
    if (typeof f.user !== 'string' || typeof f.room !== 'string') return;
    if (f.event !== 'join' && f.event !== 'leave') return;
    var verb = f.event === 'join' ? 'joined' : 'left';
    var v = view(f.room);
    var li = document.createElement('li');
    li.className = 'sys event';
    li.appendChild(timeEl());
    var body = document.createElement('span');
    body.className = 'body';
    body.appendChild(parts([u(f.user), ' ' + verb + ' ', u(f.room)]));
    li.appendChild(body);
    var follow = atBottom();
    v.list.appendChild(li);
    if (follow && v.key === L.roomKey(state.room)) scrollToBottom(true);
    // Who is here and the room counts changed. Coalesced: a burst of events costs one request.
    if (v.key === L.roomKey(state.room)) soon('users', refreshUsers);
    soon('rooms', refreshRooms);
  }

  var soonTimers = {};
  function soon(key, fn) {
    if (soonTimers[key]) return;
    soonTimers[key] = setTimeout(function () { soonTimers[key] = null; fn(); }, EVENT_REFRESH_MS);
  }

  function onInvite(f) {
    if (typeof f.room !== 'string') return;
    var room = f.room;
    var b = smallButton(['join ', u(room)], function () {
      clearError('composer');
      joinRoom(room).catch(function (e) { showError('composer', e); });
    });
    b.className = 'small invite-join';
    systemLine([typeof f.from === 'string' ? u(f.from) : 'Someone', ' invited you to ', u(room), '.'], 'invite', b);
    refreshRooms();
  }

  function onNotice(f) {
    var text = typeof f.text === 'string' ? f.text : 'notice from the server';
    systemLine(['Server: ', u(text)], 'notice');
    if (/signed in from another/i.test(text)) {
      // Another window took over this account: do not fight it for the connection.
      state.noReconnect = true;
    }
  }

  // ---------------------------------------------------------------- history

  function updateOlderButton() {
    var v = currentView();
    var b = $('older');
    b.disabled = v.done;
    b.textContent = v.done ? 'No older messages' : 'Load older messages';
  }

  async function loadOlder() {
    var v = currentView();
    if (v.done) return;
    var b = $('older');
    b.disabled = true;
    b.textContent = 'Loading…';
    var fields = { room: v.name, limit: HISTORY_PAGE };
    if (v.oldest !== null) fields.before = v.oldest;
    var w = $('log-wrap');
    try {
      var r = expect(await request('history', fields), [200]);
      var msgs = Array.isArray(r.messages) ? r.messages : [];
      var fromBottom = w.scrollHeight - w.scrollTop;
      $('log').setAttribute('aria-busy', 'true');
      for (var i = msgs.length - 1; i >= 0; i--) addMessage(msgs[i]);
      $('log').removeAttribute('aria-busy');
      w.scrollTop = w.scrollHeight - fromBottom;  // keep what was on screen in place
      if (msgs.length < HISTORY_PAGE) v.done = true;
      if (!msgs.length) systemLine(['No older messages in ', u(v.name), '.']);
    } catch (e) {
      showError('composer', e);
    } finally {
      updateOlderButton();
    }
  }

  /** Fills a view with the room's latest messages (after exit, which pushes no history). */
  async function loadRecent(room) {
    var v = view(room);
    try {
      var r = expect(await request('history', { room: v.name, limit: HISTORY_PAGE }), [200]);
      var msgs = Array.isArray(r.messages) ? r.messages : [];
      msgs.forEach(function (m) { addMessage(m); });
      if (msgs.length < HISTORY_PAGE) v.done = true;   // the latest page holds everything there is
      updateOlderButton();
      scrollToBottom(true);
    } catch (e) {
      showError('composer', e);
    }
  }

  // ---------------------------------------------------------------- rooms and people

  async function joinRoom(room, password, quiet) {
    var fields = { room: L.roomName(room).slice(1) };
    if (password) fields.password = password;
    var r = await request('join', fields);
    if (r.response === 403 && !password) {
      var e = replyFailure(r);
      e.needsPassword = true;
      throw e;
    }
    expect(r, [200]);
    setTarget(null);
    enterRoom(r.room);
    if (!quiet) systemLine(['You are now in ', u(r.room), '.']);
    refreshUsers();
    refreshRooms();
    return r;
  }

  async function createRoom(room) {
    var r = expect(await request('create', { room: L.roomName(room).slice(1) }), [201]);
    setTarget(null);
    enterRoom(r.room);
    view(r.room).done = true;   // a new room has no history
    updateOlderButton();
    systemLine(['You created ', u(r.room), ' and are now in it.']);
    showSecret(r.room, r.password);
    refreshUsers();
    refreshRooms();
    return r;
  }

  async function exitRoom() {
    var r = expect(await request('exit'), [200]);
    setTarget(null);
    hideSecret();
    enterRoom(r.room);
    systemLine(['You are back in ', u(r.room), '.']);
    refreshUsers();
    refreshRooms();
    await loadRecent(r.room);
  }

  async function inviteUser(user) {
    var r = expect(await request('invite', { room: state.room.replace(/^#/, ''), user: user }), [200]);
    var who = r.user || user;
    var where = r.room || state.room;
    systemLine([u(who), ' is invited to ', u(where), ' (a member now: no password needed).']);
    return r;
  }

  async function refreshRooms() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('rooms'), [200]);
      state.rooms = Array.isArray(r.rooms) ? r.rooms : [];
      renderRooms();
    } catch (e) { /* shown on the next user action */ }
  }

  function renderRooms() {
    var ul = $('rooms');
    ul.textContent = '';
    state.rooms.forEach(function (info) {
      if (typeof info.room !== 'string') return;
      var li = document.createElement('li');
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'room-button';
      b.dataset.room = info.room;
      b.appendChild(bdi(info.room, 'room-name'));
      var meta = [(info.online || 0) + ' online'];
      if (typeof info.owner === 'string') meta.push(' · owner ', u(info.owner));
      if (!info.member) meta.push(' · password');
      var m = span('room-meta', '');
      m.appendChild(parts(meta));
      b.appendChild(m);
      b.addEventListener('click', function () { onRoomClick(info); });
      li.appendChild(b);
      ul.appendChild(li);
    });
    markCurrentRoom();
  }

  function markCurrentRoom() {
    var key = L.roomKey(state.room);
    Array.prototype.forEach.call($('rooms').querySelectorAll('button[data-room]'), function (b) {
      if (L.roomKey(b.dataset.room) === key) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    });
  }

  function onRoomClick(info) {
    clearError('join');
    clearError('composer');
    if (L.roomKey(info.room) === L.roomKey(state.room)) {
      closeSideOnPhone();
      $('text').focus();
      return;
    }
    if (!info.member) {
      $('join-room').value = info.room;
      $('join-password').value = '';
      $('join-password').focus();
      showError('join', info.room + ' needs its password.', 'room');
      return;
    }
    var go = isGeneral(info.room) ? exitRoom() : joinRoom(info.room);
    go.then(function () { closeSideOnPhone(); $('text').focus(); })
      .catch(function (e) { showError('join', e); });
  }

  async function refreshUsers() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('users'), [200]);
      renderUsers(Array.isArray(r.users) ? r.users : []);
    } catch (e) { /* e.g. we left the room meanwhile */ }
  }

  function renderUsers(users) {
    var ul = $('users');
    ul.textContent = '';
    state.users.clear();
    users.forEach(function (who) {
      if (typeof who.account_name !== 'string') return;
      var li = document.createElement('li');
      li.dataset.user = who.account_name.toLowerCase();
      state.users.add(li.dataset.user);
      var mine = L.sameName(who.account_name, state.me);
      var nameEl = span('user-name', '');
      nameEl.appendChild(parts(mine ? [u(who.account_name), ' (you)'] : [u(who.account_name)]));
      li.appendChild(nameEl);
      li.appendChild(bdi(typeof who.status === 'string' ? who.status : '', 'user-status'));
      if (!mine) {
        var name = who.account_name;
        li.appendChild(smallButton('Message', function () {
          setTarget(name);
          closeSideOnPhone();
          $('text').focus();
        }, 'Send a private message to ' + name));
      }
      ul.appendChild(li);
    });
  }

  /** A `status` event: the new status of `user` in the people list, at once. */
  function setStatus(user, status) {
    var li = $('users').querySelector('li[data-user="' + CSS.escape(user.toLowerCase()) + '"]');
    var el = li && li.querySelector('.user-status');
    if (el) el.textContent = status;
  }

  /** Whether the rooms and people lists can be seen now. */
  function listsVisible() {
    return document.visibilityState !== 'hidden' &&
      (!isPhone() || document.body.classList.contains('side-open'));
  }

  function refreshNow() {
    if (!state.signedIn) return;
    refreshRooms();
    refreshUsers();
  }

  function startRefresh() {
    stopRefresh();
    state.refresh = setInterval(function () {
      if (listsVisible()) refreshNow();
    }, REFRESH_MS);
  }

  function stopRefresh() {
    clearInterval(state.refresh);
    state.refresh = null;
  }

  // ---------------------------------------------------------------- the room password, once

  function showSecret(room, password) {
    setParts($('secret-room'), [u(room)]);
    $('secret-value').value = password || '';
    $('secret-status').textContent = '';
    $('secret').hidden = false;
    $('secret-value').focus();
    $('secret-value').select();
  }

  function hideSecret() {
    $('secret').hidden = true;
    $('secret-value').value = '';
  }

  async function copySecret() {
    var input = $('secret-value');
    var done = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(input.value);
        done = true;
      }
    } catch (e) { /* fall back below */ }
    if (!done) {
      input.focus();
      input.select();
      try { done = document.execCommand('copy'); } catch (e) { done = false; }
    }
    $('secret-status').textContent = done ? 'Copied.' : 'Select the password and copy it (Ctrl+C).';
  }

  // ---------------------------------------------------------------- composer

  function setTarget(account) {
    var changed = (account || null) !== state.target;
    state.target = account || null;
    updateTarget();
    // A refused private message (no such account) is about the conversation just left.
    if (changed) clearErrors('action', ['composer']);
  }

  function updateTarget() {
    var t = state.target;
    setParts($('target-label'), t ? ['Private message to ', u(t)] : ['To ', u(state.room)]);
    $('target-clear').hidden = !t;
    setParts($('target-clear'), ['Back to ', u(state.room)]);
    $('composer').classList.toggle('private', !!t);
    $('text').placeholder = t ? 'Private message to ' + L.isolate(t) : 'Message ' + L.isolate(state.room);
  }

  async function sendMessage(text, to) {
    var r = expect(await request('msg', { message: text, to: to }), [200, 202]);
    var note = '';
    if (r.response === 202) note = ['(', u(to), ' is offline: delivered when they sign in)'];
    addMessage({ id: r.id, time: r.time, from: state.me, to: to, message: text }, { note: note });
  }

  async function onComposerSubmit(ev) {
    ev.preventDefault();
    clearError('composer');
    var box = $('text');
    var text = box.value;
    var c = L.parseCommand(text);
    if (c.kind === 'error') {
      if (text.trim()) showError('composer', c.error, 'action');
      return;
    }
    box.value = '';
    autosize();
    try {
      switch (c.kind) {
        case 'say': await sendMessage(c.text, state.target || state.room); break;
        case 'msg': await sendMessage(c.text, c.to); break;
        case 'join': await joinRoom(c.room, c.password); break;
        case 'create': await createRoom(c.room); break;
        case 'exit': await exitRoom(); break;
        case 'invite': await inviteUser(c.user); break;
        case 'rooms': await refreshRooms(); openSide(); break;
        case 'users': await refreshUsers(); openSide(); break;
        case 'history': await loadOlder(); break;
        case 'help': L.HELP.forEach(function (h) { systemLine(h, 'help'); }); break;
        default: break;
      }
    } catch (e) {
      if (!box.value) {
        box.value = text;   // nothing lost: the text is back for another try
        autosize();
      }
      showError('composer', e);
    }
  }

  function autosize() {
    var t = $('text');
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight + 2, 160) + 'px';
  }

  // ---------------------------------------------------------------- errors

  // Each error slot (<p id="WHERE-error">) keeps the cause of its text in data-cause, and the
  // text goes as soon as that cause is gone:
  //   connection  the server could not be reached or was full: once signed in again (on the
  //               sign-in form: once a connection opens)
  //   rate        a 429: after its retry_after
  //   room        about entering, leaving or using a room: when the current room changes
  //   signin      a refused sign-in: on the next attempt, on editing the form, on signing in
  //   action      anything else: on the next attempt or on editing that form
  // Signing out clears them all. The texts are plain words, never protocol internals.
  var ERROR_SLOTS = ['signin', 'composer', 'join', 'create', 'invite'];
  var errorTimers = {};

  /** An Error whose message is fit to show to people, with its cause (see above). */
  function failure(text, cause, extra) {
    var e = new Error(text);
    e.plain = true;
    e.why = cause || 'action';
    Object.keys(extra || {}).forEach(function (k) { e[k] = extra[k]; });
    return e;
  }

  /**
   * Shows an error next to the form `where`: `err` is a string of our own words (with
   * `cause`) or an Error (a failure() keeps its words; anything else is a bug in this page,
   * logged to the console and shown in general words).
   */
  function showError(where, err, cause) {
    var el = $(where + '-error');
    if (!el) return;
    var text, why = cause || 'action', retryMs = 0;
    if (typeof err === 'string') {
      text = err;
    } else if (err && err.plain) {
      text = err.message;
      why = cause || err.why;
      retryMs = err.retryMs || 0;
    } else {
      console.error('jimd web client:', err);
      text = 'Something went wrong in this page. If it happens again, reload the page.';
    }
    clearTimeout(errorTimers[where]);
    el.textContent = text;
    el.dataset.cause = why;
    if (retryMs) errorTimers[where] = setTimeout(function () { clearError(where); }, retryMs);
  }

  function clearError(where) {
    var el = $(where + '-error');
    clearTimeout(errorTimers[where]);
    if (!el) return;
    el.textContent = '';
    delete el.dataset.cause;
  }

  /** Clears the errors of cause `cause` (in the slots `slots`, default all). */
  function clearErrors(cause, slots) {
    (slots || ERROR_SLOTS).forEach(function (where) {
      var el = $(where + '-error');
      if (el && el.dataset.cause === cause) clearError(where);
    });
  }

  /** The user edits the form: errors about what was there go (not connection or rate ones). */
  function clearOnEdit(where) {
    var el = $(where + '-error');
    if (el && el.dataset.cause !== 'connection' && el.dataset.cause !== 'rate') clearError(where);
  }

  function fieldError(where, text, input) {
    showError(where, text, 'action');
    if (input) input.focus();
  }

  // ---------------------------------------------------------------- side panel on phones

  function isPhone() { return window.matchMedia('(max-width: 760px)').matches; }

  function openSide() {
    if (!isPhone()) return;
    var was = document.body.classList.contains('side-open');
    document.body.classList.add('side-open');
    $('side-toggle').setAttribute('aria-expanded', 'true');
    if (!was) refreshNow();   // not polled while folded away
  }

  function closeSideOnPhone() {
    document.body.classList.remove('side-open');
    $('side-toggle').setAttribute('aria-expanded', 'false');
  }

  function toggleSide() {
    if (document.body.classList.contains('side-open')) {
      closeSideOnPhone();
      $('side-toggle').focus();
    } else {
      openSide();
      var first = $('side').querySelector('button, input');
      if (first) first.focus();
    }
  }

  // ---------------------------------------------------------------- wiring

  function formHandler(where, fn) {
    return function (ev) {
      ev.preventDefault();
      clearError(where);
      Promise.resolve().then(fn).catch(function (e) {
        showError(where, e);
        if (e.needsPassword) $('join-password').focus();
      });
    };
  }

  function init() {
    $('signin').addEventListener('submit', onSignInSubmit);
    $('name').addEventListener('input', function () { if (!$('confirm-row').hidden) hideConfirm(); });
    $('composer').addEventListener('submit', onComposerSubmit);
    $('text').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $('composer').requestSubmit();
      } else if (ev.key === 'Escape' && state.target) {
        setTarget(null);
      }
    });
    $('text').addEventListener('input', autosize);
    $('target-clear').addEventListener('click', function () { setTarget(null); $('text').focus(); });
    $('older').addEventListener('click', loadOlder);
    $('exit').addEventListener('click', function () {
      clearError('composer');
      exitRoom().then(function () { $('text').focus(); })
        .catch(function (e) { showError('composer', e); });
    });
    $('join-form').addEventListener('submit', formHandler('join', async function () {
      var room = $('join-room').value.trim();
      var problem = L.roomNameProblem(room);
      if (problem) { $('join-room').focus(); throw failure(problem); }
      var pw = $('join-password').value;
      await joinRoom(room, pw || undefined);
      $('join-room').value = '';
      $('join-password').value = '';
      closeSideOnPhone();
      $('text').focus();
    }));
    $('create-form').addEventListener('submit', formHandler('create', async function () {
      var room = $('create-room').value.trim();
      var problem = L.roomNameProblem(room);
      if (problem) { $('create-room').focus(); throw failure(problem); }
      await createRoom(room);
      $('create-room').value = '';
      closeSideOnPhone();
    }));
    $('invite-form').addEventListener('submit', formHandler('invite', async function () {
      var user = $('invite-user').value.trim();
      var problem = L.accountNameProblem(user);
      if (problem) { $('invite-user').focus(); throw failure(problem); }
      $('invite-info').textContent = '';
      var r = await inviteUser(user);
      setParts($('invite-info'), [u(r.user || user), ' is invited.']);
      $('invite-user').value = '';
    }));
    $('rooms-refresh').addEventListener('click', refreshRooms);
    $('users-refresh').addEventListener('click', refreshUsers);
    [['signin', ['name', 'password', 'password2']], ['composer', ['text']],
      ['join', ['join-room', 'join-password']], ['create', ['create-room']], ['invite', ['invite-user']]]
      .forEach(function (slot) {
        slot[1].forEach(function (id) {
          $(id).addEventListener('input', function () { clearOnEdit(slot[0]); });
        });
      });
    document.addEventListener('visibilitychange', function () {
      if (listsVisible()) refreshNow();
    });
    $('secret-copy').addEventListener('click', copySecret);
    $('secret-close').addEventListener('click', function () { hideSecret(); $('text').focus(); });
    $('signout').addEventListener('click', signOut);
    $('reconnect-now').addEventListener('click', reconnectNow);
    $('side-toggle').addEventListener('click', toggleSide);
    $('side-close').addEventListener('click', function () { closeSideOnPhone(); $('side-toggle').focus(); });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && document.body.classList.contains('side-open')) {
        closeSideOnPhone();
        $('side-toggle').focus();
      }
    });
    window.addEventListener('online', function () { if (!state.ws && !state.noReconnect) reconnectNow(); });
    var saved = L.loadSession(window.localStorage);
    if (saved) {
      // A reload or a return visit: sign in with the saved token as soon as the socket opens.
      state.creds = saved;
      state.restoring = true;
      $('name').value = saved.name;
      setParts($('signin-info'), ['Signing in as ', u(saved.name), '…']);
    } else {
      $('name').focus();
    }
    connect();
  }

  // Used by the end-to-end test and handy in the console; carries no secrets.
  window.jimClient = {
    get connected() { return !!state.ws && state.ws.readyState === WebSocket.OPEN; },
    get signedIn() { return state.signedIn; },
    get room() { return state.room; },
    get me() { return state.me; },
    get attempt() { return state.attempt; }
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
