// The kiosk page: renders the view that porter-kiosk sends on /ws and sends
// touches back. It keeps no digits (a digit button's value goes straight into
// the frame it sends; the entry is shown only as a count of dots), stores
// nothing in the browser, and talks to nothing but the page's own host.
'use strict';

(function () {
  // Enough to say "out of service" when i18n.json could not be loaded.
  var FALLBACK = { en: { offline: 'This screen is out of service', offline_detail: '' } };
  var SCREENS_WITH_KEYPAD = { idle: 1, pin: 1, assign_pin: 1, pin_needed: 1 };
  var SCREENS_WITH_ENTRY = { pin: 1, assign_pin: 1, pin_needed: 1 };
  var SCREENS_WITH_CANCEL = { pin: 1, assign_pin: 1, pin_needed: 1 };
  var SCREENS_WITH_LANG = { idle: 1, pin: 1, assign_pin: 1, present_card: 1, pin_needed: 1 };
  var MARKS = {
    door_open: '\u2713', card_assigned: '\u2713', not_accepted: '\u2717', card_taken: '\u2717',
    lockout: '\u2717', timeout: '\u2717', offline: '!'
  };
  var SILENCE_MS = 12000; // no frame for this long: offline
  var RECONNECT_MS = 2000;

  var texts = FALLBACK;
  var view = null; // the last view the program sent
  var offline = false;
  var deadline = null; // performance.now() at which the view's countdown ends
  var ws = null;
  var lastFrame = 0;

  var main = document.querySelector('main');
  function $(id) { return document.getElementById(id); }

  function t(lang, id) {
    var l = texts[lang] || texts.en || FALLBACK.en;
    if (l[id] !== undefined) return l[id];
    return (texts.en && texts.en[id]) || FALLBACK.en[id] || '';
  }

  // Fills `el` with the template `text`, `{name}` replaced by a live span
  // holding `value` (textContent only: nothing is parsed as HTML).
  function fill(el, text, name, value) {
    el.textContent = '';
    var parts = text.split('{' + name + '}');
    for (var i = 0; i < parts.length; i++) {
      if (i > 0) {
        var s = document.createElement('span');
        s.setAttribute('data-live', '');
        s.className = 'num';
        s.textContent = value;
        el.appendChild(s);
      }
      el.appendChild(document.createTextNode(parts[i]));
    }
  }

  function show(el, on) { el.hidden = !on; }

  function render() {
    var v = offline || !view ? null : view;
    var screen = v ? v.screen : (offline ? 'offline' : '');
    var lang = v ? v.lang : (view ? view.lang : 'en');
    if (!texts[lang]) lang = 'en';
    document.documentElement.lang = lang;
    main.setAttribute('data-screen', screen);
    main.className = 'screen-' + (screen || 'none');

    $('room').textContent = view ? view.room || '' : '';
    $('door').textContent = view && view.door && view.door !== view.room ? view.door : '';
    $('mark').textContent = MARKS[screen] || '';

    var title = '', detail = '';
    switch (screen) {
      case 'idle': title = view.room || ''; detail = t(lang, 'idle_prompt'); break;
      case 'pin': title = t(lang, 'enter_pin'); break;
      case 'checking': title = t(lang, 'checking'); break;
      case 'door_open': title = t(lang, 'door_open'); detail = v.door || ''; break;
      case 'not_accepted':
        title = t(lang, 'not_accepted');
        if (v.reason) detail = t(lang, 'reason_' + v.reason);
        break;
      case 'lockout': title = t(lang, 'lockout'); break;
      case 'assign_pin': title = t(lang, 'assign'); detail = t(lang, 'enter_pin'); break;
      case 'present_card': title = t(lang, 'present_card'); break;
      case 'card_assigned': title = t(lang, 'card_assigned'); detail = t(lang, 'card_assigned_detail'); break;
      case 'card_taken': title = t(lang, 'card_taken'); detail = t(lang, 'card_taken_detail'); break;
      case 'timeout': title = t(lang, 'timeout'); break;
      case 'pin_needed': title = t(lang, 'pin_needed'); break;
      case 'offline': title = t(lang, 'offline'); detail = t(lang, 'offline_detail'); break;
    }
    $('title').textContent = title;
    var d = $('detail');
    if (screen === 'lockout') {
      if (v.until === 'tomorrow' || !v.until) d.textContent = t(lang, 'try_again_tomorrow');
      else fill(d, t(lang, 'try_again_at'), 'time', v.until);
    } else {
      d.textContent = detail;
    }
    show(d, d.textContent !== '');

    var entry = !!SCREENS_WITH_ENTRY[screen];
    var entered = v && entry ? Math.max(0, Math.min(12, v.entered | 0)) : 0;
    var dots = '';
    for (var i = 0; i < entered; i++) dots += '\u25CF';
    $('entered').textContent = dots;
    show($('entered'), entry);

    var keypad = !!SCREENS_WITH_KEYPAD[screen];
    show($('keypad'), keypad);
    var ok = document.querySelector('[data-action="ok"]');
    ok.textContent = t(lang, 'ok');
    ok.disabled = !(v && entered >= (v.pin_length | 0) && entered > 0);
    var back = document.querySelector('[data-action="back"]');
    back.textContent = t(lang, 'back');
    back.disabled = entered === 0;
    var assign = document.querySelector('[data-action="assign"]');
    assign.textContent = t(lang, 'assign');
    show(assign, screen === 'idle');
    var cancel = document.querySelector('[data-action="cancel"]');
    cancel.textContent = t(lang, 'cancel');
    show(cancel, !!SCREENS_WITH_CANCEL[screen]);

    var langs = document.querySelectorAll('[data-lang]');
    for (var j = 0; j < langs.length; j++) {
      var b = langs[j];
      b.textContent = t(b.getAttribute('data-lang'), 'lang_name') || b.textContent;
      b.setAttribute('aria-pressed', String(b.getAttribute('data-lang') === lang));
      show(b, !!SCREENS_WITH_LANG[screen]);
    }
    tick();
  }

  // The countdown line: door_open and present_card count down from the
  // view's remaining_ms.
  function tick() {
    var live = $('live');
    var v = offline ? null : view;
    var screen = v ? v.screen : '';
    if (v && deadline !== null && (screen === 'door_open' || screen === 'present_card')) {
      var s = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
      live.textContent = t(v.lang, screen === 'door_open' ? 'door_closes' : 'seconds_left').replace('{s}', String(s));
      show(live, true);
    } else {
      live.textContent = '';
      show(live, false);
    }
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN && !offline) ws.send(JSON.stringify(msg));
  }

  function goOffline() {
    if (!offline) {
      offline = true;
      render();
    }
  }

  function connect() {
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    var sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      goOffline();
      setTimeout(connect, RECONNECT_MS);
      return;
    }
    ws = sock;
    sock.onmessage = function (ev) {
      if (sock !== ws) return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      lastFrame = performance.now();
      if (msg && typeof msg.view === 'object' && msg.view) {
        view = msg.view;
        deadline = typeof view.remaining_ms === 'number' ? performance.now() + view.remaining_ms : null;
        offline = view.screen === 'offline';
        render();
      }
    };
    sock.onclose = function () {
      if (sock !== ws) return;
      ws = null;
      goOffline();
      setTimeout(connect, RECONNECT_MS);
    };
    sock.onerror = function () { /* onclose follows */ };
  }

  document.addEventListener('click', function (ev) {
    var b = ev.target.closest ? ev.target.closest('button') : null;
    if (!b || b.disabled) return;
    var key = b.getAttribute('data-key');
    if (key !== null) { send({ touch: 'digit', digit: key }); return; }
    var action = b.getAttribute('data-action');
    if (action) { send({ touch: action }); return; }
    var lang = b.getAttribute('data-lang');
    if (lang) send({ touch: 'lang', lang: lang });
  });

  setInterval(function () {
    if (ws && !offline && lastFrame && performance.now() - lastFrame > SILENCE_MS) {
      var old = ws;
      ws = null;
      old.close();
      goOffline();
      setTimeout(connect, RECONNECT_MS);
    }
    tick();
  }, 250);

  fetch('/i18n.json', { cache: 'no-store', credentials: 'omit' })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (j) { if (j && j.en) texts = j; })
    .catch(function () { /* keep the fallback */ })
    .then(function () { render(); connect(); });
})();
