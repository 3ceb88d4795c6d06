// Dashboard charts: executions per day and average duration, from the page's JSON.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  if (!window.Chart) return;
  const common = { responsive: true, maintainAspectRatio: false, animation: false,
                   plugins: { legend: { position: "bottom" } } };
  new Chart(document.getElementById("chart-runs"), {
    type: "bar",
    data: { labels: data.days, datasets: [
      { label: "succeeded", data: data.succeeded, backgroundColor: "#2da44e", stack: "s" },
      { label: "failed / lost / cancelled", data: data.failed, backgroundColor: "#cf222e", stack: "s" },
    ] },
    options: { ...common, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true,
                                                               ticks: { precision: 0 } } } },
  });
  new Chart(document.getElementById("chart-durations"), {
    type: "line",
    data: { labels: data.days, datasets: [
      { label: "average seconds", data: data.seconds, borderColor: "#1f6feb", spanGaps: true },
    ] },
    options: { ...common, scales: { y: { beginAtZero: true } } },
  });
})();
