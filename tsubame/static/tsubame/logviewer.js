// The live log of one execution: a terminal (xterm.js) fed by the execution's WebSocket.
//
// The page opens at the end of the output (the server picks `after` so that only the last
// few MB are replayed), follows new output, and reconnects after a network drop with the
// last sequence number it has, so nothing is missed or shown twice. When the server refuses
// the socket (signed out, not found), it stops and says why instead of retrying. Output stays in memory
// (up to MAX_KEPT_BYTES) so that switching between hosts and the combined view is instant.
(function () {
  "use strict";

  const MAX_KEPT_BYTES = 48 * 1024 * 1024;
  const config = JSON.parse(document.getElementById("viewer-config").textContent);
  const hostNames = new Map(config.hosts.map((host) => [host.id, host.name]));
  const several = config.hosts.length > 1;

  const term = new Terminal({
    convertEol: true, // commands without a pty print bare \n: show it as a terminal would
    disableStdin: true,
    scrollback: 200000,
    fontSize: 12.5,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: { background: "#0d1117" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  window.addEventListener("resize", () => fit.fit());

  let view = "all"; // "all" or a host run id
  let kept = [];
  let keptBytes = 0;
  let lastSource = null;
  let lastSeq = config.after;
  let finished = false;
  let socket = null;
  let retryDelay = 500;
  const state = document.getElementById("stream-state");
  const followButton = document.getElementById("follow");

  // --- rendering -------------------------------------------------------------------
  function textFor(chunk) {
    let text = "";
    if (view === "all" && several && chunk.host_run !== lastSource) {
      // Mark where another host's output starts in the combined view.
      text += `${lastSource === null ? "" : "\r\n"}\x1b[2m── ${hostNames.get(chunk.host_run)} ──\x1b[22m\r\n`;
      lastSource = chunk.host_run;
    }
    // stderr in red; the output's own colours still apply inside it.
    return text + (chunk.stream === "stderr" ? `\x1b[31m${chunk.text}\x1b[39m` : chunk.text);
  }

  function show(chunks) {
    const text = chunks
      .filter((chunk) => view === "all" || chunk.host_run === view)
      .map(textFor)
      .join("");
    if (text) term.write(text, updateFollow);
  }

  function keep(chunks) {
    for (const chunk of chunks) {
      kept.push(chunk);
      keptBytes += chunk.text.length;
    }
    while (keptBytes > MAX_KEPT_BYTES && kept.length > 1) {
      keptBytes -= kept.shift().text.length;
    }
  }

  function switchTo(newView) {
    view = newView;
    lastSource = null;
    term.reset();
    show(kept);
    for (const button of document.querySelectorAll("#host-buttons button")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === String(newView)));
    }
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

  // --- host buttons and status -------------------------------------------------------
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

  const statusLabels = {
    queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed",
    cancelled: "Cancelled", timed_out: "Timed out", lost: "Lost",
  };

  function setBadge(element, status) {
    element.className = `badge ${status}`;
    element.textContent = statusLabels[status] || status;
  }

  function seconds(run) {
    if (!run.started_at || !run.finished_at) return "";
    return `${((Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000).toFixed(2)} s`;
  }

  function applyStatus(message) {
    setBadge(document.getElementById("execution-status"), message.execution.status);
    document.getElementById("execution-summary").textContent = message.execution.summary;
    let done = 0;
    for (const run of message.host_runs) {
      if (run.status !== "queued" && run.status !== "running") done += 1;
      const row = document.querySelector(`tr[data-host-run="${run.id}"]`);
      if (!row) continue;
      setBadge(row.querySelector('[data-field="status"]'), run.status);
      row.querySelector('[data-field="exit_code"]').textContent = run.exit_code ?? "";
      row.querySelector('[data-field="duration"]').textContent = seconds(run);
      row.querySelector('[data-field="error"]').textContent = run.error;
    }
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
        keep(message.chunks);
        show(message.chunks);
        lastSeq = message.chunks[message.chunks.length - 1].seq;
      } else if (message.type === "status") {
        applyStatus(message);
      } else if (message.type === "end") {
        finished = true;
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
    bufferText() {
      const buffer = term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i += 1) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join("\n");
    },
    dropConnection() { socket.close(); },
  };
})();
