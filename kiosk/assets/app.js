// Placeholder (work package A): renders the view's screen id and sends touches.
"use strict";
(function () {
  const main = document.querySelector("main");
  let ws = null;
  let last = 0;
  function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }
  function render(v) {
    main.dataset.screen = v.screen;
    document.documentElement.lang = v.lang;
    document.getElementById("title").textContent = v.screen;
    document.querySelector("[data-entered]").textContent = "\u2022".repeat(v.entered);
    document.getElementById("live").textContent = v.until || (v.remaining_ms == null ? "" : String(Math.ceil(v.remaining_ms / 1000)));
  }
  function connect() {
    ws = new WebSocket("ws://" + location.host + "/ws");
    ws.onmessage = (e) => { last = Date.now(); const m = JSON.parse(e.data); if (m.view) render(m.view); };
    ws.onclose = () => { main.dataset.screen = "offline"; setTimeout(connect, 2000); };
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.key) send({ touch: "digit", digit: b.dataset.key });
    else if (b.dataset.action) send({ touch: b.dataset.action });
    else if (b.dataset.lang) send({ touch: "lang", lang: b.dataset.lang });
  });
  setInterval(() => { if (Date.now() - last > 12000) main.dataset.screen = "offline"; }, 1000);
  connect();
})();
