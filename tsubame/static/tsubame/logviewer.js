// The live log of one execution: a terminal (xterm.js) fed by the execution's WebSocket.
//
// The page opens at the end of the output (the server picks `after` so that only the last
// few MB are replayed), follows new output, and reconnects after a network drop with the
// last sequence number it has, so nothing is missed or shown twice. When the server refuses
// the socket (signed out, not found), it stops and says why instead of retrying.
//
// Memory stays bounded whatever the log size: the terminal keeps as many lines as fit in
// SCROLLBACK_BYTES at its width, and no output is kept in JavaScript. Switching between hosts and the combined view re-reads the
// end of that view (about TAIL_CHARS) from the log API; older output is in the raw log.
//
// The combined view of several hosts reads like `docker compose logs`: each line carries its
// host's name in a colour of its own, stderr lines are marked with a red "!", and a line still
// being written (a prompt, a progress bar redrawn with \r) stays out of the scrollback, in a
// live row per host under the terminal (kept in the window while the terminal is scrolled
// past), until its newline arrives. A host that ended with an error before printing anything
// (it could not connect) gets that error as one marked line, which is not part of its log.
(function () {
  "use strict";

  // xterm.js holds 12 bytes per cell of scrollback, whatever the line's length.
  const SCROLLBACK_BYTES = 40 * 1024 * 1024;
  const CELL_BYTES = 12;
  const MAX_SCROLLBACK_LINES = 100000;
  const TAIL_CHARS = 2 * 1024 * 1024;
  // A line longer than this without a newline goes to the scrollback as it is.
  const MAX_PARTIAL_CHARS = 16 * 1024;
  const MAX_LABEL = 24;
  const FAILED = new Set(["failed", "timed_out", "lost"]);
  const ACTIVE = new Set(["waiting", "queued", "running"]);
  // Distinct on a dark background, none of them the red that marks stderr.
  const PALETTE = [
    "#58a6ff", "#7ee787", "#e3b341", "#d2a8ff", "#39c5cf", "#ffa657",
    "#ff9bce", "#c3e88d", "#a5a5ff", "#3fb950", "#d8b384",
  ];

  const config = JSON.parse(document.getElementById("viewer-config").textContent);
  const several = config.hosts.length > 1;
  const naturally = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  // Each name hashes to its own place in the palette, so a host keeps its colour on every
  // page; a place already taken by another host of this execution passes to the next free one.
  function coloursOf(names) {
    const colours = new Map();
    const used = new Set();
    for (const name of [...names].sort(naturally.compare)) {
      let hash = 2166136261; // FNV-1a
      for (let i = 0; i < name.length; i += 1) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
      let place = (hash >>> 0) % PALETTE.length;
      for (let tries = 0; tries < PALETTE.length && used.has(place); tries += 1) {
        place = (place + 1) % PALETTE.length;
      }
      used.add(place);
      colours.set(name, PALETTE[place]);
    }
    return colours;
  }
  const colours = coloursOf(config.hosts.map((host) => host.name));

  const width = Math.min(MAX_LABEL, Math.max(...config.hosts.map((host) => host.name.length)));
  const hosts = new Map(
    config.hosts.map((host) => {
      const label = host.name.length > width ? `${host.name.slice(0, width - 1)}…` : host.name;
      const colour = colours.get(host.name);
      const rgb = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16)).join(";");
      return [host.id, {
        ...host,
        colour,
        stdout: `\x1b[38;2;${rgb}m${label.padEnd(width)}\x1b[0m \x1b[2m|\x1b[0m `,
        stderr: `\x1b[38;2;${rgb}m${label.padEnd(width)}\x1b[0m \x1b[1;31m!\x1b[0m \x1b[31m`,
      }];
    }),
  );

  const term = new Terminal({
    convertEol: true, // commands without a pty print bare \n: show it as a terminal would
    disableStdin: true,
    scrollback: 0, // set by fitted() once the width is known
    fontSize: 12.5,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: { background: "#0d1117" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  function fitted() {
    fit.fit();
    // Narrow terminals get more lines, up to a count whose per-line objects stay small too.
    term.options.scrollback = Math.min(MAX_SCROLLBACK_LINES, Math.floor(SCROLLBACK_BYTES / (CELL_BYTES * term.cols)));
  }
  fitted();
  window.addEventListener("resize", fitted);

  let view = "all"; // "all" or a host run id
  let lastSeq = config.after;
  let finished = false;
  let socket = null;
  let retryDelay = 500;
  // While a view is re-read from the API, live chunks for it wait here.
  let held = null;
  let generation = 0;
  const state = document.getElementById("stream-state");
  const followButton = document.getElementById("follow");
  const liveLines = document.getElementById("live-lines");

  // --- where each view's last TAIL_CHARS start: [seq, size] per chunk since then -----------
  const tails = new Map([["all", { after: config.after, chunks: [], size: 0 }]]);
  for (const host of config.hosts) tails.set(host.id, { after: config.after, chunks: [], size: 0 });

  function remember(chunk) {
    const host = hosts.get(chunk.host_run);
    if (host) host.output = true;
    for (const key of ["all", chunk.host_run]) {
      const tail = tails.get(key);
      if (!tail) continue;
      tail.chunks.push([chunk.seq, chunk.text.length]);
      tail.size += chunk.text.length;
      while (tail.size - tail.chunks[0][1] >= TAIL_CHARS) {
        const [seq, size] = tail.chunks.shift();
        tail.after = seq;
        tail.size -= size;
      }
    }
  }

  // --- the combined view: one prefixed line at a time; unfinished lines live apart ---------
  const partials = new Map(); // "<host run>:<stream>" -> text since the last newline

  function combined() {
    return view === "all" && several;
  }

  function prefixed(host, stream, line) {
    // \r returns to the start of the line's text, not over the prefix; what ends on screen
    // is what a terminal would have shown when the newline came.
    const text = line.replace(/\r$/, "").replace(/\r/g, `\r\x1b[${width + 3}C`);
    return `${host[stream]}${text}\x1b[0m\r\n`;
  }

  function combinedText(chunk) {
    const host = hosts.get(chunk.host_run);
    const key = `${chunk.host_run}:${chunk.stream}`;
    const lines = ((partials.get(key) || "") + chunk.text).split("\n");
    let rest = lines.pop();
    if (rest.length > MAX_PARTIAL_CHARS && rest.includes("\r")) rest = rest.slice(rest.lastIndexOf("\r"));
    if (rest.length > MAX_PARTIAL_CHARS) {
      lines.push(rest);
      rest = "";
    }
    setPartial(key, host, chunk.stream, rest);
    return lines.map((line) => prefixed(host, chunk.stream, line)).join("");
  }

  // What a terminal shows of an unfinished line: its last \r segment, without escapes.
  function onScreen(text) {
    const segments = text.split("\r").filter((segment) => segment !== "");
    const last = segments.length ? segments[segments.length - 1] : "";
    return last.replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b./g, "");
  }

  function setPartial(key, host, stream, text) {
    let row = liveLines.querySelector(`[data-key="${key}"]`);
    if (!text) {
      partials.delete(key);
      if (row) row.remove();
      liveLines.hidden = partials.size === 0;
      return;
    }
    partials.set(key, text);
    if (!row) {
      row = document.createElement("div");
      row.className = `live-line ${stream}`;
      row.dataset.key = key;
      row.dataset.host = host.name;
      const name = document.createElement("span");
      name.className = "live-host";
      name.style.color = host.colour;
      name.style.minWidth = `${width + 2}ch`;
      name.textContent = host.name;
      const line = document.createElement("span");
      line.className = "live-text";
      row.append(name, line);
      liveLines.append(row);
      sortRows(liveLines, (row) => hosts.get(Number(row.dataset.key.split(":")[0])));
    }
    row.querySelector(".live-text").textContent = onScreen(text);
    liveLines.hidden = false;
  }

  // An unfinished line is final as it is once its host has stopped (or everything ended).
  function flushPartials() {
    let text = "";
    for (const [key, rest] of partials) {
      const [id, stream] = key.split(":");
      const status = hosts.get(Number(id)).status;
      if (!finished && ACTIVE.has(status)) continue;
      text += prefixed(hosts.get(Number(id)), stream, rest);
      setPartial(key, null, stream, "");
    }
    if (text) term.write(text, updateFollow);
  }

  function clearPartials() {
    partials.clear();
    liveLines.replaceChildren();
    liveLines.hidden = true;
  }

  // --- a host's error in place of the output it never printed ---------------------------
  const noted = new Set(); // hosts whose error the terminal shows in this view

  function writeNotes() {
    let text = "";
    for (const host of [...hosts.values()].sort(hostOrder)) {
      if (view !== "all" && view !== host.id) continue;
      if (noted.has(host.id) || host.output || !host.error || ACTIVE.has(host.status)) continue;
      noted.add(host.id);
      const mark = combined() ? host.stderr.replace("\x1b[31m", "\x1b[1;31m") : "\x1b[1;31m! ";
      text += host.error.split("\n").map((line) => `${mark}${line}\x1b[0m\r\n`).join("");
    }
    if (text) term.write(text, updateFollow);
  }

  // --- rendering -------------------------------------------------------------------------
  function render(chunks) {
    const text = chunks
      .filter((chunk) => view === "all" || chunk.host_run === view)
      .map((chunk) => {
        if (combined()) return combinedText(chunk);
        // stderr in red; the output's own colours still apply inside it.
        return chunk.stream === "stderr" ? `\x1b[31m${chunk.text}\x1b[39m` : chunk.text;
      })
      .join("");
    return new Promise((resolve) => {
      if (!text) resolve();
      else term.write(text, () => {
        updateFollow();
        resolve();
      });
    });
  }

  function show(chunks) {
    if (held) held.push(...chunks);
    else render(chunks);
  }

  // Re-read the end of the new view from the server, then go on with the live stream.
  async function switchTo(newView) {
    view = newView;
    generation += 1;
    const mine = generation;
    term.reset();
    clearPartials();
    noted.clear();
    for (const button of document.querySelectorAll("#host-buttons button")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === String(newView)));
    }
    held = [];
    const until = lastSeq;
    let after = tails.get(newView).after;
    const only = newView === "all" ? "" : `&host_run=${newView}`;
    try {
      while (after < until) {
        const response = await fetch(`${config.log}?after=${after}${only}&limit=1000`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) throw new Error(`log API: ${response.status}`);
        const page = await response.json();
        if (mine !== generation) return;
        await render(page.chunks.filter((chunk) => chunk.seq <= until));
        if (mine !== generation) return;
        if (!page.chunks.length) break;
        after = page.next_after;
      }
    } catch (error) {
      term.write(`\r\n\x1b[31m[could not read the earlier output: ${error.message}]\x1b[39m\r\n`);
    }
    if (mine !== generation) return;
    const waiting = held;
    held = null;
    await render(waiting);
    flushPartials();
    writeNotes();
  }

  // Follow the end unless the person scrolled up; offer a way back.
  function updateFollow() {
    const buffer = term.buffer.active;
    followButton.hidden = buffer.viewportY >= buffer.baseY;
  }
  term.onScroll(updateFollow);
  followButton.addEventListener("click", () => {
    term.scrollToBottom();
    updateFollow();
  });

  // --- host rows and buttons: natural order (app-2 before app-10), failed hosts first -----
  function hostOrder(a, b) {
    return (FAILED.has(b.status) - FAILED.has(a.status)) || naturally.compare(a.name, b.name) || a.id - b.id;
  }

  function sortRows(container, hostOfRow) {
    const rows = [...container.children].filter(hostOfRow);
    rows.sort((a, b) => hostOrder(hostOfRow(a), hostOfRow(b)));
    container.append(...rows);
  }

  function sortHosts() {
    const tableBody = document.querySelector("#host-table tbody");
    sortRows(tableBody, (row) => hosts.get(Number(row.dataset.hostRun)));
    const buttons = document.getElementById("host-buttons");
    sortRows(buttons, (button) => hosts.get(Number(button.dataset.view)));
    sortRows(liveLines, (row) => hosts.get(Number(row.dataset.key.split(":")[0])));
  }

  function hostButton(label, viewValue) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.view = String(viewValue);
    button.setAttribute("aria-pressed", String(viewValue === "all"));
    button.textContent = label;
    button.addEventListener("click", () => switchTo(viewValue));
    document.getElementById("host-buttons").append(button);
    return button;
  }
  hostButton(several ? "All hosts" : "Output", "all");
  if (several) {
    for (const host of config.hosts) hostButton(host.name, host.id);
  }
  sortHosts();

  const statusLabels = {
    queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed",
    cancelled: "Cancelled", timed_out: "Timed out", lost: "Lost",
  };

  function setBadge(element, status) {
    element.className = `badge ${status}`;
    element.textContent = statusLabels[status] || status;
  }

  // As the server's `duration` filter writes it (accounts/templatetags/times.py).
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    const two = (n) => String(n).padStart(2, "0");
    if (minutes < 60) return `${minutes} min ${two(Math.floor(seconds) % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${two(minutes % 60)} min`;
  }

  // Started, finished and duration are written by the server, in the person's time zone:
  // fetched again whenever one of them changes.
  let factsShown = null;
  let factsAsked = 0;
  async function updateFacts(execution) {
    const key = [execution.status, execution.started_at, execution.finished_at].join(" ");
    if (key === factsShown) return;
    factsShown = key;
    factsAsked += 1;
    const mine = factsAsked;
    try {
      const response = await fetch(config.facts, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`facts: ${response.status}`);
      const html = await response.text();
      if (mine !== factsAsked) return; // a later change asked again
      const facts = new DOMParser().parseFromString(html, "text/html").getElementById("execution-facts");
      document.getElementById("execution-facts").replaceWith(facts);
    } catch (error) {
      if (mine === factsAsked) factsShown = null; // the next status message tries again
    }
  }

  function applyStatus(message) {
    setBadge(document.getElementById("execution-status"), message.execution.status);
    document.getElementById("execution-summary").textContent = message.execution.summary;
    let done = 0;
    let reorder = false;
    for (const run of message.host_runs) {
      if (!ACTIVE.has(run.status)) done += 1;
      const host = hosts.get(run.id);
      if (host) {
        reorder = reorder || FAILED.has(host.status) !== FAILED.has(run.status);
        host.status = run.status;
        host.error = run.error;
      }
      const row = document.querySelector(`tr[data-host-run="${run.id}"]`);
      if (!row) continue;
      setBadge(row.querySelector('[data-field="status"]'), run.status);
      row.querySelector('[data-field="exit_code"]').textContent = run.exit_code ?? "";
      row.querySelector('[data-field="duration"]').textContent = duration(run.duration);
      row.querySelector('[data-field="error"]').textContent = run.error;
    }
    if (reorder) sortHosts();
    if (!held) {
      flushPartials();
      writeNotes();
    }
    updateFacts(message.execution);
    const total = message.host_runs.length;
    document.getElementById("progress-text").textContent = `${done}/${total} hosts done`;
    document.getElementById("progress-bar").style.width = `${total ? (100 * done) / total : 0}%`;
    if (message.execution.finished) {
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    }
  }

  // --- the stream ----------------------------------------------------------------------
  // Close codes after which reconnecting cannot help: the viewer stops and says why.
  const refusals = {
    4400: "Live output refused: bad request",
    4401: "You are signed out: ",
    4403: "Live output refused: this address is not one of the site's trusted origins",
    4404: "This execution does not exist or you cannot see it",
  };
  let refusedWith = null;

  function stop(code) {
    refusedWith = code;
    state.classList.add("refused");
    state.textContent = refusals[code];
    if (code === 4401) {
      const link = document.createElement("a");
      link.href = config.login;
      link.textContent = "sign in again";
      state.append(link);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${config.socket}?after=${lastSeq}`);
    socket.onopen = () => {
      state.textContent = "live";
    };
    socket.onmessage = (event) => {
      // Back-off ends with the first message, not on open: a refusal opens, then closes.
      retryDelay = 500;
      const message = JSON.parse(event.data);
      if (message.type === "output") {
        message.chunks.forEach(remember);
        show(message.chunks);
        lastSeq = message.chunks[message.chunks.length - 1].seq;
      } else if (message.type === "status") {
        applyStatus(message);
      } else if (message.type === "end") {
        finished = true;
        if (!held) flushPartials();
        state.textContent = "finished";
        socket.close();
      }
    };
    socket.onclose = (event) => {
      if (finished) return;
      if (event.code in refusals) {
        stop(event.code);
        return;
      }
      // Resume where we stopped: the server replays everything after lastSeq.
      state.textContent = "reconnecting…";
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }
  connect();

  // For tests and benchmarks: what the terminal holds, and how far the stream got.
  window.tsubameViewer = {
    get lastSeq() { return lastSeq; },
    get finished() { return finished; },
    get refusedWith() { return refusedWith; },
    get scrollback() { return term.options.scrollback; },
    bufferText() {
      const buffer = term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i += 1) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join("\n");
    },
    dropConnection() { socket.close(); },
  };
})();
