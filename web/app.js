// jimd web client: the DOM and the WebSocket. Protocol rules live in logic.js.
// User-supplied text only ever reaches the page through textContent or input values.
(function () {
  'use strict';
  var L = window.JimLogic;
  var $ = function (id) { return document.getElementById(id); };

  // Rooms and people are refreshed after every change this page makes (sign-in, join, exit,
  // create) and on every event push about a watched room, within EVENT_REFRESH_MS. Unread counts
  // follow the pushes of the watched rooms. The server pushes no join/leave events for #general
  // (only a coalesced `online` count) nor for rooms this account is not a member of, so a short
  // poll covers those while the lists can be seen (the page is visible and, on a phone, a panel
  // is open; opening it refreshes them at once).
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
    admin: false,             // the account is a server admin (jimd --admin; see probeAdmin)
    banned: new Map(),        // room key -> Set of names this page banned there (unban suggestions)
    signedIn: false,
    signingIn: false,
    room: L.GENERAL,          // current room as the server writes it
    wantRoom: null,           // room to go back to after a reconnect
    viewKey: L.roomView(L.GENERAL),   // the view on screen: 'room:#den' or 'dm:bob'
    views: new Map(),         // view key -> view
    unread: new Map(),        // view key -> {unread, lastRead, newest} (see logic.js)
    convs: new Map(),         // 'dm:bob' -> {with, lastId}: the private conversations
    presence: new Map(),      // account (lower case) -> {name, status}: everyone signed in
    roomInfo: new Map(),      // room key -> its entry of the last `rooms` reply
    roomUsers: [],            // last `users` reply of the current room
    myStatus: 'online',
    countsKnown: false,       // the first `rooms` reply since the sign-in has come
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
        var v = roomViewOf(typeof f.room === 'string' ? f.room : L.GENERAL);
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
      case 'read': onReadPush(f); break;
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
    var backView = resumed && state.viewKey.indexOf('dm:') === 0 ? state.viewKey : null;
    var token = typeof reply.token === 'string' && reply.token ? reply.token
      : (state.creds && state.creds.token) || null;
    // With a token the password is not kept, not even in memory; without one (a server that
    // gives no tokens) it is kept in memory only, to sign in again after a drop.
    state.creds = token ? { name: name, token: token } : { name: name, password: password };
    if (token) L.saveSession(window.localStorage, name, token);
    state.signedIn = true;
    state.admin = false;
    state.countsKnown = false;
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
      // Every room the account is a member of, now and later, arrives on this connection too.
      await request('watch', { rooms: 'all' });
      await probeAdmin();
      if (resumed && L.isAway(state.myStatus)) await setMyStatus(state.myStatus);
      if (back && L.roomKey(back) !== L.roomKey(L.GENERAL)) {
        await joinRoom(back, undefined, true);
      }
      if (backView) showView(backView);
      if (resumed) systemLine('Reconnected.');
    } catch (e) {
      showError('composer', e);
    }
    refreshRooms();
    refreshUsers();
    refreshConversations();
    refreshPresence();
    offerNotifications();
  }

  /**
   * Whether this account is a server admin (`jimd --admin`), who may delete any message
   * (PROTOCOL.md §19.5). The sign-in reply does not say, so the page asks the one question
   * whose answer does and that changes nothing: an account `unban` of itself, which is `400`
   * ("yourself") for an admin and `403` for everyone else (the contract's order of checks).
   */
  async function probeAdmin() {
    try {
      var r = await request('unban', { user: state.me });
      state.admin = !!r && r.response === 400;
    } catch (e) {
      state.admin = false;
    }
  }

  // ---------------------------------------------------------------- desktop notifications
  // Asked for once (per browser: the answer is kept by the browser, and "Not now" in
  // localStorage), from a button the user presses, as browsers want it.
  var NOTIFY_ASKED_KEY = 'jimd.notifications-asked';

  function offerNotifications() {
    var N = window.Notification;
    var asked = false;
    try { asked = window.localStorage.getItem(NOTIFY_ASKED_KEY) === '1'; } catch (e) { asked = false; }
    $('notify-ask').hidden = !(typeof N === 'function' && N.permission === 'default' && !asked);
  }

  function answerNotifications(yes) {
    try { window.localStorage.setItem(NOTIFY_ASKED_KEY, '1'); } catch (e) { /* asked again next time */ }
    $('notify-ask').hidden = true;
    if (yes && typeof window.Notification === 'function') {
      Promise.resolve(window.Notification.requestPermission()).catch(function () {});
    }
    $('text').focus();
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
    state.rooms = [];
    state.roomInfo.clear();
    state.roomUsers = [];
    resetViews();
    showMyStatus('online');
    hideSecret();
    $('rooms').textContent = '';
    $('directory').textContent = '';
    $('users').textContent = '';
    document.title = L.pageTitle(0, '');
    state.users.clear();
    // Nothing the signed-out account did is anybody's business now.
    ERROR_SLOTS.forEach(clearError);
    ['signin-info', 'invite-info', 'unban-info'].forEach(function (id) { $(id).textContent = ''; });
    state.admin = false;
    state.banned.clear();
    closeMenu(false);
    hideBanner();
    $('scheduled').hidden = true;
    $('scheduled-list').textContent = '';
    showSignIn();
    if (ws && ws.readyState === WebSocket.OPEN) {
      // Say goodbye (revoking the token: `logout`), then start a fresh connection for the
      // next sign-in.
      request(hadToken ? 'logout' : 'quit').catch(function () {});
      abandonConnection();
    }
  }

  // ---------------------------------------------------------------- views (rooms and conversations)
  // One view per room ('room:#den') and per private conversation ('dm:bob'), each with its own
  // message list. A room view can be shown only while the connection is in that room (a room
  // message goes to the current room); a conversation view is shown in any room. The others
  // keep receiving: the connection watches every member room, so their messages arrive too and
  // count as unread until their view is on screen at its newest line.

  function view(key, name) {
    var v = state.views.get(key);
    if (!v) {
      var dm = key.indexOf('dm:') === 0;
      var list = document.createElement('ol');
      list.className = 'messages' + (dm ? ' dm' : '');
      list.dataset.view = key;
      list.hidden = true;
      $('log').appendChild(list);
      v = { key: key, dm: dm, name: name || key.slice(key.indexOf(':') + 1), list: list, ids: [],
        byId: new Map(), mine: new Set(), oldest: null, done: false, loaded: false,
        dividerAfter: null, divider: null };
      list.dataset.room = dm ? '' : v.name;
      state.views.set(key, v);
    } else if (name && (v.name.toLowerCase() === name.toLowerCase())) {
      v.name = name;    // as the server writes it
    }
    return v;
  }

  function roomViewOf(room) { return view(L.roomView(room), L.roomName(room)); }
  function dmViewOf(account) { return view(L.dmView(account), account); }
  function currentView() { return state.views.get(state.viewKey) || roomViewOf(state.room); }
  function roomKeyView() { return L.roomView(state.room); }

  function resetViews() {
    state.views.forEach(function (v) { v.list.remove(); });
    state.views.clear();
    state.unread.clear();
    state.convs.clear();
    state.presence.clear();
    state.viewKey = L.roomView(L.GENERAL);
    closeMenu(false);
    hideBanner();   // about the account that was signed in
    renderNav();
  }

  function isGeneral(room) { return L.roomKey(room) === L.roomKey(L.GENERAL); }

  /** The connection is now in `room` (sign-in, join, create, exit): show its view. */
  function enterRoom(room) {
    var changed = L.roomKey(room) !== L.roomKey(state.room);
    state.room = room;
    state.wantRoom = room;
    roomViewOf(room).name = room;
    if (changed) {
      // Errors about entering, leaving or using the previous room are moot in this one.
      clearErrors('room');
      $('invite-info').textContent = '';
      $('unban-info').textContent = '';
      state.users.clear();
      $('users').textContent = '';
    }
    showView(L.roomView(room));
  }

  /** Shows view `key` (a room view only for the current room): heading, lists, divider, read. */
  function showView(key) {
    var prev = state.viewKey;
    var v = state.views.get(key) || view(key);
    if (prev !== key) {
      closeMenu(false);
      var old = state.views.get(prev);
      if (old) clearDivider(old);
      var e = state.unread.get(key);
      // Opened with unread messages: a "new messages" divider above the first of them.
      if (e && e.unread > 0) v.dividerAfter = v.dm ? null : e.lastRead;
      v.dividerCount = e ? e.unread : 0;
    }
    state.viewKey = key;
    state.views.forEach(function (o) { o.list.hidden = o !== v; });
    setParts($('room-title'), v.dm ? ['@', u(v.name)] : [u(v.name)]);
    $('room-title').dataset.view = key;
    $('exit').hidden = v.dm || isGeneral(v.name);
    showOwnerButtons();
    setParts($('invite-room'), [u(v.name)]);
    setParts($('unban-room'), [u(v.name)]);
    updateOlderButton();
    updateTarget();
    renderNav();
    renderHeaderCount();
    if (prev !== key) {
      if (v.dm) {
        $('users').textContent = '';
        renderPeople();
      }
      if (!v.loaded) loadRecent(v);
      placeDivider(v);
    }
    scrollToBottom(true);
    maybeRead();
  }

  /** Opens a view chosen by the user: a room is joined first (it becomes the current room). */
  async function selectView(key) {
    var v = state.views.get(key);
    if (key.indexOf('room:') === 0) {
      var room = v ? v.name : key.slice(5);
      if (L.roomKey(room) === L.roomKey(state.room)) { showView(key); return; }
      if (isGeneral(room)) await exitRoom();
      else await joinRoom(room);
      return;
    }
    showView(key);
  }

  function openConversation(account) {
    var v = dmViewOf(account);
    showView(v.key);
    return v;
  }

  // -------- unread bookkeeping (numbers in logic.js)

  function entryOf(key) {
    var e = state.unread.get(key);
    if (!e) { e = L.unreadEntry(0, 0); state.unread.set(key, e); }
    return e;
  }

  /** Whether the view is on screen at its newest line, in a visible, focused-enough page. */
  function seenNow(v) {
    return state.signedIn && v.key === state.viewKey && document.visibilityState === 'visible' &&
      !$('chat-view').hidden && atBottom();
  }

  /** Sends `read` for the current view when it is seen up to a message not yet marked read. */
  function maybeRead() {
    var v = state.views.get(state.viewKey);
    // Not before the first `rooms` reply of this sign-in: the divider needs the unread count first.
    if (!v || !state.countsKnown || !seenNow(v) || !v.ids.length) return;
    var e = entryOf(v.key);
    var newest = v.ids[v.ids.length - 1];
    var r = L.afterRead(e, newest);
    if (r.entry === e && e.unread === 0) return;
    state.unread.set(v.key, Object.assign(r.entry, { unread: 0 }));
    renderNav();
    if (newest > e.lastRead) sendRead(v, newest);
  }

  function sendRead(v, id) {
    var fields = v.dm ? { with: v.name, id: id } : { room: v.name.replace(/^#/, ''), id: id };
    request('read', fields).catch(function () { /* the next view or poll tries again */ });
  }

  /** A `read` push: another connection of this account read up to `id`. */
  function onReadPush(f) {
    if (typeof f.id !== 'number') return;
    var key = typeof f.room === 'string' ? L.roomView(f.room) : typeof f.with === 'string' ? L.dmView(f.with) : null;
    if (!key) return;
    var r = L.afterRead(entryOf(key), f.id);
    state.unread.set(key, r.entry);
    renderNav();
    if (!r.exact) soon(key.indexOf('dm:') === 0 ? 'convs' : 'rooms', key.indexOf('dm:') === 0 ? refreshConversations : refreshRooms);
  }

  /** Invite and Unban next to the room's name: for the owner of the room on screen only. */
  function showOwnerButtons() {
    var hide = currentView().dm || isGeneral(state.room) || !isOwner(state.room);
    $('invite-open').hidden = hide;
    $('unban-open').hidden = hide;
  }

  function isOwner(room) {
    var info = state.roomInfo.get(L.roomKey(room));
    return !!(info && typeof info.owner === 'string' && L.sameName(info.owner, state.me));
  }

  // -------- the "new messages" divider

  function clearDivider(v) {
    if (v.divider) v.divider.remove();
    v.divider = null;
    v.dividerAfter = null;
    v.dividerCount = 0;
  }

  function placeDivider(v) {
    if (v.dividerAfter === null && v.dm && v.dividerCount > 0 && v.loaded) {
      v.dividerAfter = L.lastReadFromCount(v.ids, v.dividerCount, function (id) { return v.mine.has(id); });
    }
    if (v.dividerAfter === null) return;
    var i = L.dividerIndex(v.ids, v.dividerAfter, function (id) { return v.mine.has(id); });
    if (i < 0) { if (v.divider) v.divider.remove(); return; }
    if (!v.divider) {
      v.divider = document.createElement('li');
      v.divider.className = 'divider';
      v.divider.setAttribute('role', 'separator');
      v.divider.setAttribute('aria-label', 'New messages');
      v.divider.appendChild(span('divider-text', 'New messages'));
    }
    var at = v.byId.get(v.ids[i]);
    if (at && at.previousSibling !== v.divider) v.list.insertBefore(v.divider, at);
  }

  // ---------------------------------------------------------------- scrolling, small DOM helpers

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

  // ---------------------------------------------------------------- messages

  /**
   * Shows a msg frame (push, history item or our own sent message) in the view it belongs to
   * (its room, or the conversation with the other side), in id order, once; counts it as
   * unread there unless it is seen at once; notifies and highlights when it is for us.
   */
  function addMessage(m, extra) {
    extra = extra || {};
    var deleted = m.deleted === true;
    if (typeof m.message !== 'string' && !deleted) return;
    var d = L.describeMessage(m, state.me);
    var v = d.view ? (d.private ? dmViewOf(d.peer) : roomViewOf(m.to)) : roomViewOf(state.room);
    var idx = -1;
    if (typeof m.id === 'number') {
      idx = L.insertionIndex(v.ids, m.id);
      if (idx < 0) {
        // Already shown (history pushed again after a reconnect): it may have been edited or
        // deleted meanwhile.
        if (deleted) applyDelete(m.id);
        else if (typeof m.edited === 'number') applyEdit(m.id, m.message, m.edited);
        return;
      }
    }
    var mention = !deleted && !d.mine && !d.private && L.mentions(m.message, state.me);
    var li = document.createElement('li');
    li.className = 'msg' + (d.private ? ' private' : '') + (d.mine ? ' mine' : '') +
      (m.history ? ' old' : '') + (mention ? ' mention' : '');
    if (typeof m.id === 'number') li.dataset.id = String(m.id);
    li.appendChild(timeEl(m.time));
    var head = document.createElement('span');
    head.className = 'head';
    head.appendChild(bdi(String(m.from), 'from'));
    head.appendChild(document.createTextNode(': '));
    li.appendChild(head);
    li.appendChild(bdi(deleted ? '' : m.message, 'body'));
    msgData.set(li, { id: m.id, from: m.from, to: m.to, message: deleted ? '' : m.message, deleted: deleted, view: v.key });
    if (deleted) showDeleted(li);
    else if (typeof m.edited === 'number') showEdited(li, m.edited);
    if (mention) li.appendChild(span('visually-hidden', ' (mentions you)'));
    if (extra.note) {
      var note = document.createElement('span');
      note.className = 'note';
      note.appendChild(document.createTextNode(' '));
      note.appendChild(parts(extra.note));
      li.appendChild(note);
    }
    if (typeof m.id === 'number' && !deleted) li.appendChild(menuButton(li));
    var atEnd = idx < 0 || idx === v.ids.length;
    var shownNow = v.key === state.viewKey;
    var follow = shownNow && (atBottom() || d.mine);
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
      if (d.mine) v.mine.add(m.id);
      if (v.oldest === null || m.id < v.oldest) v.oldest = m.id;
      if (d.private) noteConversation(d.peer, m);
      var e = entryOf(v.key);
      if (m.history || extra.history) {
        e.newest = Math.max(e.newest, m.id);
      } else {
        var r = L.afterMessage(e, m.id, d.mine, false);
        state.unread.set(v.key, r.entry);
        if (!d.mine && !deleted) notify(m, d, v, mention);
      }
    }
    if (v.dividerAfter !== null || v.dividerCount) placeDivider(v);
    if (atEnd && follow) scrollToBottom(true);
    renderNavSoon();
    if (shownNow) maybeRead();
    // Somebody not in the people list spoke in this room (#general has no join events).
    if (!d.private && !m.history && v.key === roomKeyView() && typeof m.from === 'string' &&
        !d.mine && !state.users.has(m.from.toLowerCase())) soon('users', refreshUsers);
  }

  /** A private message to or from `peer`: the conversation moves to the top of the list. */
  function noteConversation(peer, m) {
    var k = L.dmView(peer);
    var c = state.convs.get(k);
    if (!c) { c = { with: peer, lastId: 0 }; state.convs.set(k, c); }
    if (typeof m.id === 'number' && m.id > c.lastId) c.lastId = m.id;
  }

  /** A desktop notification for a private message or a mention, while the tab is hidden. */
  function notify(m, d, v, mention) {
    if (!(d.private || mention) || document.visibilityState !== 'hidden') return;
    if (typeof window.Notification !== 'function' || window.Notification.permission !== 'granted') return;
    try {
      var title = d.private ? m.from + ' (private message)' : m.from + ' in ' + v.name;
      var n = new window.Notification(L.isolate(title), { body: m.message.slice(0, 200), tag: v.key });
      n.onclick = function () {
        window.focus();
        selectView(v.key).catch(function (e) { showError('composer', e); });
        n.close();
      };
    } catch (e) { /* notifications not available here (e.g. some phones need a service worker) */ }
  }

  /**
   * A line from the client or server (not a chat message), in the current view (or `v`).
   * `text` is a string of our own words or a parts() list with the user text in u().
   */
  function systemLine(text, kind, extraNode, v) {
    v = v || currentView();
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
    if (follow && v.key === state.viewKey) scrollToBottom(true);
    return li;
  }

  function onEvent(f) {
    if (f.event === 'edit' && typeof f.id === 'number' && typeof f.message === 'string') {
      applyEdit(f.id, f.message, typeof f.edited === 'number' ? f.edited : Date.now() / 1000);
      return;
    }
    if (f.event === 'delete' && typeof f.id === 'number') {
      applyDelete(f.id);
      return;
    }
    if (f.event === 'status' && typeof f.user === 'string') {
      setStatus(f.user, typeof f.status === 'string' ? f.status : '');
      return;
    }
    if (f.event === 'online' && typeof f.room === 'string' && typeof f.online === 'number') {
      var info = state.roomInfo.get(L.roomKey(f.room));
      if (info) info.online = f.online;
      renderHeaderCount();
      renderDirectory();
      if (L.roomKey(f.room) === L.roomKey(state.room)) soon('users', refreshUsers);
      return;
    }
    if (typeof f.user !== 'string' || typeof f.room !== 'string') return;
    if (f.event !== 'join' && f.event !== 'leave') return;
    var verb = f.event === 'join' ? 'joined' : 'left';
    var v = roomViewOf(f.room);
    systemLine([u(f.user), ' ' + verb + ' ', u(f.room)], 'event', null, v);
    // Who is here and the room counts changed. Coalesced: a burst of events costs one request.
    if (L.roomKey(f.room) === L.roomKey(state.room)) soon('users', refreshUsers);
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
    if (/signed in from another/i.test(text)) {
      // Another window took over this account: do not fight it for the connection.
      state.noReconnect = true;
      systemLine('You signed in from another window or device, so this one has stopped.', 'notice');
      return;
    }
    var mod = L.moderationNotice(text);
    if (mod) {
      onModerated(mod);
      return;
    }
    systemLine(['Server: ', u(text)], 'notice');
  }

  /** A kick, a room ban or an account ban of this account: a banner and a line, in plain words. */
  function onModerated(mod) {
    showBanner(mod.words);
    if (mod.kind === 'account') {
      systemLine(mod.words, 'notice alert');
      return;
    }
    systemLine(mod.words, 'notice alert', null, roomViewOf(mod.room));
    if (L.roomKey(mod.room) === L.roomKey(state.room)) {
      var v = roomViewOf(mod.to);
      enterRoom(mod.to);
      if (!v.loaded) loadRecent(v);
    }
    systemLine(mod.words, 'notice alert');
    refreshRooms();
    refreshUsers();
  }

  function showBanner(text) {
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }

  function hideBanner() {
    $('banner').hidden = true;
    $('banner-text').textContent = '';
  }

  // ---------------------------------------------------------------- message menu, edit, delete
  // Every message line with an id has a menu button (focusable, labelled); the menu (one,
  // outside the live log) lists what this account may do with it: edit (own), delete (own, or
  // as the owner of its room), message its author privately, copy its text. Arrow keys move in
  // it, Escape or Tab closes it and the focus goes back to the button.

  var msgData = new WeakMap();   // message <li> -> {id, from, to, message, deleted, view}
  var menuState = null;          // {button, onClose} while the menu is open

  function findLine(id) {
    var found = null;
    state.views.forEach(function (v) { if (!found && v.byId.has(id)) found = v.byId.get(id); });
    return found;
  }

  function menuButton(li) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'small msg-menu-button';
    b.textContent = '⋯';
    b.setAttribute('aria-haspopup', 'menu');
    b.setAttribute('aria-expanded', 'false');
    var data = msgData.get(li);
    b.setAttribute('aria-label', 'Actions for this message' + (data && data.from ? ' from ' + L.isolate(data.from) : ''));
    b.addEventListener('click', function () {
      if (menuState && menuState.button === b) { closeMenu(true); return; }
      openMessageMenu(li, b);
    });
    return b;
  }

  function openMessageMenu(li, button) {
    var data = msgData.get(li);
    if (!data || data.deleted) return;
    var v = state.views.get(data.view);
    var mine = L.sameName(data.from, state.me);
    var owner = null;
    if (v && !v.dm) {
      var info = state.roomInfo.get(L.roomKey(v.name));
      owner = info && typeof info.owner === 'string' ? info.owner : null;
    }
    var items = [];
    if (mine) items.push(['Edit', function () { startEdit(li); }]);
    if (L.canDelete(data, state.me, owner, state.admin)) items.push(['Delete', function () { confirmDelete(li); }]);
    if (!mine && v && !v.dm && typeof data.from === 'string') {
      var who = data.from;
      items.push([['Message ', u(who), ' privately'], function () { openConversation(who); $('text').focus(); }]);
    }
    items.push(['Copy text', function () { copyText(data.message); }]);
    openMenu(button, items, 'Message actions');
  }

  /**
   * Opens the menu under `button` with `items` ([label parts, action]); the action runs after
   * the menu closed (the focus then is on the button unless the action moves it).
   */
  function openMenu(button, items, label) {
    closeMenu(false);
    var menu = $('menu');
    menu.textContent = '';
    menu.setAttribute('aria-label', label);
    items.forEach(function (it) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'menu-item';
      b.setAttribute('role', 'menuitem');
      b.tabIndex = -1;
      b.appendChild(parts(it[0]));
      b.addEventListener('click', function () {
        closeMenu(true);
        it[1]();
      });
      menu.appendChild(b);
    });
    menu.hidden = false;
    var r = button.getBoundingClientRect();
    var mw = menu.offsetWidth, mh = menu.offsetHeight;
    var left = Math.max(4, Math.min(r.right - mw, window.innerWidth - mw - 4));
    var top = r.bottom + 2 + mh > window.innerHeight ? Math.max(4, r.top - mh - 2) : r.bottom + 2;
    menu.style.left = left + 'px';
    menu.style.top = top + 'px';
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', 'menu');
    menuState = { button: button };
    var first = menu.querySelector('.menu-item');
    if (first) first.focus();
  }

  /** Closes the menu; `refocus`: the focus goes back to its button. */
  function closeMenu(refocus) {
    if (!menuState) return;
    var b = menuState.button;
    menuState = null;
    $('menu').hidden = true;
    $('menu').textContent = '';
    b.setAttribute('aria-expanded', 'false');
    b.removeAttribute('aria-controls');
    if (refocus && document.contains(b)) b.focus();
  }

  function onMenuKey(ev) {
    var items = Array.prototype.slice.call($('menu').querySelectorAll('.menu-item'));
    var at = items.indexOf(document.activeElement);
    var go = -1;
    if (ev.key === 'ArrowDown') go = (at + 1) % items.length;
    else if (ev.key === 'ArrowUp') go = (at - 1 + items.length) % items.length;
    else if (ev.key === 'Home') go = 0;
    else if (ev.key === 'End') go = items.length - 1;
    else if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); closeMenu(true); return; }
    else if (ev.key === 'Tab') { closeMenu(true); return; }
    if (go >= 0 && items.length) { ev.preventDefault(); items[go].focus(); }
  }

  async function copyText(text) {
    var done = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        done = true;
      }
    } catch (e) { /* fall back below */ }
    if (!done) {
      var t = document.createElement('textarea');
      t.value = text;
      t.setAttribute('aria-hidden', 'true');
      t.style.position = 'fixed';
      t.style.opacity = '0';
      document.body.appendChild(t);
      t.select();
      try { done = document.execCommand('copy'); } catch (e) { done = false; }
      t.remove();
    }
    if (!done) showError('composer', 'Could not copy: select the text and press Ctrl+C.', 'action');
  }

  /** The "(edited)" mark of a line, with the time of the edit as its tooltip. */
  function showEdited(li, t) {
    var mark = li.querySelector('.edited');
    if (!mark) {
      mark = span('edited', ' (edited)');
      var body = li.querySelector(':scope > .body');
      body.after(mark);
    }
    mark.title = L.editedTitle(t);
  }

  function showDeleted(li) {
    li.classList.add('deleted');
    var body = li.querySelector(':scope > .body');
    body.textContent = '';
    body.appendChild(span('deleted-text', 'message deleted'));
    var mark = li.querySelector('.edited');
    if (mark) mark.remove();
  }

  /** An edit (ours, or pushed): the new text in place, marked "(edited)". */
  function applyEdit(id, message, t) {
    var li = findLine(id);
    var data = li && msgData.get(li);
    if (!data || data.deleted) return;
    data.message = message;
    li.querySelector(':scope > .body').textContent = message;
    showEdited(li, t);
  }

  /** A deletion (ours, or pushed): "message deleted" without the text, no menu. */
  function applyDelete(id) {
    var li = findLine(id);
    var data = li && msgData.get(li);
    if (!data || data.deleted) return;
    if (li.querySelector('.edit-box')) endEdit(li, false);
    var b = li.querySelector('.msg-menu-button');
    var hadFocus = b && (document.activeElement === b || (menuState && menuState.button === b));
    if (menuState && menuState.button === b) closeMenu(false);
    data.deleted = true;
    data.message = '';
    showDeleted(li);
    if (b) b.remove();
    if (hadFocus) $('text').focus();
  }

  /** Edit in place: the text becomes a field; Enter saves, Shift+Enter a new line, Escape cancels. */
  function startEdit(li) {
    var data = msgData.get(li);
    if (!data || data.deleted) return;
    if (li.querySelector('.edit-box')) { li.querySelector('.edit-input').focus(); return; }
    var body = li.querySelector(':scope > .body');
    var box = document.createElement('div');
    box.className = 'edit-box';
    var input = document.createElement('textarea');
    input.className = 'edit-input';
    input.rows = 1;
    input.value = data.message;
    input.setAttribute('aria-label', 'Edit your message');
    var hint = document.createElement('span');
    hint.className = 'edit-hint small-print';
    hint.id = 'edit-hint-' + data.id;
    hint.textContent = 'Enter saves, Escape cancels.';
    var count = document.createElement('span');
    count.className = 'count';
    count.id = 'edit-count-' + data.id;
    var err = document.createElement('span');
    err.className = 'error';
    err.id = 'edit-error-' + data.id;
    err.setAttribute('role', 'alert');
    input.setAttribute('aria-describedby', hint.id + ' ' + count.id + ' ' + err.id);
    box.appendChild(input);
    box.appendChild(hint);
    box.appendChild(count);
    box.appendChild(err);
    body.hidden = true;
    var mark = li.querySelector('.edited');
    if (mark) mark.hidden = true;
    body.after(box);
    var fit = function () {
      input.style.height = 'auto';
      input.style.height = Math.min(input.scrollHeight + 2, 160) + 'px';
      var st = L.lengthState(input.value);
      count.textContent = st.words;
      count.dataset.level = st.level;
      err.textContent = '';
    };
    input.addEventListener('input', fit);
    input.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        saveEdit(li, input, err);
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        endEdit(li, true);
      }
    });
    fit();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  /** Leaves edit mode; `refocus`: the focus goes to the line's menu button. */
  function endEdit(li, refocus) {
    var box = li.querySelector('.edit-box');
    if (box) box.remove();
    li.querySelector(':scope > .body').hidden = false;
    var mark = li.querySelector('.edited');
    if (mark) mark.hidden = false;
    var b = li.querySelector('.msg-menu-button');
    if (refocus) (b || $('text')).focus();
  }

  async function saveEdit(li, input, err) {
    var data = msgData.get(li);
    var text = input.value;
    if (!data || data.deleted) return;
    if (text === data.message) { endEdit(li, true); return; }
    if (!text.trim()) { err.textContent = 'Type the new text, or delete the message from its menu.'; return; }
    var st = L.lengthState(text);
    if (st.level === 'over') { err.textContent = st.words; return; }
    if (input.dataset.saving) return;
    input.dataset.saving = '1';
    try {
      var r = expect(await request('edit', { id: data.id, message: text }), [200]);
      endEdit(li, true);
      applyEdit(data.id, text, typeof r.time === 'number' ? r.time : Date.now() / 1000);
    } catch (e) {
      err.textContent = e && e.plain ? e.message : 'Could not save the change. Try again.';
    } finally {
      delete input.dataset.saving;
    }
  }

  async function confirmDelete(li) {
    var data = msgData.get(li);
    if (!data || data.deleted) return;
    var mine = L.sameName(data.from, state.me);
    var ok = await askConfirm('Delete this message?',
      mine ? ['Everyone will see “message deleted” instead of your text.']
        : ['Everyone will see “message deleted” instead of what ', u(data.from), ' wrote.'], 'Delete');
    if (!ok) return;
    clearError('composer');
    try {
      expect(await request('delete', { id: data.id }), [200]);
      applyDelete(data.id);
    } catch (e) {
      showError('composer', e);
    }
  }

  var confirmResolve = null;

  /** A modal yes/no question (the confirm dialog): resolves true for `okLabel`, false otherwise. */
  function askConfirm(title, text, okLabel) {
    var d = $('confirm-dialog');
    if (confirmResolve) confirmResolve(false);
    $('confirm-title').textContent = title;
    setParts($('confirm-text'), Array.isArray(text) ? text : [text]);
    $('confirm-ok').textContent = okLabel;
    d.returnValue = '';
    return new Promise(function (resolve) {
      confirmResolve = resolve;
      dialogOpener['confirm-dialog'] = document.activeElement;
      d.showModal();
      $('confirm-cancel').focus();
    });
  }

  // ---------------------------------------------------------------- moderation of members

  /** The per-member menu of the people list: report; kick and ban for the room's owner. */
  function openMemberMenu(name, button) {
    var room = state.room;
    var items = [];
    if (isOwner(room) && !isGeneral(room)) {
      items.push([['Remove ', u(name), ' from ', u(room)], function () { moderate('kick', name, room); }]);
      items.push([['Ban ', u(name), ' from ', u(room)], function () { moderate('ban', name, room); }]);
    }
    items.push([['Report ', u(name), ' for abuse'], function () { moderate('report', name, room); }]);
    openMenu(button, items, 'Actions for ' + name);
  }

  async function moderate(what, name, room) {
    var q = what === 'kick'
      ? ['Remove ' + name + ' from ' + room + '?', [u(name), ' goes back to ', u(L.GENERAL), ' and can join ', u(room), ' again.'], 'Remove']
      : what === 'ban'
        ? ['Ban ' + name + ' from ' + room + '?', [u(name), ' goes back to ', u(L.GENERAL), ', stops being a member and cannot join ', u(room), ' again (not even with the password) until the ban is lifted.'], 'Ban']
        : ['Report ' + name + '?', ['Reports from several people mute an account for a few hours. Report ', u(name), ' only for spam or abuse.'], 'Report'];
    if (!(await askConfirm(q[0], q[1], q[2]))) return;
    clearError('people');
    try {
      if (what === 'report') {
        expect(await request('report', { user: name }), [200]);
        systemLine(['You reported ', u(name), '.']);
        return;
      }
      var r = expect(await request(what, { room: room.replace(/^#/, ''), user: name }), [200]);
      var where = r.room || room;
      var who = r.user || name;
      var undo = null;
      if (what === 'ban') {
        noteBanned(where, who, true);
        undo = smallButton(['Unban ', u(who)], function () {
          unbanUser(who, where).then(function () { undo.disabled = true; })
            .catch(function (e) { showError('composer', e); });
        }, 'Unban ' + L.isolate(who) + ' from ' + L.isolate(where));
      }
      systemLine([u(who), what === 'kick' ? ' was removed from ' : ' is banned from ', u(where), '.'],
        null, undo, roomViewOf(where));
      refreshUsers();
      refreshRooms();
    } catch (e) {
      showError('people', e);
    }
  }

  // ---------------------------------------------------------------- scheduled messages

  async function scheduleMessage(text, to, at) {
    var r = expect(await request('msg', { message: text, to: to, at: at }), [202]);
    var when = typeof r.at === 'number' ? r.at : at;
    systemLine(['Scheduled for ', L.formatTime(when), ' (', new Date(when * 1000).toLocaleDateString(), ') to ',
      u(r.to || to), ': “', u(text), '”. Type /scheduled to see or cancel it.'], 'sched-note');
    if (!$('scheduled').hidden) await showScheduled();
  }

  /** The pending scheduled messages of this account, each with Cancel. */
  async function showScheduled() {
    var r = expect(await request('scheduled'), [200]);
    var list = Array.isArray(r.scheduled) ? r.scheduled : [];
    var ul = $('scheduled-list');
    ul.textContent = '';
    list.forEach(function (s) {
      if (typeof s.scheduled !== 'number') return;
      var li = document.createElement('li');
      li.dataset.scheduled = String(s.scheduled);
      li.appendChild(timeEl(s.at));
      var what = span('scheduled-what', '');
      what.appendChild(parts([u(String(s.to)), ': ', u(String(s.message))]));
      li.appendChild(what);
      var id = s.scheduled;
      li.appendChild(smallButton('Cancel', function () { cancelScheduled(id, li); },
        'Cancel the message scheduled for ' + L.formatTime(s.at) + ' to ' + L.isolate(String(s.to))));
      ul.appendChild(li);
    });
    $('scheduled-empty').hidden = list.length > 0;
    $('scheduled').hidden = false;
  }

  async function cancelScheduled(id, li) {
    clearError('scheduled');
    try {
      expect(await request('cancel', { scheduled: id }), [200]);
    } catch (e) {
      var gone = e.reply && e.reply.response === 404;
      if (!gone) { showError('scheduled', e); return; }
    }
    var next = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    $('scheduled-empty').hidden = $('scheduled-list').children.length > 0;
    var f = next && next.querySelector('button');
    (f || $('scheduled-close')).focus();
  }

  // ---------------------------------------------------------------- history

  function updateOlderButton() {
    var v = currentView();
    var b = $('older');
    b.disabled = v.done;
    b.textContent = v.done ? 'No older messages' : 'Load older messages';
  }

  function historyFields(v) {
    return v.dm ? { with: v.name } : { room: v.name };
  }

  async function loadOlder() {
    var v = currentView();
    if (v.done) return;
    var b = $('older');
    b.disabled = true;
    b.textContent = 'Loading…';
    var fields = historyFields(v);
    fields.limit = HISTORY_PAGE;
    if (v.oldest !== null) fields.before = v.oldest;
    var w = $('log-wrap');
    try {
      var r = expect(await request('history', fields), [200]);
      var msgs = Array.isArray(r.messages) ? r.messages : [];
      var fromBottom = w.scrollHeight - w.scrollTop;
      $('log').setAttribute('aria-busy', 'true');
      for (var i = msgs.length - 1; i >= 0; i--) addMessage(msgs[i], { history: true });
      $('log').removeAttribute('aria-busy');
      w.scrollTop = w.scrollHeight - fromBottom;  // keep what was on screen in place
      if (msgs.length < HISTORY_PAGE) v.done = true;
      if (!msgs.length) systemLine(['No older messages in ', v.dm ? 'this conversation' : u(v.name), '.']);
    } catch (e) {
      showError('composer', e);
    } finally {
      updateOlderButton();
    }
  }

  /**
   * Fills a view with its latest messages (a conversation opened for the first time, a room
   * after exit, which pushes no history): at least all its unread ones, up to 500.
   */
  async function loadRecent(v) {
    if (v.loading) return;
    v.loading = true;
    var e = state.unread.get(v.key);
    var limit = Math.min(500, Math.max(HISTORY_PAGE, (e ? e.unread : 0) + 10));
    var fields = historyFields(v);
    fields.limit = limit;
    try {
      var r = expect(await request('history', fields), [200]);
      var msgs = Array.isArray(r.messages) ? r.messages : [];
      var follow = v.key !== state.viewKey || atBottom();
      msgs.forEach(function (m) { addMessage(m, { history: true }); });
      if (msgs.length < limit) v.done = true;   // the latest page holds everything there is
      v.loaded = true;
      placeDivider(v);
      if (v.key === state.viewKey) {
        updateOlderButton();
        if (follow) scrollToBottom(true);
        maybeRead();
      }
    } catch (err) {
      if (v.key === state.viewKey) showError('composer', err);
    } finally {
      v.loading = false;
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
    roomViewOf(r.room).loaded = true;   // the join reply is followed by the room's recent history
    enterRoom(r.room);
    if (!quiet) systemLine(['You are now in ', u(r.room), '.']);
    var e2 = state.unread.get(L.roomView(r.room));
    if (e2 && e2.unread > 20) loadRecent(roomViewOf(r.room));   // more unread than the join pushes
    refreshUsers();
    refreshRooms();
    return r;
  }

  async function createRoom(room) {
    var r = expect(await request('create', { room: L.roomName(room).slice(1) }), [201]);
    var v = roomViewOf(r.room);
    v.done = true;   // a new room has no history
    v.loaded = true;
    enterRoom(r.room);
    updateOlderButton();
    systemLine(['You created ', u(r.room), ' and are now in it.']);
    showSecret(r.room, r.password);
    refreshUsers();
    refreshRooms();
    return r;
  }

  async function exitRoom() {
    var r = expect(await request('exit'), [200]);
    hideSecret();
    var v = roomViewOf(r.room);
    enterRoom(r.room);
    systemLine(['You are back in ', u(r.room), '.']);
    refreshUsers();
    refreshRooms();
    await loadRecent(v);   // exit pushes no history
  }

  async function inviteUser(user) {
    var r = expect(await request('invite', { room: state.room.replace(/^#/, ''), user: user }), [200]);
    var who = r.user || user;
    var where = r.room || state.room;
    systemLine([u(who), ' is invited to ', u(where), r.online === false
      ? ' (a member now; they will see the invitation when they next sign in).'
      : ' (a member now: no password needed).'], null, null, roomViewOf(where));
    return r;
  }

  /** Keeps the names this page banned from `room` (suggestions in the Unban dialog). */
  function noteBanned(room, name, banned) {
    var key = L.roomKey(room);
    var set = state.banned.get(key) || new Set();
    if (banned) set.add(name); else set.forEach(function (n) { if (L.sameName(n, name)) set.delete(n); });
    state.banned.set(key, set);
  }

  /** `unban` of `user` from `room` (default: the current room; owner only, PROTOCOL.md §19.4). */
  async function unbanUser(user, room) {
    var where = room || state.room;
    var r = expect(await request('unban', { room: where.replace(/^#/, ''), user: user }), [200]);
    var who = r.user || user;
    where = r.room || where;
    noteBanned(where, who, false);
    systemLine([u(who), ' is no longer banned from ', u(where), ' (they join with the password or an invitation).'],
      null, null, roomViewOf(where));
    return r;
  }

  /** Fills the Unban dialog's suggestions with the names this page banned from the current room. */
  function fillUnbanSuggestions() {
    var list = $('unban-people');
    list.textContent = '';
    (state.banned.get(L.roomKey(state.room)) || new Set()).forEach(function (n) {
      var o = document.createElement('option');
      o.value = n;
      list.appendChild(o);
    });
  }

  async function refreshRooms() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('rooms'), [200]);
      state.rooms = Array.isArray(r.rooms) ? r.rooms : [];
      state.roomInfo.clear();
      state.rooms.forEach(function (info) {
        if (typeof info.room !== 'string') return;
        state.roomInfo.set(L.roomKey(info.room), info);
        if (!info.member) return;
        var key = L.roomView(info.room);
        roomViewOf(info.room);
        if (typeof info.unread === 'number') {
          var old = state.unread.get(key);
          var e = L.unreadEntry(info.unread, info.last_read);
          if (old) e.newest = Math.max(old.newest, e.newest);
          state.unread.set(key, e);
          // The view shown since sign-in learns only now that it had unread messages.
          var v = state.views.get(key);
          if (key === state.viewKey && e.unread > 0 && v.dividerAfter === null && !v.readOnce) {
            v.dividerAfter = e.lastRead;
            placeDivider(v);
            // More unread than the sign-in pushed: fetch them all, so the divider has its place.
            if (e.unread >= v.ids.length) loadRecent(v);
          }
          if (v) v.readOnce = true;
        }
      });
      state.countsKnown = true;
      renderNav();
      renderDirectory();
      renderHeaderCount();
      showOwnerButtons();
      maybeRead();
    } catch (e) { /* shown on the next user action */ }
  }

  async function refreshConversations() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('conversations'), [200]);
      (Array.isArray(r.conversations) ? r.conversations : []).forEach(function (c) {
        if (typeof c.with !== 'string') return;
        var key = L.dmView(c.with);
        dmViewOf(c.with);
        var conv = state.convs.get(key) || { with: c.with, lastId: 0 };
        conv.with = c.with;
        if (c.last && typeof c.last.id === 'number') conv.lastId = Math.max(conv.lastId, c.last.id);
        state.convs.set(key, conv);
        if (typeof c.unread === 'number') {
          var old = state.unread.get(key);
          var e = L.unreadEntry(c.unread, old ? old.lastRead : 0);
          e.newest = Math.max(old ? old.newest : 0, conv.lastId);
          if (c.unread === 0) e.lastRead = Math.max(e.lastRead, conv.lastId);
          state.unread.set(key, e);
        }
      });
      renderNav();
      maybeRead();
    } catch (e) { /* an older server without conversations: the list fills as messages come */ }
  }

  /** Everyone signed in on the server with their status (`users` with room "*"). */
  async function refreshPresence() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('users', { room: '*' }), [200]);
      state.presence.clear();
      (Array.isArray(r.users) ? r.users : []).forEach(function (p) {
        if (typeof p.account_name === 'string') state.presence.set(p.account_name.toLowerCase(), { name: p.account_name, status: p.status });
      });
      renderNav();
      if (currentView().dm) renderPeople();
      renderDatalist();
    } catch (e) { /* an older server: no presence dots */ }
  }

  /**
   * Runs `fn`, which rebuilds the content of `container`: a button in it that had the focus
   * (found again by its `attr` data attribute) has it again afterwards, so that a message
   * arriving while somebody moves through a list with the keyboard does not throw them out.
   */
  function keepFocus(container, attr, fn) {
    var a = document.activeElement;
    var key = a && container.contains(a) && a.dataset ? a.dataset[attr] : null;
    fn();
    if (key) {
      var again = container.querySelector('button[data-' + attr + '="' + CSS.escape(key) + '"]');
      if (again) again.focus();
    }
  }

  var navQueued = false;
  /** renderNav() once, after the current task's messages (a history page is one re-render). */
  function renderNavSoon() {
    if (navQueued) return;
    navQueued = true;
    queueMicrotask(function () { navQueued = false; renderNav(); });
  }

  /** Rooms (members only) and conversations in the sidebar, with unread badges. */
  function renderNav() {
    keepFocus($('side'), 'view', renderNavNow);
  }

  function renderNavNow() {
    var roomsUl = $('rooms');
    var dmsUl = $('dms');
    if (!roomsUl) return;
    roomsUl.textContent = '';
    dmsUl.textContent = '';
    var rooms = state.rooms.filter(function (i) { return typeof i.room === 'string' && i.member; })
      .map(function (i) { return i.room; });
    if (state.signedIn && !rooms.some(function (r) { return L.roomKey(r) === L.roomKey(state.room); })) rooms.push(state.room);
    if (!rooms.some(isGeneral)) rooms.unshift(L.GENERAL);
    rooms.sort(function (a, b) {
      if (isGeneral(a) !== isGeneral(b)) return isGeneral(a) ? -1 : 1;
      return a.toLowerCase() < b.toLowerCase() ? -1 : 1;
    });
    rooms.forEach(function (room) { roomsUl.appendChild(navItem(L.roomView(room), room, false)); });
    var convs = Array.from(state.convs.values());
    state.views.forEach(function (v) {
      if (v.dm && !state.convs.has(v.key)) convs.push({ with: v.name, lastId: 0 });
    });
    convs.sort(function (a, b) { return b.lastId - a.lastId; });
    convs.forEach(function (c) { dmsUl.appendChild(navItem(L.dmView(c.with), c.with, true)); });
    $('dms-empty').hidden = convs.length > 0;
    var total = L.totalUnread(state.unread.values());
    document.title = L.pageTitle(total, state.signedIn ? L.isolate(currentView().dm ? '@' + currentView().name : currentView().name) : '');
    var tb = $('side-toggle-badge');
    tb.hidden = total === 0;
    tb.textContent = total ? L.badgeText(total) : '';
  }

  function navItem(key, name, dm) {
    var e = state.unread.get(key);
    var n = e ? e.unread : 0;
    var li = document.createElement('li');
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'nav-item' + (n ? ' unread' : '');
    b.dataset.view = key;
    if (!dm) b.dataset.room = name;
    if (key === state.viewKey) b.setAttribute('aria-current', 'page');
    if (dm) {
      var p = state.presence.get(name.toLowerCase());
      var st = p ? (L.isAway(p.status) ? 'away' : 'online') : 'offline';
      var dot = span('dot ' + st, '');
      dot.setAttribute('aria-hidden', 'true');
      b.appendChild(dot);
      b.appendChild(bdi(name, 'nav-name'));
      b.appendChild(span('visually-hidden', ', ' + (p ? L.statusWords(p.status) : 'offline')));
    } else {
      b.appendChild(bdi(name, 'nav-name room-name'));
    }
    if (n) {
      var badge = span('badge', L.badgeText(n));
      badge.setAttribute('aria-hidden', 'true');
      b.appendChild(badge);
      b.appendChild(span('visually-hidden', ', ' + n + ' unread'));
    }
    b.addEventListener('click', function () {
      clearError('composer');
      selectView(key).then(function () { closePanelsOnPhone(); $('text').focus(); })
        .catch(function (err) { showError('composer', err); });
    });
    li.appendChild(b);
    return li;
  }

  /** Every room with its counts, in the Rooms dialog: a member room opens, others ask for the password. */
  function renderDirectory() {
    keepFocus($('directory'), 'room', renderDirectoryNow);
  }

  function renderDirectoryNow() {
    var ul = $('directory');
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
      meta.push(info.member ? ' · member' : ' · password');
      var m = span('room-meta', '');
      m.appendChild(parts(meta));
      b.appendChild(m);
      if (L.roomKey(info.room) === L.roomKey(state.room)) b.setAttribute('aria-current', 'true');
      b.addEventListener('click', function () { onRoomClick(info); });
      li.appendChild(b);
      ul.appendChild(li);
    });
  }

  function renderHeaderCount() {
    var v = currentView();
    var el = $('room-online');
    if (v.dm) {
      var p = state.presence.get(v.name.toLowerCase());
      el.textContent = p ? L.statusWords(p.status) : 'offline';
      return;
    }
    var info = state.roomInfo.get(L.roomKey(v.name));
    el.textContent = info ? (info.online || 0) + ' online' : '';
  }

  function onRoomClick(info) {
    clearError('join');
    clearError('composer');
    if (L.roomKey(info.room) === L.roomKey(state.room)) {
      closeDialog('join-dialog', $('text'));
      showView(L.roomView(info.room));
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
    go.then(function () { closeDialog('join-dialog', $('text')); closePanelsOnPhone(); $('text').focus(); })
      .catch(function (e) { showError('join', e); });
  }

  async function refreshUsers() {
    if (!state.signedIn) return;
    try {
      var r = expect(await request('users'), [200]);
      state.roomUsers = Array.isArray(r.users) ? r.users : [];
      state.users.clear();
      state.roomUsers.forEach(function (w) { if (typeof w.account_name === 'string') state.users.add(w.account_name.toLowerCase()); });
      renderPeople();
    } catch (e) { /* e.g. we left the room meanwhile */ }
  }

  /** The people of the current view: the room's (live), or the two sides of a conversation. */
  function renderPeople() {
    keepFocus($('users'), 'user', renderPeopleNow);
  }

  function renderPeopleNow() {
    var v = currentView();
    var list;
    if (v.dm) {
      setParts($('users-label'), ['Conversation with']);
      setParts($('users-room'), [u(v.name)]);
      list = [v.name].concat(L.sameName(v.name, state.me) ? [] : [state.me]).map(function (name) {
        var p = state.presence.get(String(name).toLowerCase());
        return { account_name: p ? p.name : name, status: p ? p.status : null };
      });
    } else {
      setParts($('users-label'), ['In']);
      setParts($('users-room'), [u(v.name)]);
      list = state.roomUsers || [];
    }
    var ul = $('users');
    ul.textContent = '';
    list.forEach(function (who) {
      if (typeof who.account_name !== 'string') return;
      var li = document.createElement('li');
      li.dataset.user = who.account_name.toLowerCase();
      var st = who.status === null ? 'offline' : L.isAway(who.status) ? 'away' : 'online';
      var dot = span('dot ' + st, '');
      dot.setAttribute('aria-hidden', 'true');
      li.appendChild(dot);
      var mine = L.sameName(who.account_name, state.me);
      var nameEl = span('user-name', '');
      nameEl.appendChild(parts(mine ? [u(who.account_name), ' (you)'] : [u(who.account_name)]));
      li.appendChild(nameEl);
      li.appendChild(bdi(who.status === null ? 'offline' : L.statusWords(who.status), 'user-status'));
      if (!mine && !v.dm) {
        var name = who.account_name;
        var mb = smallButton('Message', function () {
          openConversation(name);
          closePanelsOnPhone();
          $('text').focus();
        }, 'Send a private message to ' + name);
        mb.dataset.user = li.dataset.user;
        li.appendChild(mb);
        var more = document.createElement('button');
        more.type = 'button';
        more.className = 'small member-menu';
        more.textContent = '⋯';
        more.dataset.user = li.dataset.user + ':menu';
        more.setAttribute('aria-haspopup', 'menu');
        more.setAttribute('aria-expanded', 'false');
        more.setAttribute('aria-label', 'More actions for ' + L.isolate(name));
        more.addEventListener('click', function () {
          if (menuState && menuState.button === more) { closeMenu(true); return; }
          openMemberMenu(name, more);
        });
        li.appendChild(more);
      }
      ul.appendChild(li);
    });
  }

  /** A `status` event: the new status of `user`, at once, in every list that shows it. */
  function setStatus(user, status) {
    var k = user.toLowerCase();
    var p = state.presence.get(k);
    state.presence.set(k, { name: p ? p.name : user, status: status });
    (state.roomUsers || []).forEach(function (w) { if (L.sameName(w.account_name, user)) w.status = status; });
    if (L.sameName(user, state.me)) showMyStatus(status);
    renderPeople();
    renderNav();
    renderHeaderCount();
  }

  function showMyStatus(status) {
    state.myStatus = status || 'online';
    $('my-status').textContent = L.statusWords(state.myStatus);
    var away = L.isAway(state.myStatus);
    $('away-toggle').setAttribute('aria-pressed', away ? 'true' : 'false');
    $('away-toggle').textContent = away ? 'Set yourself back' : 'Set yourself away';
  }

  async function setMyStatus(status) {
    expect(await request('presence', { user: { status: status } }), [200]);
    showMyStatus(status);
    var p = state.presence.get(String(state.me).toLowerCase());
    state.presence.set(String(state.me).toLowerCase(), { name: p ? p.name : state.me, status: status });
    (state.roomUsers || []).forEach(function (w) { if (L.sameName(w.account_name, state.me)) w.status = status; });
    renderPeople();
  }

  function renderDatalist() {
    var dl = $('dm-people');
    dl.textContent = '';
    state.presence.forEach(function (p) {
      if (L.sameName(p.name, state.me)) return;
      var o = document.createElement('option');
      o.value = p.name;
      dl.appendChild(o);
    });
  }

  /** Whether the lists can be seen now. */
  function listsVisible() {
    return document.visibilityState !== 'hidden' &&
      (!isPhone() || document.body.classList.contains('side-open') || document.body.classList.contains('people-open'));
  }

  function refreshNow() {
    if (!state.signedIn) return;
    refreshRooms();
    refreshUsers();
    refreshPresence();
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

  function updateTarget() {
    var v = currentView();
    setParts($('target-label'), v.dm ? ['Private conversation with ', u(v.name)] : ['To ', u(v.name)]);
    $('composer').classList.toggle('private', v.dm);
    $('text').placeholder = v.dm ? 'Message ' + L.isolate(v.name) + ' privately' : 'Message ' + L.isolate(v.name);
  }

  async function sendMessage(text, to) {
    var r = expect(await request('msg', { message: text, to: to }), [200, 202]);
    var note = '';
    if (r.response === 202) note = ['(', u(to), ' is offline: delivered when they sign in)'];
    addMessage({ id: r.id, time: r.time, from: state.me, to: to, message: text }, { note: note });
  }

  function updateCount() {
    var c = L.parseCommand($('text').value);
    var text = c.kind === 'say' || c.kind === 'msg' || c.kind === 'at' ? c.text : '';
    var s = L.lengthState(text);
    var el = $('composer-count');
    if (el.textContent !== s.words) el.textContent = s.words;
    el.dataset.level = s.level;
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
    if (c.kind === 'say' || c.kind === 'msg' || c.kind === 'at') {
      var s = L.lengthState(c.text);
      if (s.level === 'over') { showError('composer', s.words, 'action'); return; }
    }
    box.value = '';
    autosize();
    updateCount();
    try {
      var v = currentView();
      switch (c.kind) {
        case 'say': await sendMessage(c.text, v.dm ? v.name : state.room); break;
        case 'msg': openConversation(c.to); await sendMessage(c.text, c.to); break;
        case 'at': await scheduleMessage(c.text, v.dm ? v.name : state.room, c.at); break;
        case 'scheduled': await showScheduled(); break;
        case 'query': openConversation(c.user); break;
        case 'status': await setMyStatus(c.status); break;
        case 'join': await joinRoom(c.room, c.password); break;
        case 'create': await createRoom(c.room); break;
        case 'exit': await exitRoom(); break;
        case 'invite': await inviteUser(c.user); break;
        case 'unban': await unbanUser(c.user); break;
        case 'rooms': await refreshRooms(); openDialog('join-dialog'); break;
        case 'users': await refreshUsers(); openPeople(); break;
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
  var ERROR_SLOTS = ['signin', 'composer', 'join', 'create', 'invite', 'unban', 'dm', 'people', 'scheduled'];
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

  // ---------------------------------------------------------------- panels on phones, dialogs

  function isPhone() { return window.matchMedia('(max-width: 760px)').matches; }

  function openPanel(which) {
    if (!isPhone()) return;
    var cls = which + '-open';
    var was = document.body.classList.contains(cls);
    closePanelsOnPhone();
    document.body.classList.add(cls);
    $(which + '-toggle').setAttribute('aria-expanded', 'true');
    if (!was) refreshNow();   // not polled while folded away
  }
  function openSide() { openPanel('side'); }
  function openPeople() { openPanel('people'); }

  function closePanelsOnPhone() {
    document.body.classList.remove('side-open', 'people-open');
    $('side-toggle').setAttribute('aria-expanded', 'false');
    $('people-toggle').setAttribute('aria-expanded', 'false');
  }

  function togglePanel(which) {
    if (document.body.classList.contains(which + '-open')) {
      closePanelsOnPhone();
      $(which + '-toggle').focus();
    } else {
      openPanel(which);
      var first = $(which).querySelector('.nav-item, li button, button:not(.side-close)');
      if (first) first.focus();
    }
  }

  var dialogOpener = {};

  /** An element `tag` with attributes `attrs` and children `kids` (strings: our own words; falsy: none). */
  function element(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (kids || []).forEach(function (k) { if (k) e.append(k); });
    return e;
  }

  /**
   * Fills in the dialogs that ask for one account name (Invite, Unban, Private conversation:
   * `<dialog class="person-dialog">` in index.html, whose data-* give the words) in one shape. For
   * `<slot>-dialog`: `<slot>-form` with `<slot>-heading` (ending in `<slot>-room` with data-room),
   * the field `<slot>-user` (suggestions from the datalist `<slot>-people` with data-suggest),
   * `<slot>-info` (data-info) and `<slot>-error`. Called once, before the wiring.
   */
  function buildPersonDialogs() {
    Array.prototype.forEach.call(document.querySelectorAll('dialog.person-dialog'), function (d) {
      var slot = d.id.replace(/-dialog$/, ''), o = d.dataset;
      var heading = element('h2', { id: slot + '-heading' },
        'room' in o ? [o.heading + ' ', element('span', { id: slot + '-room' }, ['this room'])] : [o.heading]);
      var field = element('input', { id: slot + '-user', autocapitalize: 'none', spellcheck: 'false', maxlength: '25' });
      if ('suggest' in o) field.setAttribute('list', slot + '-people');
      d.setAttribute('aria-labelledby', heading.id);
      d.append(element('form', { id: slot + '-form', novalidate: '' }, [
        element('div', { class: 'dialog-head' }, [
          heading, element('button', { class: 'small dialog-close', type: 'button', 'data-close': '' }, ['Close'])]),
        o.hint && element('p', { class: 'hint' }, [o.hint]),
        element('label', { for: field.id }, [o.label]),
        field,
        'suggest' in o && element('datalist', { id: slot + '-people' }),
        element('button', { type: 'submit', class: 'primary' }, [o.submit]),
        'info' in o && element('p', { id: slot + '-info', class: 'info', 'aria-live': 'polite' }),
        element('p', { id: slot + '-error', class: 'error', role: 'alert' })
      ]));
    });
  }

  /** Opens a modal dialog (Escape closes it; the focus goes back to where it was). */
  function openDialog(id) {
    var d = $(id);
    if (d.open) return;
    dialogOpener[id] = document.activeElement;
    if (/(side|people)-open/.test(document.body.className)) {
      // On a phone the panel the dialog was opened from folds away: the focus comes back to its button.
      dialogOpener[id] = $(document.body.classList.contains('side-open') ? 'side-toggle' : 'people-toggle');
      closePanelsOnPhone();
    }
    if (id === 'join-dialog') refreshRooms();
    if (id === 'dm-dialog') refreshPresence();
    d.showModal();
    var first = d.querySelector('input');
    if (first) first.focus();
  }

  /** Closes a dialog; the focus then goes to `focusTo` (default: where it was before). */
  function closeDialog(id, focusTo) {
    var d = $(id);
    if (focusTo) dialogOpener[id] = focusTo;
    if (d.open) d.close();
  }

  function onDialogClosed(id) {
    var back = dialogOpener[id];
    dialogOpener[id] = null;
    if (back && document.contains(back) && back.offsetParent !== null) {
      back.focus();
      if (back === $('secret-value')) back.select();
    }
    else if (!$('chat-view').hidden) $('text').focus();
  }

  /** Alt+↑/↓: the previous/next room or conversation of the sidebar; with Shift, the next unread one. */
  function moveView(step, unreadOnly) {
    var items = Array.prototype.slice.call(document.querySelectorAll('#side .nav-item'));
    if (!items.length) return;
    var at = items.findIndex(function (b) { return b.dataset.view === state.viewKey; });
    for (var i = 1; i <= items.length; i++) {
      var b = items[(at + step * i + items.length * i) % items.length];
      if (!unreadOnly || b.classList.contains('unread')) {
        var key = b.dataset.view;
        selectView(key).then(function () { $('text').focus(); })
          .catch(function (e) { showError('composer', e); });
        return;
      }
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

  /** The trimmed text of field `id`; when `problem` (a logic.js check) finds fault with it, a
   *  failure with its words (the focus on the field). */
  function checkedValue(id, problem) {
    var text = $(id).value.trim();
    var fault = problem(text);
    if (fault) { $(id).focus(); throw failure(fault); }
    return text;
  }

  /**
   * Wires the form of a dialog that asks for one account name (buildPersonDialogs): the name is
   * checked, then `act(name)` runs; the parts it returns, if any, are shown in `<slot>-info`
   * (emptied before); then the field is emptied. Errors show in `<slot>-error`.
   */
  function onPersonSubmit(slot, act) {
    $(slot + '-form').addEventListener('submit', formHandler(slot, async function () {
      var user = checkedValue(slot + '-user', L.accountNameProblem);
      var info = $(slot + '-info');
      if (info) info.textContent = '';
      var said = await act(user);
      if (info && said) setParts(info, said);
      $(slot + '-user').value = '';
    }));
  }

  function init() {
    buildPersonDialogs();
    $('signin').addEventListener('submit', onSignInSubmit);
    $('name').addEventListener('input', function () { if (!$('confirm-row').hidden) hideConfirm(); });
    $('composer').addEventListener('submit', onComposerSubmit);
    $('text').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $('composer').requestSubmit();
      } else if (ev.key === 'Escape' && currentView().dm) {
        // Escape leaves a private conversation for the room the connection is in.
        showView(roomKeyView());
      }
    });
    $('text').addEventListener('input', function () { autosize(); updateCount(); });
    $('older').addEventListener('click', loadOlder);
    $('log-wrap').addEventListener('scroll', function () { if (atBottom()) maybeRead(); }, { passive: true });
    $('exit').addEventListener('click', function () {
      clearError('composer');
      exitRoom().then(function () { $('text').focus(); })
        .catch(function (e) { showError('composer', e); });
    });
    $('open-join').addEventListener('click', function () { openDialog('join-dialog'); });
    $('open-dm').addEventListener('click', function () { openDialog('dm-dialog'); });
    $('invite-open').addEventListener('click', function () { openDialog('invite-dialog'); });
    $('unban-open').addEventListener('click', function () { fillUnbanSuggestions(); openDialog('unban-dialog'); });
    Array.prototype.forEach.call(document.querySelectorAll('dialog'), function (d) {
      d.addEventListener('close', function () { onDialogClosed(d.id); });
      Array.prototype.forEach.call(d.querySelectorAll('[data-close]'), function (b) {
        b.addEventListener('click', function () { closeDialog(d.id); });
      });
    });
    $('join-form').addEventListener('submit', formHandler('join', async function () {
      var room = checkedValue('join-room', L.roomNameProblem);
      var pw = $('join-password').value;
      await joinRoom(room, pw || undefined);
      $('join-room').value = '';
      $('join-password').value = '';
      closeDialog('join-dialog', $('text'));
      closePanelsOnPhone();
      $('text').focus();
    }));
    $('create-form').addEventListener('submit', formHandler('create', async function () {
      var room = checkedValue('create-room', L.roomNameProblem);
      await createRoom(room);
      $('create-room').value = '';
      closeDialog('join-dialog', $('secret-value'));   // the focus on the password to copy
      closePanelsOnPhone();
    }));
    onPersonSubmit('invite', async function (user) {
      var r = await inviteUser(user);
      return [u(r.user || user), ' is invited.'];
    });
    onPersonSubmit('unban', async function (user) {
      var r = await unbanUser(user);
      fillUnbanSuggestions();
      return [u(r.user || user), ' may join again.'];
    });
    onPersonSubmit('dm', function (user) {
      var p = state.presence.get(user.toLowerCase());
      openConversation(p ? p.name : user);
      closeDialog('dm-dialog', $('text'));
      closePanelsOnPhone();
      $('text').focus();
    });
    $('users-refresh').addEventListener('click', refreshUsers);
    $('confirm-ok').addEventListener('click', function () { $('confirm-dialog').close('ok'); });
    $('confirm-cancel').addEventListener('click', function () { $('confirm-dialog').close('cancel'); });
    $('confirm-dialog').addEventListener('close', function () {
      var r = confirmResolve;
      confirmResolve = null;
      if (r) r($('confirm-dialog').returnValue === 'ok');
    });
    $('menu').addEventListener('keydown', onMenuKey);
    document.addEventListener('pointerdown', function (ev) {
      if (menuState && !$('menu').contains(ev.target) && ev.target !== menuState.button) closeMenu(false);
    });
    $('banner-close').addEventListener('click', function () { hideBanner(); $('text').focus(); });
    $('open-scheduled').addEventListener('click', function () {
      clearError('scheduled');
      showScheduled().then(function () { closePanelsOnPhone(); $('scheduled-close').focus(); })
        .catch(function (e) { showError('composer', e); });
    });
    $('scheduled-close').addEventListener('click', function () { $('scheduled').hidden = true; $('text').focus(); });
    [['signin', ['name', 'password', 'password2']], ['composer', ['text']],
      ['join', ['join-room', 'join-password']], ['create', ['create-room']], ['invite', ['invite-user']],
      ['unban', ['unban-user']], ['dm', ['dm-user']]]
      .forEach(function (slot) {
        slot[1].forEach(function (id) {
          $(id).addEventListener('input', function () { clearOnEdit(slot[0]); });
        });
      });
    document.addEventListener('visibilitychange', function () {
      if (listsVisible()) refreshNow();
      maybeRead();
    });
    window.addEventListener('focus', maybeRead);
    $('secret-copy').addEventListener('click', copySecret);
    $('secret-close').addEventListener('click', function () { hideSecret(); $('text').focus(); });
    $('signout').addEventListener('click', signOut);
    $('reconnect-now').addEventListener('click', reconnectNow);
    $('away-toggle').addEventListener('click', function () {
      clearError('composer');
      setMyStatus(L.isAway(state.myStatus) ? 'online' : 'away')
        .catch(function (e) { showError('composer', e); });
    });
    $('notify-yes').addEventListener('click', function () { answerNotifications(true); });
    $('notify-no').addEventListener('click', function () { answerNotifications(false); });
    $('side-toggle').addEventListener('click', function () { togglePanel('side'); });
    $('people-toggle').addEventListener('click', function () { togglePanel('people'); });
    $('side-close').addEventListener('click', function () { closePanelsOnPhone(); $('side-toggle').focus(); });
    $('people-close').addEventListener('click', function () { closePanelsOnPhone(); $('people-toggle').focus(); });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && /(side|people)-open/.test(document.body.className) && !document.querySelector('dialog[open]')) {
        var which = document.body.classList.contains('side-open') ? 'side' : 'people';
        closePanelsOnPhone();
        $(which + '-toggle').focus();
      } else if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') && state.signedIn &&
                 !document.querySelector('dialog[open]')) {
        ev.preventDefault();
        moveView(ev.key === 'ArrowUp' ? -1 : 1, ev.shiftKey);
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
    get view() { return state.viewKey; },
    get unread() { return L.totalUnread(state.unread.values()); },
    get me() { return state.me; },
    get admin() { return state.admin; },
    get attempt() { return state.attempt; }
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
